"""For each kind of run: a cancel stops it at its next progress report, and nothing it had
not committed is left behind."""

from __future__ import annotations

import threading

import orjson
import pytest
from django.db import connection

from annotation.services.importing import import_job_create, import_job_execute
from core.runs import run_cancel
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judging_run_create, ai_judging_run_execute
from curation.routing.services.runs import routing_run_create, routing_run_execute
from curation.services.runs import curation_run_create, curation_run_execute
from scoring.models import ModelVersion
from scoring.services.training import training_run_create, training_run_execute
from tests.judges.conftest import labelled_project, reward_model_train

pytestmark = pytest.mark.django_db(transaction=True)


class CancelAfter:
    """An on_progress that cancels the run at its n-th report, as the Cancel button does
    (from another connection: the body may be inside its transaction), and records every
    report it sees."""

    def __init__(self, run, n: int = 1) -> None:
        self.run, self.n, self.reports = run, n, []

    def __call__(self, done: int, total: int, phase: str) -> None:
        self.reports.append((done, total, phase))
        if len(self.reports) == self.n:
            thread = threading.Thread(target=self._cancel)
            thread.start()
            thread.join()

    def _cancel(self) -> None:
        try:
            run_cancel(type(self.run).objects.get(pk=self.run.pk))
        finally:
            connection.close()


def _finished_after_the_cancel(run, cancel: CancelAfter) -> None:
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert len(cancel.reports) == cancel.n  # no report got through after the cancel
    assert run.finished_at is not None


def test_a_cancelled_import_writes_nothing(project, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(
        b"\n".join(
            orjson.dumps({"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"})
            for i in range(12_000)
        )
    )
    job = import_job_create(project=project, path=path)
    cancel = CancelAfter(job, n=2)  # reading, then the first validating report
    import_job_execute(job=job, on_progress=cancel)
    _finished_after_the_cancel(job, cancel)
    assert not project.comparisons.exists()


def test_a_cancelled_training_registers_no_model(project, tmp_path):
    labelled_project(project, tmp_path, n=40)
    run = training_run_create(project=project, config={"epochs": 50, "batch_size": 8})
    cancel = CancelAfter(run, n=1)
    training_run_execute(run=run, on_progress=cancel)
    _finished_after_the_cancel(run, cancel)
    assert run.model_version is None
    assert not ModelVersion.objects.filter(project=project).exists()


def test_a_cancelled_curation_run_writes_no_flags(project, tmp_path):
    labelled_project(project, tmp_path, n=40)
    reward_model_train(project)
    run = curation_run_create(project=project, options={"folds": 3, "members": 2, "epochs": 3})
    cancel = CancelAfter(run, n=3)
    curation_run_execute(run=run, on_progress=cancel)
    _finished_after_the_cancel(run, cancel)
    assert not run.flags.exists()


def test_a_cancelled_judging_run_keeps_only_the_batches_it_finished(project, tmp_path):
    labelled_project(project, tmp_path, n=70)
    reward_model_train(project)
    annotator = annotator_create(project=project, name="rm", kind="reward_model")
    run = ai_judging_run_create(annotator=annotator)
    cancel = CancelAfter(run, n=2)  # the start, then the first batch of 32
    ai_judging_run_execute(run=run, on_progress=cancel)
    _finished_after_the_cancel(run, cancel)
    assert run.verdicts.count() == 32


def test_a_cancelled_routing_run_routes_nothing(project, tmp_path):
    labelled_project(project, tmp_path, n=20)
    run = routing_run_create(project=project, policy="random")
    cancel = CancelAfter(run, n=2)  # scoring, then routing under the lock
    routing_run_execute(run=run, on_progress=cancel)
    _finished_after_the_cancel(run, cancel)
    assert not run.decisions.exists()
