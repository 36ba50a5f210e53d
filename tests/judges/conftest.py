"""Fixtures of the AI-annotator tests: a labelled project with a trained reward model, and
the bundled SmolLM2 loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from annotation.services.importing import pairs_import

TOPICS = ["bread", "tea", "bikes", "taxes", "python", "gardens", "chess", "jazz", "rain", "maps"]
TRAIN_CONFIG = {"epochs": 2, "members": 2}


def pairs_write(tmp_path: Path, n: int = 40, labelled: bool = True) -> Path:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": f"Could you explain {topic}, please? (question {i})",
                "chosen": f"Thank you for asking about {topic}! Here is a careful, friendly "
                f"explanation, step {i}, with examples and kind suggestions.",
                "rejected": f"No. {topic} {i}? Stupid question, figure it out yourself.",
            }
        )
    path = tmp_path / f"pairs-{n}.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    return path


def labelled_project(project, tmp_path: Path, n: int = 40):
    path = pairs_write(tmp_path, n)
    pairs_import(project=project, path=path, source_name=f"import:{path.name}")
    return project


def reward_model_train(project):
    """Train and score in this process; returns the new active ModelVersion."""
    from scoring.services.scores import scores_compute
    from scoring.services.training import training_run_create, training_run_execute

    run = training_run_create(project=project, config=TRAIN_CONFIG)
    run = training_run_execute(run=run)
    assert run.status == "succeeded", run.error
    scores_compute(version=run.model_version)
    return run.model_version


@pytest.fixture
def trained(project, tmp_path):
    """`project` with 40 imported labelled pairs and an active, scored reward model."""
    labelled_project(project, tmp_path)
    return reward_model_train(project)


@pytest.fixture(scope="session")
def smollm():
    """The bundled SmolLM2, loaded once (~30-40 s) and shared by the local judge and the
    test server (both go through llm.model_get)."""
    from curation.judges.llm import model_get

    return model_get()


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple, str | None]]:
    """The Celery tasks the code sends (name, args, queue), recorded instead of sent."""
    from config.celery_app import app

    calls: list[tuple[str, tuple, str | None]] = []

    def send_task(name, args=(), queue=None, **kwargs):
        calls.append((name, tuple(args), queue))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls
