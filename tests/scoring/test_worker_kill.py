"""A worker's pool process killed in the middle of training: nothing half-registered, and
the run trains again from the start (acks_late + reject_on_worker_lost), its second
delivery counted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scoring.models import ModelVersion, TrainingRun
from scoring.services.training import training_run_create
from scoring.tasks import training_run_execute_task
from tests.conftest import worker_start, worker_stop
from tests.scoring.test_training import _import

# Slow enough (many small steps) to be killed in the middle, quick once it is left alone.
SLOW = {"epochs": 150, "batch_size": 8, "members": 2, "hidden": 16, "progress_every": 10}


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killed_training_process_leaves_nothing_half_done_and_runs_again(
    project, tmp_path, celery_worker
):
    _import(project, tmp_path, n=120)
    run = training_run_create(project=project, config=SLOW)
    # Its own worker, with a pool process to kill (the session's worker runs tasks inline).
    proc, _name = worker_start(queues="kill-test", pool="prefork", log_path=tmp_path / "w.log")
    try:
        training_run_execute_task.apply_async((run.pk,), queue="kill-test")
        row = TrainingRun.objects.filter(pk=run.pk)
        _wait(
            lambda: (r := row.get()).phase == "training" and r.progress_done > 0,
            240,
            "training to start",
        )
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)

        # What the kill left: a run marked running, nothing registered, nothing active.
        killed = row.get()
        assert (killed.status, killed.attempts) == ("running", 1)
        assert killed.model_version is None
        assert not ModelVersion.objects.filter(project=project).exists()
        assert killed.progress_done < killed.progress_total

        # The task comes back to the worker's new pool process and trains from the start.
        _wait(lambda: row.get().is_finished, 240, "the re-run")
        done = row.get()
        assert done.status == "succeeded", done.error
        assert done.attempts == 2
        assert done.model_version.is_active
        assert done.model_version.artifact
        assert done.progress_done == done.progress_total
        assert ModelVersion.objects.filter(project=project).count() == 1
        assert TrainingRun.objects.filter(project=project).count() == 1
        log = (tmp_path / "w.log").read_text()
        assert "WorkerLostError" in log or "SIGKILL" in log
    finally:
        worker_stop(proc)
