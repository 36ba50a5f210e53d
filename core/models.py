"""The abstract Run: the one shape of every long job (import, training, curation, judging,
routing). Its lifecycle (claim, heartbeat, progress, cancel, fail after N deliveries, the
sweep for lost ones) is written once, in core/runs.py."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from core.locks import Lock


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunQuerySet(models.QuerySet):
    def active(self) -> RunQuerySet:
        """Queued or running: work that is still to happen."""
        return self.filter(status__in=ACTIVE)

    def finished(self) -> RunQuerySet:
        return self.filter(status__in=FINISHED)

    def claim(self, pk: int) -> int | None:
        """Mark run `pk` running if it is queued, or running with nobody on it (the caller
        holds its advisory lock, so a running row is a dead worker's). One statement, so
        two claims can never both win. Returns the delivery count (attempts) including this
        one, or None when the run is finished or gone."""
        claimed = (
            self.filter(pk=pk, status__in=ACTIVE)
            .order_by()
            .update(
                status=RunStatus.RUNNING,
                attempts=F("attempts") + 1,
                started_at=Coalesce(F("started_at"), Now()),
                heartbeat_at=Now(),
            )
        )
        if not claimed:
            return None
        return self.filter(pk=pk).values_list("attempts", flat=True).first()


class Run(models.Model):
    """A long job's row: what the pages poll and the commands follow.

    Concrete runs say which Celery task executes them (`TASK`), which advisory lock class
    keeps two workers off one run (`LOCK`, keyed by `lock_key`), what their progress counts
    (`UNIT`) and, when progress restarts per phase, the phases in order (`PHASES`), so that
    the bar only moves forward."""

    Status = RunStatus

    TASK: ClassVar[str]
    LOCK: ClassVar[Lock]
    UNIT: ClassVar[str] = ""
    PHASES: ClassVar[tuple[str, ...]] = ()

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    phase = models.CharField(max_length=40, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    # 0: not known (yet).
    progress_total = models.PositiveIntegerField(default=0)
    # Written every RUN_HEARTBEAT_S while a worker executes the run (and when it is queued or
    # sent again): the sweep fails a running run whose heartbeat stopped.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    # Deliveries that claimed the run; past RUN_MAX_ATTEMPTS it fails instead of running.
    attempts = models.PositiveSmallIntegerField(default=0)
    # The Celery queue it was sent to ("cpu" or "gpu").
    queue = models.CharField(max_length=20, default="cpu")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def lock_key(self) -> int:
        """The advisory lock key: the run itself, unless a kind serialises more widely."""
        return self.pk

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def percent(self) -> int:
        """0-100: done/total, within its phase's share of the bar when the kind has phases;
        100 only once it succeeded."""
        if self.status == RunStatus.SUCCEEDED:
            return 100
        share = min(1.0, self.progress_done / self.progress_total) if self.progress_total else 0.0
        if self.phase in self.PHASES:
            share = (self.PHASES.index(self.phase) + share) / len(self.PHASES)
        return min(99, int(100 * share))

    @classmethod
    def run_constraints(cls, prefix: str) -> list[models.BaseConstraint]:
        """The data rules every run table carries, named after the table."""
        return [
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name=f"{prefix}_status_valid"
            ),
            # A finished run says when it finished; the pages and the sweep rely on it.
            models.CheckConstraint(
                condition=Q(status__in=ACTIVE) | Q(finished_at__isnull=False),
                name=f"{prefix}_finished_has_time",
            ),
        ]


class WorkerBeat(models.Model):
    """A Celery worker's last sign of life, written by the worker itself (core/workers.py)
    every WORKER_HEARTBEAT_S: its queues and the tasks it is running. One row per worker
    name; a worker restarted under the same name takes its row over."""

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(default=0)
    queues = models.JSONField(default=list, blank=True)
    # [{"id": ..., "name": ..., "args": "...", "started": epoch seconds or null}, ...]
    active = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField()
    # The database's clock, not the worker's: workers on other machines compare fairly.
    seen_at = models.DateTimeField()
    # Set by a clean shutdown: the dashboard shows it gone at once, not after the timeout.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["-seen_at"], name="workerbeat_seen_idx")]

    def __str__(self) -> str:
        return f"worker {self.hostname}"
