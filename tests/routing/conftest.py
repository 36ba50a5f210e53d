"""Data makers shared by the routing tests."""

from __future__ import annotations

import hashlib
import uuid

import orjson
import pytest

from annotation.models import Candidate, Comparison, Prompt
from annotation.services.importing import pairs_import
from tests.judges.conftest import sent  # noqa: F401 (a fixture for the routing tests too)

TOPICS = ["bread", "tea", "bikes", "taxes", "python", "gardens", "chess", "jazz", "rain", "maps"]

# Small and quick, but enough steps for the heads to learn polite-and-long over rude-and-short.
TRAIN_CONFIG = {"epochs": 25, "batch_size": 16, "lr": 1e-2, "members": 3, "hidden": 32}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def open_pairs_make(project, n: int, *, tag: str = "") -> list[Comparison]:
    """`n` unlabelled comparisons with their own texts (distinct content hashes)."""
    out = []
    tag = tag or uuid.uuid4().hex[:6]
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = f"What about {topic}? ({tag} {i})"
        prompt = Prompt.objects.create(project=project, content_hash=_hash(text), text=text)
        texts = [
            f"Happy to help with {topic}: a friendly, careful answer number {i} with details.",
            f"{topic} {i}. Whatever." if i % 2 else f"Go away, {topic} is boring ({i}).",
        ]
        a, b = sorted(texts, key=_hash)
        ca = Candidate.objects.create(prompt=prompt, content_hash=_hash(a), text=a)
        cb = Candidate.objects.create(prompt=prompt, content_hash=_hash(b), text=b)
        out.append(
            Comparison.objects.create(
                project=project,
                prompt=prompt,
                candidate_a=ca,
                candidate_b=cb,
                queue_key=int(_hash(a + b)[:12], 16),
            )
        )
    return out


def labelled_import(project, tmp_path, n: int = 60) -> None:
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
def trained(project, tmp_path):
    """60 imported labelled pairs, a trained active heads model scored on 20 open pairs."""
    from scoring.services.scores import scores_compute
    from scoring.services.training import training_run_create, training_run_execute

    labelled_import(project, tmp_path)
    open_pairs = open_pairs_make(project, 20)
    run = training_run_execute(run=training_run_create(project=project, config=TRAIN_CONFIG))
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.is_active
    scores_compute(version=version)
    return version, open_pairs
