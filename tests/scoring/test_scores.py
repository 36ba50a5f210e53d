"""scores_compute on the real PostgreSQL: what it reads, what it writes, and writing again."""

from __future__ import annotations

import functools
import io
import threading
import time
import uuid

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import connection

from annotation.models import Candidate, Comparison, Prompt
from core.exceptions import ApplicationError
from scoring.models import Embedding, ModelVersion, Score
from scoring.selectors import embeddings_load
from scoring.services import scores
from scoring.services.embeddings import _vectors_write, encoder_current
from scoring.services.scores import scores_compute
from scoring.train import (
    PairArrays,
    TrainConfig,
    ensemble_load,
    ensemble_save,
    ensemble_score,
    fast_dtype,
    train_ensemble,
)
from tests.factories import ProjectFactory

DIM = 384
DIRECTION = np.random.default_rng(99).normal(size=DIM).astype(np.float32)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@functools.cache
def _artifact(seed: int) -> bytes:
    """A small ensemble that learned 'further along DIRECTION is better', so its P(A)
    spreads over [0, 1] and a score sent to the wrong comparison shows. Trained once per
    seed and test session."""
    rng = np.random.default_rng(seed)
    p, a, b = _unit(rng, 600), _unit(rng, 600), _unit(rng, 600)
    a_wins = (a @ DIRECTION > b @ DIRECTION)[:, None]
    config = TrainConfig(members=3, hidden=16, epochs=10, batch_size=200, lr=3e-2, seed=seed)
    result = train_ensemble(config, PairArrays(p, np.where(a_wins, a, b), np.where(a_wins, b, a)))
    buffer = io.BytesIO()
    ensemble_save(result, buffer)
    return buffer.getvalue()


def _trained_version(project, seed: int = 0) -> ModelVersion:
    version = ModelVersion.objects.create(project=project, kind=ModelVersion.Kind.HEADS)
    version.artifact.save(f"test-{version.pk}.pt", ContentFile(_artifact(seed)))
    return version


def _comparisons(project, n_prompts: int, responses: int, *, all_pairs: bool = False):
    """Per prompt `responses` text candidates; comparisons of neighbours (0-1, 2-3, ...) or,
    with all_pairs, of every pair (as a ranking expands), so candidates repeat."""
    made = []
    for i in range(n_prompts):
        prompt = Prompt.objects.create(
            project=project, content_hash=uuid.uuid4().hex, text=f"prompt {i}"
        )
        cands = [
            Candidate.objects.create(
                prompt=prompt, content_hash=uuid.uuid4().hex, text=f"answer {i}.{j}"
            )
            for j in range(responses)
        ]
        if all_pairs:
            pairs = [(x, y) for x in range(responses) for y in range(x + 1, responses)]
        else:
            pairs = [(x, x + 1) for x in range(0, responses - 1, 2)]
        for x, y in pairs:
            made.append(
                Comparison.objects.create(
                    project=project, prompt=prompt, candidate_a=cands[x], candidate_b=cands[y]
                )
            )
    return made


def _vectors_for(project, seed: int = 1, dtype: str = "f2") -> None:
    hashes = list(Prompt.objects.filter(project=project).values_list("content_hash", flat=True))
    hashes += list(
        Candidate.objects.filter(prompt__project=project).values_list("content_hash", flat=True)
    )
    vectors = _unit(np.random.default_rng(seed), len(hashes)).astype(f"<{dtype}")
    _vectors_write(hashes, [v.tobytes() for v in vectors], encoder_current(), dtype)


def _expected(version, comparisons, dtype=None):
    """P(A) and spread straight from ensemble_score on the stored vectors."""
    encoder = encoder_current()
    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))

    def load(hashes):
        return embeddings_load(content_hashes=hashes, encoder=encoder)

    rows = list(
        Comparison.objects.filter(pk__in=[c.pk for c in comparisons])
        .order_by("id")
        .values_list(
            "id", "prompt__content_hash", "candidate_a__content_hash", "candidate_b__content_hash"
        )
    )
    ids, p, a, b = zip(*rows, strict=True)
    kwargs = {} if dtype is None else {"dtype": dtype}
    p_a, spread = ensemble_score(ensemble, load(p), load(a), load(b), **kwargs)
    return dict(zip(ids, zip(p_a.tolist(), spread.tolist(), strict=True), strict=True))


def _stored(version) -> dict[int, tuple[float, float]]:
    return {
        cid: (p, s)
        for cid, p, s in Score.objects.filter(model_version=version).values_list(
            "comparison_id", "p_a", "spread"
        )
    }


def _assert_close(stored, expected, atol):
    assert stored.keys() == expected.keys()
    for cid, (p, s) in expected.items():
        assert stored[cid][0] == pytest.approx(p, abs=atol), cid
        assert stored[cid][1] == pytest.approx(s, abs=atol), cid


@pytest.mark.django_db
def test_every_comparison_gets_its_own_score(monkeypatch):
    monkeypatch.setattr(scores, "SCORE_CHUNK", 7)  # several rounds, one of them short
    project = ProjectFactory()
    comparisons = _comparisons(project, n_prompts=12, responses=4)  # 24 comparisons
    _vectors_for(project)
    version = _trained_version(project)

    assert scores_compute(version=version) == 24

    stored = _stored(version)
    p_a = np.array([p for p, _ in stored.values()])
    assert p_a.std() > 0.1  # spread out: a score written to the wrong row would show
    _assert_close(stored, _expected(version, comparisons, dtype=fast_dtype()), atol=2e-3)
    # bfloat16 (where the CPU has it) stays within 0.02 of float32 scoring.
    _assert_close(stored, _expected(version, comparisons), atol=0.02)


def _connections_open(expected: int | None = None) -> int:
    """Backends on the test database; with `expected`, waits up to 5 s for the count (a
    backend leaves pg_stat_activity a moment after its client has closed the socket)."""
    for _ in range(50):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            count = cursor.fetchone()[0]
        if expected is None or count == expected:
            break
        time.sleep(0.1)
    return count


@pytest.fixture
def readers(monkeypatch) -> list[str]:
    """The names of the threads that read each round of comparisons, in order."""
    names: list[str] = []
    read = scores._score_chunk_read

    def spy(*args):
        names.append(threading.current_thread().name)
        return read(*args)

    monkeypatch.setattr(scores, "_score_chunk_read", spy)
    return names


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_vectors", [True, False])
def test_outside_a_transaction_rounds_are_read_ahead_on_a_connection_of_their_own(
    monkeypatch, readers, with_vectors
):
    monkeypatch.setattr(scores, "SCORE_CHUNK", 5)
    project = ProjectFactory()
    comparisons = _comparisons(project, n_prompts=8, responses=4)  # 16 comparisons
    if with_vectors:
        _vectors_for(project)
    version = _trained_version(project)
    before = _connections_open()

    assert scores_compute(version=version) == 16

    # 4 rounds and the empty one that ends it (and, without vectors, the first round again
    # once they are embedded), every one read in the reader thread.
    assert len(readers) == (5 if with_vectors else 6)
    assert all(name.startswith("scores-read") for name in readers)
    assert _connections_open(expected=before) == before  # the reader's connection was closed
    _assert_close(_stored(version), _expected(version, comparisons, dtype=fast_dtype()), 2e-3)


@pytest.mark.django_db
def test_inside_a_transaction_rounds_are_read_in_this_thread(readers):
    project = ProjectFactory()
    _comparisons(project, n_prompts=2, responses=2)
    _vectors_for(project)

    assert scores_compute(version=_trained_version(project)) == 2

    assert readers == [threading.current_thread().name] * 2  # uncommitted rows seen


@pytest.mark.django_db
def test_scoring_again_overwrites_in_place_and_adds_nothing(monkeypatch):
    monkeypatch.setattr(scores, "SCORE_CHUNK", 5)
    project = ProjectFactory()
    _comparisons(project, n_prompts=6, responses=4)  # 12 comparisons
    _vectors_for(project)
    version = _trained_version(project)
    scores_compute(version=version)
    first = list(Score.objects.order_by("id").values_list("id", "comparison_id", "p_a", "spread"))
    Score.objects.filter(model_version=version).update(p_a=0.123, spread=0.5)  # stale values

    assert scores_compute(version=version) == 12

    assert (
        list(Score.objects.order_by("id").values_list("id", "comparison_id", "p_a", "spread"))
        == first
    )  # same rows (upserted, not re-inserted), the model's values back
    assert scores_compute(version=version) == 12
    assert Score.objects.count() == 12


@pytest.mark.django_db
def test_two_versions_keep_their_own_scores():
    project = ProjectFactory()
    comparisons = _comparisons(project, n_prompts=4, responses=2)
    _vectors_for(project)
    first, second = _trained_version(project, seed=0), _trained_version(project, seed=1)

    scores_compute(version=first)
    scores_compute(version=second)

    assert Score.objects.filter(model_version=first).count() == 4
    assert Score.objects.filter(model_version=second).count() == 4
    _assert_close(_stored(first), _expected(first, comparisons), atol=0.02)
    _assert_close(_stored(second), _expected(second, comparisons), atol=0.02)


@pytest.mark.django_db
def test_repeated_responses_go_through_the_heads_once_with_the_same_scores():
    project = ProjectFactory()
    # 5 responses per prompt, every pair compared: 10 comparisons use 5 distinct rows.
    comparisons = _comparisons(project, n_prompts=5, responses=5, all_pairs=True)
    _vectors_for(project)
    version = _trained_version(project)

    assert scores_compute(version=version) == 50

    _assert_close(_stored(version), _expected(version, comparisons, dtype=fast_dtype()), 2e-3)


@pytest.mark.django_db
def test_float32_and_float16_vectors_mix():
    project = ProjectFactory()
    comparisons = _comparisons(project, n_prompts=3, responses=2)
    _vectors_for(project, dtype="f4")
    # Half of the vectors again as float16: delete and rewrite them.
    encoder = encoder_current()
    some = list(Embedding.objects.order_by("id").values_list("content_hash", flat=True)[:4])
    Embedding.objects.filter(content_hash__in=some).delete()
    vectors = _unit(np.random.default_rng(5), len(some)).astype("<f2")
    _vectors_write(some, [v.tobytes() for v in vectors], encoder, "f2")
    version = _trained_version(project)

    assert scores_compute(version=version) == 3

    _assert_close(_stored(version), _expected(version, comparisons, dtype=fast_dtype()), 2e-3)


@pytest.mark.django_db
def test_contents_without_vectors_are_embedded_first():
    project = ProjectFactory()
    comparisons = _comparisons(project, n_prompts=2, responses=2)
    version = _trained_version(project)
    assert not Embedding.objects.exists()

    assert scores_compute(version=version) == 2

    assert Embedding.objects.count() == 6  # 2 prompts, 4 candidates, by the real encoder
    _assert_close(_stored(version), _expected(version, comparisons, dtype=fast_dtype()), 2e-3)


@pytest.mark.django_db
def test_comparisons_with_an_image_side_are_left_out(monkeypatch):
    monkeypatch.setattr(scores, "SCORE_CHUNK", 2)
    project = ProjectFactory()
    text = _comparisons(project, n_prompts=1, responses=2)
    prompt = text[0].prompt
    image = Candidate.objects.create(
        prompt=prompt, kind="image", content_hash="f" * 64, file="candidates/x.png"
    )
    # Two image comparisons fill a whole round before the last text one.
    Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=text[0].candidate_a, candidate_b=image
    )
    Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=image, candidate_b=text[0].candidate_b
    )
    text += _comparisons(project, n_prompts=1, responses=2)
    _vectors_for(project)
    version = _trained_version(project)

    assert scores_compute(version=version) == 2

    assert set(_stored(version)) == {c.pk for c in text}


@pytest.mark.django_db
def test_a_version_without_a_model_is_refused():
    project = ProjectFactory()
    version = ModelVersion.objects.create(project=project, kind=ModelVersion.Kind.HEADS)

    with pytest.raises(ApplicationError, match="no trained model"):
        scores_compute(version=version)
    assert not Score.objects.exists()
