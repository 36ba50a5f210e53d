"""The fine-tuned transformer reward model (the `gpu` path), trained for a few steps on CPU."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import orjson
import pytest
import torch
from django.core.management import call_command

from annotation.models import Comparison
from core.exceptions import ApplicationError
from scoring.models import ModelVersion, Score, TrainingRun
from scoring.services.scores import scores_compute
from scoring.services.training import (
    gpu_worker_available,
    training_run_create,
    training_run_execute,
    training_run_start,
)
from scoring.transformer import (
    TextPairs,
    TransformerConfig,
    transformer_load,
    transformer_save,
    transformer_train,
)
from tests.scoring.test_training import _import

# A few steps on short inputs: seconds on a CPU, enough to see the loss move.
TINY = {"max_steps": 3, "batch_size": 4, "max_length": 32, "lr": 1e-4, "progress_every": 1}


def _toy_pairs(n: int) -> TextPairs:
    prompts = [f"How do I make tea? ({i})" for i in range(n)]
    chosen = ["Boil water, pour it over the leaves, wait three minutes." for _ in range(n)]
    rejected = ["No idea, go away." for _ in range(n)]
    return TextPairs(
        prompt=prompts,
        chosen=chosen,
        rejected=rejected,
        chosen_len=np.full(n, 55, dtype=np.float32),
        rejected_len=np.full(n, 17, dtype=np.float32),
        sources=["human"] * n,
    )


def test_training_records_progress_and_metrics_and_round_trips():
    pairs = _toy_pairs(16)
    reports = []
    rm = transformer_train(
        TransformerConfig(**TINY),
        pairs.subset(range(12)),
        pairs.subset(range(12, 16)),
        progress=lambda step, total, loss: reports.append((step, total, loss)),
    )
    assert [r[:2] for r in reports] == [(1, 3), (2, 3), (3, 3)]
    assert len(rm.loss_history) == 3
    assert rm.metrics["train_steps"] == 3
    assert rm.metrics["eval_pairs"] == 4
    assert rm.metrics["eval_accuracy"] is not None
    assert "eval_accuracy_chosen_longer" in rm.metrics

    buffer = io.BytesIO()
    transformer_save(rm, buffer)
    again = transformer_load(buffer.getvalue(), device="cpu")
    before = rm.score(pairs.prompt[:3], pairs.chosen[:3])
    after = again.score(pairs.prompt[:3], pairs.chosen[:3])
    # Saved as float16: equal to about three decimals.
    np.testing.assert_allclose(after, before, atol=2e-2)
    assert again.config["max_steps"] == 3


class Stop(Exception):
    pass


def test_a_progress_callback_that_raises_stops_training():
    """How a run's cancel reaches the trainer: its progress report raises."""
    steps = []

    def progress(step, total, loss):
        steps.append(step)
        raise Stop

    with pytest.raises(Stop):
        transformer_train(TransformerConfig(**TINY), _toy_pairs(8), progress=progress)
    assert steps == [1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backbone": "gpt-9"}, "backbone must be one of"),
        ({"max_length": 4}, "max_length"),
        ({"device": "tpu"}, "device must be"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"nope": 1}, "unknown training option"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TransformerConfig.from_dict(options)


def test_a_zip_that_is_not_an_artifact_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("manifest.json", orjson.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a transformer reward artifact"):
        transformer_load(buffer.getvalue())


@pytest.mark.django_db
def test_transformer_run_registers_an_active_version_and_scores(project, tmp_path):
    _import(project, tmp_path, n=24)
    run = training_run_create(project=project, kind="transformer", config=TINY)
    run = training_run_execute(run=run)

    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.is_active
    assert version.kind == "transformer"
    assert version.metrics["train_steps"] == 3
    assert version.metrics["eval_accuracy"] is not None
    assert version.metrics["device"] == "cpu"
    assert len(run.loss_history) == 3
    assert (run.progress_done, run.progress_total) == (3, 3)
    assert version.label_count == run.label_count == 24
    assert len(version.label_set_hash) == 64
    assert version.artifact.name.endswith(".zip")

    assert scores_compute(version=version) == 24
    scores = Score.objects.filter(model_version=version)
    assert scores.count() == Comparison.objects.filter(project=project).count()
    assert all(0 < s.p_a < 1 and s.spread == 0.0 for s in scores)


@pytest.mark.django_db
def test_transformer_options_are_checked_before_a_row_is_made(project, tmp_path):
    _import(project, tmp_path, n=24)
    with pytest.raises(ApplicationError, match="Bad training options: backbone"):
        training_run_start(project=project, kind="transformer", config={"backbone": "x"})
    assert not TrainingRun.objects.exists()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_without_a_gpu_worker_a_big_transformer_run_is_refused(project, tmp_path, settings):
    _import(project, tmp_path, n=24)
    settings.SCORING_TRANSFORMER_CPU_MAX_PAIRS = 20
    assert not gpu_worker_available(timeout=0.5)  # the test broker has no gpu worker
    with pytest.raises(ApplicationError, match="No GPU worker is up"):
        training_run_start(project=project, kind="transformer", config=TINY)
    assert not TrainingRun.objects.exists()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_command_trains_a_transformer_and_prints_metrics(project, tmp_path, capsys):
    _import(project, tmp_path, n=24)
    call_command(
        "train_reward_model",
        "--project",
        project.slug,
        "--kind",
        "transformer",
        "--wait",
        "--config",
        orjson.dumps(TINY).decode(),
    )
    out = capsys.readouterr().out
    assert "eval_accuracy=" in out
    assert "scored_comparisons=24" in out
    run = TrainingRun.objects.get()
    assert (run.status, run.kind) == ("succeeded", "transformer")
    assert ModelVersion.objects.get().kind == "transformer"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_fine_tunes_on_the_cpu_queue_without_a_gpu_worker(project, tmp_path, celery_worker):
    _import(project, tmp_path, n=24)
    run = training_run_start(project=project, kind="transformer", config=TINY)
    assert run.queue == "cpu"

    deadline = time.monotonic() + 240
    while not run.is_finished:
        assert time.monotonic() < deadline, f"not trained in time ({run.status})"
        time.sleep(1)
        run.refresh_from_db()
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert (version.is_active, version.queue) == (True, "cpu")
    while Score.objects.filter(model_version=version).count() < 24:
        assert time.monotonic() < deadline, "not scored in time"
        time.sleep(1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smollm2_fine_tunes_on_the_gpu():
    pairs = _toy_pairs(64)
    config = TransformerConfig(backbone="smollm2", max_steps=20, batch_size=8, device="cuda")
    rm = transformer_train(config, pairs.subset(range(48)), pairs.subset(range(48, 64)))
    assert rm.device.type == "cuda"
    assert rm.loss_history[-1] < rm.loss_history[0]
