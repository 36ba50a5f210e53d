"""The scoring side: the embedding store, reward-model versions and their scores."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Project
from core.locks import Lock
from core.models import Run


class Embedding(models.Model):
    """One vector per (content hash, encoder version). Content hashes are global: the same
    text in two projects is embedded once. The vector is the raw bytes of a numpy array of
    `dtype` ("f2" float16 by default, or "f4"), `dim` values long."""

    class Dtype(models.TextChoices):
        F2 = "f2", "float16"
        F4 = "f4", "float32"

    content_hash = models.CharField(max_length=64)
    encoder = models.CharField(max_length=100, help_text='e.g. "all-MiniLM-L6-v2@gt-0.1.0"')
    dim = models.PositiveSmallIntegerField()
    dtype = models.CharField(max_length=2, choices=Dtype.choices, default=Dtype.F2)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Its index serves the look-ups (content_hash = ANY(...) AND encoder = ...).
            models.UniqueConstraint(
                fields=["content_hash", "encoder"], name="embedding_unique_hash_encoder"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.content_hash[:12]} @ {self.encoder}"


class ScoringSettings(models.Model):
    """A project's reward-model settings (one row per project, made when first needed)."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="scoring_settings"
    )
    auto_train_every = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Train a new reward model after this many new labels; empty: only by hand.",
    )
    ensemble_members = models.PositiveSmallIntegerField(
        default=5, help_text="Reward-model heads per ensemble (M)."
    )
    # Read by curation (which listens to `model_version_activated`): scoring only keeps it
    # with the project's other after-training settings. The demo project turns it on.
    find_noisy_after_training = models.BooleanField(
        default=False,
        help_text="Find noisy pairs with each new active reward model.",
    )

    class Meta:
        verbose_name_plural = "scoring settings"
        constraints = [
            # Each member is a full head trained on its own bootstrap: past 32 a run costs
            # more than it gains.
            models.CheckConstraint(
                condition=Q(ensemble_members__gte=1) & Q(ensemble_members__lte=32),
                name="scoringsettings_ensemble_members_1_32",
            ),
            models.CheckConstraint(
                condition=Q(auto_train_every__isnull=True) | Q(auto_train_every__gte=1),
                name="scoringsettings_auto_train_every_min_1",
            ),
        ]

    def __str__(self) -> str:
        return f"scoring settings of {self.project}"


class ModelKind(models.TextChoices):
    HEADS = "heads", "Heads on embeddings"
    TRANSFORMER = "transformer", "Fine-tuned transformer"


class TrainingRun(Run):
    """One training of a reward model: what the models page shows while it trains. A run
    that succeeds produces a ModelVersion; a failed or cancelled one produces nothing."""

    TASK = "scoring.tasks.training_run_execute_task"
    LOCK = Lock.TRAINING_RUN
    UNIT = "steps"

    Kind = ModelKind

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by hand"
        AUTO = "auto", "Started after new labels"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=12, choices=ModelKind.choices)
    config = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=6, choices=Trigger.choices, default=Trigger.MANUAL)
    # Labelled A/B pairs of the project when the run was started: automatic training
    # counts new labels from the newest run's figure.
    label_count = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True)
    model_version = models.OneToOneField(
        "ModelVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="training_run",
    )

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="trainingrun_recent_idx")]
        constraints = [
            *Run.run_constraints("trainingrun"),
            # Only a run that succeeded has a model.
            models.CheckConstraint(
                condition=Q(model_version__isnull=True) | Q(status=Run.Status.SUCCEEDED),
                name="trainingrun_version_only_when_succeeded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} training run #{self.pk} of {self.project} ({self.status})"


class ModelVersion(models.Model):
    """A trained reward model (heads on embeddings, or a fine-tuned transformer), made by
    the TrainingRun that succeeded (`training_run`)."""

    Kind = ModelKind

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=12, choices=ModelKind.choices)
    config = models.JSONField(default=dict, blank=True)
    # The Celery queue it trained on: a transformer scores where its GPU is.
    queue = models.CharField(max_length=20, default="cpu")
    label_count = models.PositiveIntegerField(default=0)
    label_set_hash = models.CharField(max_length=64, blank=True)
    artifact = models.FileField(upload_to="models/%Y/%m/")
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="modelversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} model #{self.pk} of {self.project}"


class Score(models.Model):
    """A model version's P(A > B) for a comparison: ensemble mean and spread."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="scores")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    p_a = models.FloatField()
    spread = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "model_version"], name="score_unique_comparison_model"
            ),
        ]

    def __str__(self) -> str:
        return f"P(A)={self.p_a:.2f} for comparison #{self.comparison_id}"
