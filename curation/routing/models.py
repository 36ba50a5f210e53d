"""Routing: runs that route a project's unlabelled comparisons, and each decision made.

A RoutingDecision is one routing of one comparison; the latest per comparison is current
(decisions are never edited, so the rows of a comparison are its routing history). The
comparison's own `route` and `priority` (annotation) are what the queue reads.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import Comparison, Project


class RoutingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Re-route now (page)"
        COMMAND = "command", "route_pairs command"
        MODEL_VERSION = "model_version", "New active model version"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routing_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=14, choices=Trigger.choices, default=Trigger.MANUAL)
    # What was asked; the policy used may differ (gain falls back), see `policy_used`.
    policy = models.CharField(max_length=20)
    policy_used = models.CharField(max_length=20, blank=True)
    budget_limit = models.PositiveIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(
        "scoring.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # {"human": n, "ai": n, "both": n, "kept": n (already labelled or in progress), "ai_labelled": n}
    counts = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="routingrun_recent_idx")]

    def __str__(self) -> str:
        return f"routing run #{self.pk} of {self.project} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        return int(100 * self.progress_done / self.progress_total) if self.progress_total else 0


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
