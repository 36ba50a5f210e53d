"""Reward-model training runs: the service in-process, the command, and the real worker."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command

from annotation.exceptions import ApplicationError
from annotation.models import Comparison
from annotation.services.importing import pairs_import
from scoring import services
from scoring.models import ModelVersion, Score
from scoring.services import (
    model_version_cancel,
    model_version_train,
    model_version_train_start,
    scores_compute,
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


def _train(project, config=CONFIG) -> ModelVersion:
    version = model_version_train_start(project=project, config=config)
    return model_version_train(version=version)


@pytest.mark.django_db
def test_training_makes_an_active_version_with_metrics_and_scores(
    labelled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        version = model_version_train_start(project=labelled, config=CONFIG)
    assert len(callbacks) == 1  # the training task, sent once committed
    assert version.status == "queued"

    version = model_version_train(version=version)

    assert version.status == "succeeded", version.error
    assert version.is_active
    assert version.metrics["eval_accuracy"] >= 0.9
    assert version.metrics["eval_pairs"] > 0
    assert len(version.label_set_hash) == 64
    assert version.progress_total > 0
    assert version.progress_done == version.progress_total
    assert version.loss_history[-1] < version.loss_history[0]
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
def test_second_run_deactivates_the_first(labelled):
    first = _train(labelled)
    second = _train(labelled)
    first.refresh_from_db()
    assert second.is_active
    assert not first.is_active
    assert first.status == second.status == "succeeded"
    assert first.label_set_hash == second.label_set_hash


@pytest.mark.django_db
def test_finished_run_is_not_trained_again(labelled):
    version = _train(labelled)
    artifact = version.artifact.name
    assert model_version_train(version=version).artifact.name == artifact


@pytest.mark.django_db
def test_a_run_left_running_by_a_killed_worker_trains_again(labelled):
    """What a worker killed mid-training leaves: a row marked running, nothing registered.
    The re-delivered task (acks_late, reject_on_worker_lost) trains it from the start."""
    version = model_version_train_start(project=labelled, config=CONFIG, enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(status="running", progress_done=7)
    assert not ModelVersion.objects.filter(project=labelled, is_active=True).exists()

    done = model_version_train(version=version)

    assert (done.status, done.is_active) == ("succeeded", True)
    assert ensemble_load(io.BytesIO(done.artifact.read())) is not None


@pytest.mark.django_db
def test_a_run_another_worker_holds_is_left_alone(labelled):
    from django.db import connections

    version = model_version_train_start(project=labelled, config=CONFIG, enqueue=False)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(%s, %s)", [services.MODEL_VERSION_LOCK, version.pk]
            )
        left = model_version_train(version=version)
    finally:
        other.close()
    assert (left.status, left.is_active) == ("queued", False)


@pytest.mark.django_db
@pytest.mark.parametrize("config", [{"members": 0}, {"nope": 1}, {"lr": "fast"}])
def test_bad_config_is_refused_and_makes_no_row(labelled, config):
    with pytest.raises(ApplicationError, match="Bad training options"):
        model_version_train_start(project=labelled, config=config)
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_too_few_labels_is_refused(project, tmp_path):
    _import(project, tmp_path, n=10)
    with pytest.raises(ApplicationError, match="at least 20"):
        model_version_train_start(project=project)
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_cancel_during_training_stops_it_and_activates_nothing(labelled, monkeypatch):
    active = _train(labelled)
    version = model_version_train_start(project=labelled, config=CONFIG)
    real = services.train_ensemble

    def cancelling(config, train, eval=None, progress=None, should_stop=None):  # noqa: A002
        def progress_then_cancel(done, total, loss):
            progress(done, total, loss)
            model_version_cancel(version=ModelVersion.objects.get(pk=version.pk))

        return real(config, train, eval, progress_then_cancel, should_stop)

    monkeypatch.setattr(services, "train_ensemble", cancelling)
    version = model_version_train(version=version)

    assert version.status == "cancelled"
    assert not version.is_active
    assert not version.artifact
    assert ModelVersion.objects.get(is_active=True) == active


@pytest.mark.django_db
def test_cancelled_before_start_is_never_trained(labelled):
    version = model_version_train_start(project=labelled, config=CONFIG)
    model_version_cancel(version=version)
    version = model_version_train(version=version)
    assert version.status == "cancelled"
    assert version.progress_done == 0


@pytest.mark.django_db
def test_failure_marks_the_run_failed_with_the_reason(labelled, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(services, "train_ensemble", broken)
    version = _train(labelled)
    assert version.status == "failed"
    assert "out of memory (simulated)" in version.error
    assert not ModelVersion.objects.filter(is_active=True).exists()


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
    assert "eval_accuracy=" in out
    assert ModelVersion.objects.get().is_active
    assert Score.objects.count() == 60


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_trains_and_scores(project, tmp_path, celery_worker):
    _import(project, tmp_path)
    version = model_version_train_start(project=project, config=CONFIG)

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.status in ("succeeded", "failed", "cancelled") and (
            version.status != "succeeded" or Score.objects.filter(model_version=version).count()
        ):
            break
        time.sleep(0.5)
    assert version.status == "succeeded", version.error
    assert version.is_active
    deadline = time.monotonic() + 60
    while Score.objects.filter(model_version=version).count() < 60:
        assert time.monotonic() < deadline, "scores were not computed"
        time.sleep(0.5)
