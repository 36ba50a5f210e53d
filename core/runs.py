"""The one lifecycle of every Run (core/models.py), written once.

    run_execute(run, body)   lock, claim, heartbeat, call body(handle), then succeed, fail
                             or cancel; refuse a run delivered too often (a crash loop)
    run_enqueue(run)         send the run's task once the transaction commits
    run_cancel(run)          ask a queued or running run to stop
    runs_sweep()             fail running runs whose worker is gone; send lost queued ones again

What a body gets is a RunHandle: `handle.progress(done, total, phase=...)` writes progress
(on a connection of its own, so that it is seen while the body's transaction is open) and
raises RunCancelled once the run was cancelled; `handle.complete(**fields)` marks the run
succeeded inside the body's own final transaction, so results and status commit together;
`handle.defer()` ends this delivery and queues the run to go on in a fresh task (a long
judging run hands the worker back between slices).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.apps import apps
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models.functions import Now
from django.utils import timezone

from core.exceptions import ApplicationError
from core.locks import advisory_lock_held, advisory_lock_try
from core.models import ACTIVE, Run, RunStatus

logger = logging.getLogger(__name__)

# (done, total, phase): what a management command shows as its progress bar.
OnProgress = Callable[[int, int, str], None]
MAX_ERROR = 4000


class RunCancelled(Exception):  # noqa: N818 (the name reads as what happened)
    """The run was cancelled (or finished by someone else) while its body ran."""


class RunDeferred(Exception):  # noqa: N818
    """The body stopped on purpose to go on in a fresh task (handle.defer())."""


def run_models() -> list[type[Run]]:
    """Every concrete Run model of the installed apps."""
    return [m for m in apps.get_models() if issubclass(m, Run)]


# ---------------------------------------------------------------- the handle


class RunHandle:
    """The body's view of its run: progress, cancellation, completion. Progress and the
    heartbeat go through a connection of their own outside any transaction; inside one
    (a test's transaction) the handle writes through the caller's connection instead,
    where another connection could not see the run's row."""

    def __init__(self, run: Run, *, on_progress: OnProgress | None = None) -> None:
        self.run = run
        self.model = type(run)
        self.on_progress = on_progress
        self._cancelled = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn = None
        self._thread: threading.Thread | None = None
        if not connection.in_atomic_block:
            self._conn = connections.create_connection("default")
            # The heartbeat thread shares it; self._lock keeps them from using it at once.
            self._conn.inc_thread_sharing()

    # ------------------------------------------------------------ writing the row

    def _update(self, assignments: dict) -> int:
        """UPDATE the run's row (if still running) with `assignments`; rows updated."""
        meta = self.model._meta
        sets = [f"{meta.get_field(name).column} = %s" for name in assignments]
        sets.append("heartbeat_at = now()")
        sql = f"UPDATE {meta.db_table} SET {', '.join(sets)} WHERE id = %s AND status = %s"
        params = [
            *(_db_value(self.model, name, value) for name, value in assignments.items()),
            self.run.pk,
            RunStatus.RUNNING,
        ]
        with self._lock:
            conn = self._conn or connection
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.rowcount

    def progress(
        self, done: int, total: int | None = None, *, phase: str | None = None, **fields
    ) -> None:
        """Record progress (and any other fields of the run, e.g. counts); raise
        RunCancelled if the run is no longer running."""
        if self._cancelled.is_set():
            raise RunCancelled
        values = {"progress_done": int(done), **fields}
        if total is not None:
            values["progress_total"] = int(total)
        if phase is not None:
            values["phase"] = phase
        if not self._update(values):
            self._cancelled.set()
            raise RunCancelled
        for name, value in values.items():
            setattr(self.run, name, value)
        if self.on_progress is not None:
            self.on_progress(self.run.progress_done, self.run.progress_total, self.run.phase)

    def check(self) -> None:
        """Raise RunCancelled if the run was cancelled (without writing progress)."""
        if self._cancelled.is_set() or not self._update({}):
            self._cancelled.set()
            raise RunCancelled

    def complete(self, **fields) -> None:
        """Mark the run succeeded, with `fields`, inside the caller's transaction: the body's
        last writes and the status commit together, or neither does. Raises RunCancelled
        (rolling the caller's transaction back) if it was cancelled meanwhile."""
        if not connection.in_atomic_block:
            raise RuntimeError("RunHandle.complete() belongs inside transaction.atomic()")
        done = max(self.run.progress_done, self.run.progress_total)
        values = {
            "status": RunStatus.SUCCEEDED,
            "phase": "",
            "progress_done": done,
            "progress_total": done,
            "finished_at": timezone.now(),
            "heartbeat_at": Now(),
            **fields,
        }
        # One UPDATE (its row lock held to the commit): no check-then-write gap.
        updated = self.model.objects.filter(pk=self.run.pk, status=RunStatus.RUNNING).update(
            **values
        )
        if not updated:
            raise RunCancelled
        self.completed = True

    def defer(self) -> None:
        """Stop this delivery and queue the run to go on in a fresh task."""
        raise RunDeferred

    # ------------------------------------------------------------ the heartbeat

    def _beat(self) -> None:
        interval = settings.RUN_HEARTBEAT_S
        while not self._stop.wait(interval):
            try:
                if not self._update({}):
                    self._cancelled.set()  # the body sees it at its next report
            except Exception:  # a hiccup of the database: try again at the next beat
                logger.warning(
                    "heartbeat of %s #%s failed", self.model.__name__, self.run.pk, exc_info=True
                )

    def __enter__(self) -> RunHandle:
        self.completed = False
        if self._conn is not None:
            self._thread = threading.Thread(
                target=self._beat,
                name=f"heartbeat-{self.model.__name__}-{self.run.pk}",
                daemon=True,
            )
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn.dec_thread_sharing()


def _db_value(model: type[Run], name: str, value):
    """A field value as the raw UPDATE takes it (JSON fields as JSON)."""
    field = model._meta.get_field(name)
    return field.get_db_prep_value(value, connection=connection, prepared=False)


# ---------------------------------------------------------------- the lifecycle


def _finish(run: Run, status: str, **fields) -> int:
    """Set a running run's final status; rows updated (0: someone finished it first)."""
    return (
        type(run)
        .objects.filter(pk=run.pk, status=RunStatus.RUNNING)
        .update(status=status, finished_at=timezone.now(), heartbeat_at=Now(), **fields)
    )


def run_failure_message(exc: BaseException) -> str:
    """What a failed run says: a refusal's own message, else the exception."""
    if isinstance(exc, ApplicationError):
        return exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        return (
            f"It ran past its time limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) and was "
            "stopped."
        )
    return f"{type(exc).__name__}: {exc}"


# exc -> fields to write on the failed run (e.g. an import's error list, a cleaned message).
OnFailure = Callable[[BaseException], dict]


def run_execute(
    run: Run,
    body: Callable[[RunHandle], None],
    *,
    on_progress: OnProgress | None = None,
    on_failure: OnFailure | None = None,
) -> Run:
    """Execute `run` with `body(handle)`, once, whoever asks.

    Idempotent: a finished run is left as it is, and so is one that another worker holds
    (its advisory lock is taken). A running run whose lock is free is a dead worker's: it is
    claimed again and runs from the start (bodies write under unique keys or in one
    transaction, so a second pass adds nothing). A run delivered more than RUN_MAX_ATTEMPTS
    times (its task kills the worker every time: out of memory, a hard time limit) ends
    FAILED with that reason instead of running again. A body that raises fails the run
    with run_failure_message(exc), plus what `on_failure(exc)` returns. Returns the run as
    it ended (or as another worker has it)."""
    model = type(run)
    with advisory_lock_try(model.LOCK, run.lock_key) as locked:
        if locked:
            _run_claimed(run, body, on_progress, on_failure)
    run.refresh_from_db()
    return run


def _run_claimed(
    run: Run,
    body: Callable[[RunHandle], None],
    on_progress: OnProgress | None,
    on_failure: OnFailure | None,
) -> None:
    model = type(run)
    attempts = model.objects.claim(run.pk)
    if attempts is None:
        return
    limit = settings.RUN_MAX_ATTEMPTS
    if attempts > limit:
        _finish(
            run,
            RunStatus.FAILED,
            error=f"The worker died {attempts - 1} times while running this (killed, out of "
            "memory or past its time limit); it is not tried again.",
        )
        logger.error(
            "%s #%s failed: crash loop after %s deliveries", model.__name__, run.pk, attempts - 1
        )
        return
    run.refresh_from_db()
    handle = RunHandle(run, on_progress=on_progress)
    try:
        with handle:
            body(handle)
    except RunCancelled:
        logger.info("%s #%s was cancelled", model.__name__, run.pk)
    except RunDeferred:
        # Not a crash: the next delivery starts its count afresh.
        if model.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED, attempts=0, heartbeat_at=Now()
        ):
            run_enqueue(run, countdown=1)
    except KeyboardInterrupt:
        _finish(run, RunStatus.CANCELLED, error="Interrupted.")
        raise
    except Exception as exc:
        if not isinstance(exc, ApplicationError):
            logger.exception("%s #%s failed", model.__name__, run.pk)
        fields = {"error": run_failure_message(exc)}
        if on_failure is not None:
            fields.update(on_failure(exc))
        fields["error"] = fields["error"][:MAX_ERROR]
        _finish(run, RunStatus.FAILED, **fields)
    else:
        if not handle.completed:
            _finish(run, RunStatus.SUCCEEDED, phase="")


def run_enqueue(run: Run, *, countdown: float | None = None) -> None:
    """Send the run's task (its TASK, on its queue) once the current transaction commits."""
    from config.celery_app import app

    model, pk, queue = type(run), run.pk, run.queue

    def send() -> None:
        app.send_task(model.TASK, args=(pk,), queue=queue, countdown=countdown)

    transaction.on_commit(send)


def run_cancel(run: Run) -> Run:
    """Ask a queued or running run to stop: a queued one never starts, a running one stops
    at its next progress report (what it committed stays). A finished run is left alone."""
    type(run).objects.filter(pk=run.pk, status__in=ACTIVE).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


# ---------------------------------------------------------------- the sweep


def runs_sweep(*, now=None) -> dict[str, int]:
    """Fail every running run whose worker is gone: its heartbeat is older than
    RUN_STALE_AFTER_S and nobody holds its advisory lock (a live worker always does). Send
    the task of every queued run again whose message may be lost (queued, or last sent,
    more than RUN_QUEUED_RESEND_S ago; a second message is harmless, the claim is atomic).
    Returns {"failed": n, "resent": n}."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.RUN_STALE_AFTER_S)
    resend = now - timedelta(seconds=settings.RUN_QUEUED_RESEND_S)
    failed = resent = 0
    for model in run_models():
        for run in model.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale):
            if advisory_lock_held(model.LOCK, run.lock_key):
                continue
            seen = timezone.localtime(run.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            failed += model.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(
                status=RunStatus.FAILED,
                finished_at=now,
                error=f"The worker running it stopped: no sign of life since {seen} "
                f"(more than {settings.RUN_STALE_AFTER_S} s).",
            )
        for run in model.objects.filter(status=RunStatus.QUEUED, heartbeat_at__lt=resend):
            with transaction.atomic():
                if model.objects.filter(
                    pk=run.pk, status=RunStatus.QUEUED, heartbeat_at=run.heartbeat_at
                ).update(heartbeat_at=now):
                    run_enqueue(run)
                    resent += 1
    if failed or resent:
        logger.warning("runs sweep: %s failed (worker gone), %s sent again", failed, resent)
    return {"failed": failed, "resent": resent}
