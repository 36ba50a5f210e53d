"""The scoring side: the embedding store, reward-model versions and their scores."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Project


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


class ModelVersion(models.Model):
    """A trained reward model (heads on embeddings, or a fine-tuned transformer)."""

    class Kind(models.TextChoices):
        HEADS = "heads", "Heads on embeddings"
        TRANSFORMER = "transformer", "Fine-tuned transformer"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by hand"
        AUTO = "auto", "Started after new labels"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    trigger = models.CharField(max_length=6, choices=Trigger.choices, default=Trigger.MANUAL)
    # The Celery queue the run went to ("cpu" or "gpu").
    queue = models.CharField(max_length=20, default="cpu")
    # Labelled A/B pairs of the project when the run was started: automatic training
    # counts new labels from the newest run's figure.
    label_count = models.PositiveIntegerField(default=0)
    label_set_hash = models.CharField(max_length=64, blank=True)
    artifact = models.FileField(upload_to="models/%Y/%m/", blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="modelversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} model #{self.pk} of {self.project} ({self.status})"


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
