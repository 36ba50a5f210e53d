"""Reward-model training runs: the service in-process, the command, and the real worker."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from annotation.models import Comparison
from annotation.services.importing import pairs_import
from core.exceptions import ApplicationError
from core.locks import Lock
from scoring.models import ModelVersion, Score, TrainingRun
from scoring.services import training
from scoring.services.scores import scores_compute
from scoring.services.training import (
    training_run_cancel,
    training_run_create,
    training_run_execute,
    training_run_start,
)
from scoring.train import ensemble_load

# Small and quick, but enough steps for the heads to learn polite-and-long over rude-and-short.
CONFIG = {"epochs": 25, "batch_size": 16, "lr": 1e-2, "members": 3, "hidden": 32}

TOPICS = ["bread", "tea", "bikes", "taxes", "python", "gardens", "chess", "jazz", "rain", "maps"]


def _import(project, tmp_path: Path, n: int = 60) -> None:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": f"Could you explain {topic}, please? (question {i % 20})",
                "chosen": f"Thank you so much for asking about {topic}! I would be glad to help. "
                f"Here is a careful, friendly and detailed explanation, step {i}, with examples "
                "and kind suggestions for what to try next.",
                "rejected": f"No. {topic} {i}? Stupid question, figure it out yourself.",
            }
        )
    path = tmp_path / f"pairs-{n}.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    pairs_import(project=project, path=path, source_name=f"import:{path.name}")


@pytest.fixture
def labelled(project, tmp_path):
    _import(project, tmp_path)
    assert Comparison.objects.filter(project=project, label__in=["a", "b"]).count() == 60
    return project


def _train(project, config=CONFIG) -> TrainingRun:
    run = training_run_create(project=project, config=config)
    return training_run_execute(run=run)


@pytest.mark.django_db
def test_training_makes_an_active_version_with_metrics_and_scores(
    labelled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        run = training_run_start(project=labelled, config=CONFIG)
    assert len(callbacks) == 1  # the training task, sent once committed
    assert (run.status, run.trigger, run.label_count) == ("queued", "manual", 60)
    assert run.model_version is None

    run = training_run_execute(run=run)

    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.is_active
    assert version.training_run == run
    assert (version.kind, version.config, version.label_count) == ("heads", run.config, 60)
    assert version.metrics["eval_accuracy"] >= 0.9
    assert version.metrics["eval_pairs"] > 0
    assert len(version.label_set_hash) == 64
    assert run.progress_total > 0
    assert run.progress_done == run.progress_total
    assert run.percent == 100
    assert run.loss_history[-1] < run.loss_history[0]
    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))
    assert ensemble.members == 3

    assert scores_compute(version=version) == 60
    assert scores_compute(version=version) == 60  # again: upserted, not duplicated
    scores = Score.objects.filter(model_version=version)
    assert scores.count() == Comparison.objects.filter(project=labelled).count()
    assert all(0.0 <= s.p_a <= 1.0 and s.spread >= 0.0 for s in scores)
    # The model agrees with the labels: P(A) is high where A was chosen.
    for s in scores.select_related("comparison"):
        assert (s.p_a > 0.5) == (s.comparison.label == "a")


@pytest.mark.django_db
def test_create_makes_a_queued_run_and_enqueues_nothing(
    labelled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        run = training_run_create(project=labelled, config=CONFIG)
    assert callbacks == []
    run.refresh_from_db()
    assert (run.status, run.attempts, run.queue) == ("queued", 0, "cpu")
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_second_run_deactivates_the_first(labelled):
    first = _train(labelled)
    second = _train(labelled)
    first.model_version.refresh_from_db()
    assert second.model_version.is_active
    assert not first.model_version.is_active
    assert first.status == second.status == "succeeded"
    assert first.model_version.label_set_hash == second.model_version.label_set_hash
    assert ModelVersion.objects.filter(project=labelled).count() == 2


@pytest.mark.django_db
def test_finished_run_is_not_trained_again(labelled):
    run = _train(labelled)
    version = run.model_version
    again = training_run_execute(run=run)
    assert (again.status, again.attempts) == ("succeeded", 1)
    assert again.model_version == version
    assert again.model_version.artifact.name == version.artifact.name
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_a_run_left_running_by_a_killed_worker_trains_again(labelled):
    """What a worker killed mid-training leaves: a row marked running, nothing registered.
    The re-delivered task (acks_late, reject_on_worker_lost) trains it from the start."""
    run = training_run_create(project=labelled, config=CONFIG)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", phase="training", progress_done=7, attempts=1
    )
    assert not ModelVersion.objects.exists()

    done = training_run_execute(run=run)

    assert (done.status, done.attempts) == ("succeeded", 2)
    assert done.model_version.is_active
    assert ensemble_load(io.BytesIO(done.model_version.artifact.read())) is not None
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_a_run_another_worker_holds_is_left_alone(labelled):
    run = training_run_create(project=labelled, config=CONFIG)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [int(Lock.TRAINING_RUN), run.pk])
        left = training_run_execute(run=run)
    finally:
        other.close()
    assert (left.status, left.attempts, left.model_version) == ("queued", 0, None)
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("config", [{"members": 0}, {"nope": 1}, {"lr": "fast"}])
def test_bad_config_is_refused_and_makes_no_row(labelled, config):
    with pytest.raises(ApplicationError, match="Bad training options"):
        training_run_create(project=labelled, config=config)
    assert not TrainingRun.objects.exists()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_too_few_labels_is_refused(project, tmp_path):
    _import(project, tmp_path, n=10)
    with pytest.raises(ApplicationError, match="at least 20"):
        training_run_create(project=project)
    assert not TrainingRun.objects.exists()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_cancel_during_training_stops_it_and_activates_nothing(labelled):
    active = _train(labelled).model_version
    run = training_run_create(project=labelled, config=CONFIG)
    reports = []

    def cancel_once_training(done, total, phase):
        reports.append(phase)
        if phase == "training":
            training_run_cancel(run=TrainingRun.objects.get(pk=run.pk))

    run = training_run_execute(run=run, on_progress=cancel_once_training)

    assert run.status == "cancelled"
    assert reports.count("training") == 1  # stopped at the report after the cancel
    assert run.model_version is None
    assert ModelVersion.objects.get(is_active=True) == active
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_cancelled_before_start_is_never_trained(labelled):
    run = training_run_create(project=labelled, config=CONFIG)
    training_run_cancel(run=run)
    run = training_run_execute(run=run)
    assert (run.status, run.attempts, run.progress_done) == ("cancelled", 0, 0)
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_failure_marks_the_run_failed_with_the_reason(labelled, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(training, "train_ensemble", broken)
    run = _train(labelled)
    assert run.status == "failed"
    assert run.error == "RuntimeError: out of memory (simulated)"
    assert run.finished_at is not None
    assert run.model_version is None
    assert not ModelVersion.objects.exists()  # a failed run makes no model version


@pytest.mark.django_db
def test_command_wait_trains_and_prints_metrics(labelled, capsys):
    call_command(
        "train_reward_model",
        "--project",
        labelled.slug,
        "--wait",
        "--config",
        orjson.dumps(CONFIG).decode(),
    )
    out = capsys.readouterr().out
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"
    assert run.model_version.is_active
    assert out.startswith(
        f"training run {run.pk} succeeded: model version {run.model_version.pk} is active\n"
    )
    assert "eval_accuracy=" in out
    assert "scored_comparisons=60" in out
    assert Score.objects.filter(model_version=run.model_version).count() == 60


@pytest.mark.django_db
def test_command_wait_exits_with_the_runs_reason_when_training_fails(labelled, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(training, "train_ensemble", broken)
    with pytest.raises(
        CommandError, match=r"^training run #\d+ failed: RuntimeError: out of memory \(simulated\)$"
    ):
        call_command("train_reward_model", "--project", labelled.slug, "--wait")
    assert capsys.readouterr().out == ""
    assert TrainingRun.objects.get().status == "failed"
    assert not ModelVersion.objects.exists()
    assert not Score.objects.exists()


@pytest.mark.django_db
def test_command_without_wait_queues_a_run_for_a_worker(
    labelled, capsys, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("train_reward_model", "--project", labelled.slug)
    run = TrainingRun.objects.get()
    assert capsys.readouterr().out == f"training run {run.pk} queued; a worker will train it\n"
    assert len(callbacks) == 1
    assert run.status == "queued"
    assert not ModelVersion.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_trains_and_scores(project, tmp_path, celery_worker):
    _import(project, tmp_path)
    run = training_run_start(project=project, config=CONFIG)

    deadline = time.monotonic() + 180
    while not run.is_finished:
        assert time.monotonic() < deadline, f"not trained in time ({run.status})"
        time.sleep(0.5)
        run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.attempts == 1
    assert run.model_version.is_active
    deadline = time.monotonic() + 60
    while Score.objects.filter(model_version=run.model_version).count() < 60:
        assert time.monotonic() < deadline, "scores were not computed"
        time.sleep(0.5)
