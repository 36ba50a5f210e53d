"""Noise curation: detector runs, the flags they raise, the actions taken on them (an audit
log that can be undone) and the project's automatic policy."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Project
from core.locks import Lock
from core.models import Run
from scoring.models import ModelVersion


class Detector(models.TextChoices):
    # The names detectors_run (curation/detectors.py) gives its results.
    ENSEMBLE_STRENGTH = "ensemble_strength", "Ensemble strength"
    CLEANLAB = "cleanlab", "Confident learning (cleanlab)"
    PEER_REVIEW = "peer_review", "Peer review"
    ANNOTATOR_RELIABILITY = "annotator_reliability", "Annotator reliability"
    COMBINED = "combined", "Combined"


class Action(models.TextChoices):
    DROP = "drop", "Drop from export"
    FLIP = "flip", "Flip the label"
    REQUEUE = "requeue", "Send back to humans"
    KEEP = "keep", "Keep"
    UNDO = "undo", "Undo"


class CurationRun(Run):
    """One "Find noisy pairs" pass over a project's labelled pairs."""

    TASK = "curation.tasks.curation_run_execute_task"
    LOCK = Lock.CURATION_RUN
    UNIT = "steps"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="curation_runs")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Detector options (folds, members, epochs, ...); empty: the defaults.
    options = models.JSONField(default=dict, blank=True)
    pairs = models.PositiveIntegerField(default=0, help_text="Labelled pairs examined.")
    # {detector: {"flagged": n, "mean_score": x}, "policy": {"applied": n, ...}}
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="curationrun_recent_idx")]
        constraints = Run.run_constraints("curationrun")

    def __str__(self) -> str:
        return f"curation run #{self.pk} of {self.project} ({self.status})"


class CurationAction(models.Model):
    """One action on one comparison: the audit log. Never edited, except `undone_by`, set
    once when an undo (itself a row, action=undo) restores `before`."""

    comparison = models.ForeignKey(
        Comparison, on_delete=models.CASCADE, related_name="curation_actions"
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    # Who: a person, or the project's policy (then `actor` is NULL and policy_name says which).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="curation_actions",
    )
    policy_name = models.CharField(max_length=200, blank=True)
    # The comparison's curated state before and after: label, label_confidence,
    # label_margin, excluded, status, priority, route; for a flip also the id of the
    # LabelResolution it wrote; the flags it marked reviewed.
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    # A bulk action's rows share one batch id.
    batch = models.UUIDField(null=True, blank=True)
    undone_by = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="undoes"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(actor__isnull=False) | ~Q(policy_name=""),
                name="curationaction_has_actor",
            ),
        ]
        indexes = [
            models.Index(fields=["comparison", "-created_at"], name="curationaction_cmp_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} on #{self.comparison_id} by {self.actor_name}"

    @property
    def actor_name(self) -> str:
        return self.policy_name or (self.actor.get_username() if self.actor else "")


class NoiseFlag(models.Model):
    """A detector's suspicion about one comparison's label, from one run."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        REVIEWED = "reviewed", "Reviewed"

    run = models.ForeignKey(CurationRun, on_delete=models.CASCADE, related_name="flags")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="noise_flags")
    detector = models.CharField(max_length=24, choices=Detector.choices)
    # 0..1, higher = more likely mislabelled.
    score = models.FloatField()
    reason = models.TextField()
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The label the detectors judged (a flag is about that label, not a later one).
    label = models.CharField(max_length=8, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    # The action that reviewed it (cleared again when that action is undone).
    action = models.ForeignKey(
        CurationAction, on_delete=models.SET_NULL, null=True, blank=True, related_name="flags"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A re-delivered task writes the same rows again, not new ones.
            models.UniqueConstraint(
                fields=["run", "comparison", "detector"], name="noiseflag_unique"
            ),
            models.CheckConstraint(
                condition=Q(score__gte=0) & Q(score__lte=1), name="noiseflag_score_0_1"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "detector", "-score"], name="noiseflag_run_score_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.detector} {self.score:.2f} on #{self.comparison_id}"


class CurationPolicy(models.Model):
    """Apply an action automatically to the flags of one detector at or above a score,
    at the end of every run. Off by default."""

    AUTO_ACTIONS = (Action.DROP, Action.FLIP, Action.REQUEUE)

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="curation_policy"
    )
    enabled = models.BooleanField(default=False)
    detector = models.CharField(max_length=24, choices=Detector.choices, default=Detector.COMBINED)
    threshold = models.FloatField(default=0.9)
    action = models.CharField(
        max_length=8,
        choices=[(a.value, a.label) for a in AUTO_ACTIONS],
        default=Action.DROP,
    )
    # A policy's flips are LabelResolutions, which need a person: the admin who set it.
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "curation policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold__gte=0) & Q(threshold__lte=1),
                name="curationpolicy_threshold_0_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return (
            f"policy: {self.get_action_display().lower()} when {self.detector} "
            f"≥ {self.threshold:g} (set by {self.updated_by.get_username()})"
        )


class AnnotatorReliability(models.Model):
    """An annotator's estimated reliability in a project, as of the last estimate (the
    annotators page shows these; Membership.reliability holds the weight in use)."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="annotator_reliabilities"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    judgements = models.PositiveIntegerField(help_text="Human A/B judgements.")
    overlapping = models.PositiveIntegerField(
        help_text="Of them, on comparisons someone else judged too."
    )
    # Estimated chance that an answer is the true label (Dawid-Skene), and MACE's
    # competence-based equivalent; NULL without any overlap.
    dawid_skene = models.FloatField(null=True, blank=True)
    mace = models.FloatField(null=True, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="annotatorreliability_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project}: {self.dawid_skene}"
