"""Routing: runs that route a project's unlabelled comparisons, and each decision made.

A RoutingDecision is one routing of one comparison; the latest per comparison is current
(decisions are never edited, so the rows of a comparison are its routing history). The
comparison's own `route` and `priority` (annotation) are what the queue reads.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Project
from core.locks import Lock
from core.models import Run


class RoutingPolicy(models.TextChoices):
    ALL_HUMAN = "all_human", "All human"
    ALL_AI = "all_ai", "All AI"
    RANDOM = "random", "Random within budget"
    UNCERTAINTY = "uncertainty", "Uncertainty"
    GAIN = "gain", "Predicted human gain (HyPER)"


class RoutingSettings(models.Model):
    """A project's routing policy and human budget (one row per project, made when first
    set; without one: all to humans, no limit)."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="routing_settings"
    )
    policy = models.CharField(
        max_length=20, choices=RoutingPolicy.choices, default=RoutingPolicy.ALL_HUMAN
    )
    human_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Comparisons that may go to humans; empty: no limit."
    )
    human_budget_fraction = models.FloatField(
        null=True,
        blank=True,
        help_text="Share of the project's comparisons that may go to humans (0-1); "
        "empty means no limit. With human_budget too, the smaller one holds.",
    )

    class Meta:
        verbose_name_plural = "routing settings"
        constraints = [
            # A share of the comparisons: anything outside 0-1 is a typo, not a budget.
            models.CheckConstraint(
                condition=Q(human_budget_fraction__isnull=True)
                | (Q(human_budget_fraction__gte=0) & Q(human_budget_fraction__lte=1)),
                name="routingsettings_budget_fraction_0_1",
            ),
            models.CheckConstraint(
                condition=Q(policy__in=RoutingPolicy.values), name="routingsettings_policy_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"routing settings of {self.project}"


class RoutingRun(Run):
    """One routing of a project's unlabelled comparisons (the page's Re-route now, the
    route_pairs command, or a new active model version). The AI labels it asks for are a
    judging run of their own (`ai_judging_run`)."""

    TASK = "curation.routing.tasks.routing_run_execute_task"
    LOCK = Lock.ROUTING_RUN
    UNIT = "comparisons"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Re-route now (page)"
        COMMAND = "command", "route_pairs command"
        MODEL_VERSION = "model_version", "New active model version"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routing_runs")
    trigger = models.CharField(max_length=14, choices=Trigger.choices, default=Trigger.MANUAL)
    # What was asked (blank until it runs when it follows the project's setting); the
    # policy used may differ (gain falls back), see `policy_used`.
    policy = models.CharField(max_length=20, blank=True)
    policy_used = models.CharField(max_length=20, blank=True)
    budget_limit = models.PositiveIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(
        "scoring.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Whether the AI-routed comparisons get AI labels (a judging run) once routed.
    apply_ai_labels = models.BooleanField(default=True)
    ai_judging_run = models.ForeignKey(
        "judges.AIJudgingRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # {"human": n, "ai": n, "kept": n (already labelled or in progress), "labelled": n,
    #  "changed": n, "ai_to_label": n}
    counts = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="routingrun_recent_idx")]
        constraints = Run.run_constraints("routingrun")

    def __str__(self) -> str:
        return f"routing run #{self.pk} of {self.project} ({self.status})"


class RoutingDecision(models.Model):
    comparison = models.ForeignKey(
        Comparison, on_delete=models.CASCADE, related_name="routing_decisions"
    )
    run = models.ForeignKey(
        RoutingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="decisions"
    )
    route = models.CharField(max_length=5, choices=Comparison.Route.choices)
    policy = models.CharField(max_length=20)
    model_version = models.ForeignKey(
        "scoring.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The policy's score for the pair: predicted gain (P(human differs from AI)) for gain,
    # the uncertainty rank score for uncertainty; NULL for policies without one.
    score = models.FloatField(null=True, blank=True)
    priority = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The current decision of a comparison: its latest row.
            models.Index(
                fields=["comparison", "-created_at", "-id"], name="routingdecision_latest_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.comparison_id} -> {self.route} ({self.policy})"
