"""AI annotators, their judging runs and their verdicts.

An AIVerdict is what one annotator (at one model version) said about one comparison,
successful or not; only ok verdicts become annotation Judgements (source_kind "ai").
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Judgement, Project
from core.locks import Lock
from core.models import Run


class AIAnnotator(models.Model):
    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward-model judge (active ensemble)"
        LOCAL_LLM = "local_llm", "Local LLM judge (SmolLM2-135M-Instruct)"
        REMOTE_LLM = "remote_llm", "Remote LLM judge (OpenAI-compatible)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ai_annotators")
    # The judgements' source is "ai:<name>", so the name is fixed once created.
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # Remote: base_url, model, prompt_template, timeout, max_attempts. Local: prompt_template,
    # batch_size, max_chars. Never holds the API key (api_key below, never rendered).
    settings = models.JSONField(default=dict, blank=True)
    # Write-only: forms and pages show only whether it is set; logs and errors never carry it.
    api_key = models.CharField(max_length=500, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="aiannotator_unique_name"),
        ]

    def __str__(self) -> str:
        return f"ai:{self.name}"

    def __repr__(self) -> str:  # never the key
        return f"<AIAnnotator #{self.pk} {self.name!r} ({self.kind})>"

    @property
    def source_name(self) -> str:
        return f"ai:{self.name}"

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key)


class AIJudgingRun(Run):
    """One run of an annotator over a set of comparisons, with progress the page polls."""

    TASK = "curation.judges.tasks.ai_judging_run_execute_task"
    LOCK = Lock.AI_JUDGES
    UNIT = "comparisons"

    class Scope(models.TextChoices):
        ALL = "all", "All comparisons"
        ROUTED = "routed", "Comparisons routed to AI (route ai or both)"
        IDS = "ids", "Given comparisons"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ai_judging_runs")
    annotator = models.ForeignKey(AIAnnotator, on_delete=models.CASCADE, related_name="runs")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.ALL)
    comparison_ids = models.JSONField(null=True, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    ok_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    # Comparisons that already had an ok verdict of this model version (idempotent re-runs).
    skipped_count = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="aijudgingrun_recent_idx")]
        constraints = Run.run_constraints("aijudgingrun")

    def __str__(self) -> str:
        return f"AI judging run #{self.pk} ({self.status})"

    @property
    def lock_key(self) -> int:
        # One executing run per annotator: two runs of one judge would ask it the same
        # questions and write the same verdicts.
        return self.annotator_id


class AIVerdict(models.Model):
    """An annotator's answer on one comparison at one model version.

    p_a_ab is P(A better) asked in the A/B order, p_a_ba asked in the B/A order and mapped
    back to the canonical A (1 - P(first) there); p_a is their mean. The reward-model judge
    has no order (sigmoid(r_a - r_b) is symmetric): p_a_ba is NULL, orders_agree True."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    annotator = models.ForeignKey(AIAnnotator, on_delete=models.CASCADE, related_name="verdicts")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="ai_verdicts")
    model_version = models.CharField(max_length=100)
    run = models.ForeignKey(
        AIJudgingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="verdicts"
    )
    status = models.CharField(max_length=8, choices=Status.choices)
    p_a_ab = models.FloatField(null=True, blank=True)
    p_a_ba = models.FloatField(null=True, blank=True)
    p_a = models.FloatField(null=True, blank=True)
    spread = models.FloatField(null=True, blank=True)  # reward-model judge: ensemble spread
    orders_agree = models.BooleanField(null=True, blank=True)
    choice = models.CharField(max_length=8, blank=True)  # "a" / "b"; blank when failed
    confidence = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The annotator's latest ok verdict on the comparison (what routing reads).
    is_current = models.BooleanField(default=False)
    judgement = models.ForeignKey(
        Judgement, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "comparison", "model_version"],
                name="aiverdict_unique_version",
            ),
            models.UniqueConstraint(
                fields=["annotator", "comparison"],
                condition=Q(is_current=True),
                name="aiverdict_one_current",
            ),
            models.CheckConstraint(
                condition=Q(status="failed") | (Q(choice__in=["a", "b"]) & Q(confidence__gte=0)),
                name="aiverdict_ok_has_choice",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="aiverdict_confidence_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "status"], name="aiverdict_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id}@{self.model_version}: {self.status} on #{self.comparison_id}"
