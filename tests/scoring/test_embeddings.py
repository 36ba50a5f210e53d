"""The embedding store with the real bundled encoder on the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annotation.models import Candidate, Prompt
from annotation.services.importing import pairs_import
from scoring.encoders import Encoder, TextEncoder, encoder_for
from scoring.models import Embedding
from scoring.selectors import EmbeddingsMissing, embeddings_load, embeddings_missing
from scoring.services.embeddings import embeddings_compute, embeddings_compute_project
from tests.factories import ProjectFactory

ROWS = [
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Marseille"},
    {"prompt": "2 + 2?", "chosen": "4", "rejected": "five"},
    {
        "prompt": [{"role": "user", "content": "Hi there"}],
        "chosen": "Hello! How can I help?",
        "rejected": "Go away.",
    },
]


@pytest.fixture(scope="session")
def text_encoder() -> Encoder:
    encoder = encoder_for("text", "cpu")
    encoder.encode(["warm up"])  # loads the model once for the session
    return encoder


def _import(project, tmp_path: Path, rows=ROWS, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pairs_import(project=project, path=path, source_name=f"import:{name}")


def _hashes(project) -> set[str]:
    return set(Prompt.objects.filter(project=project).values_list("content_hash", flat=True)) | set(
        Candidate.objects.filter(prompt__project=project).values_list("content_hash", flat=True)
    )


def test_encoder_is_lazy_and_registered_once_per_modality_and_device():
    encoder = TextEncoder(device="cpu")

    assert encoder._model is None  # nothing loaded until the first encode
    assert isinstance(encoder, Encoder)
    assert encoder.version == "all-MiniLM-L6-v2@gt-0.1.0"
    assert encoder_for("text", "cpu") is encoder_for("text", "cpu")
    with pytest.raises(ValueError, match="no encoder for modality 'smell'"):
        encoder_for("smell")


def test_encoder_gives_normalised_384_d_float32(text_encoder):
    vectors = text_encoder.encode(["a cat", "a dog", "word " * 2000])  # the last is truncated

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_project_texts_are_embedded_as_normalised_float16(db, tmp_path, text_encoder):
    project = ProjectFactory()
    _import(project, tmp_path)

    created = embeddings_compute_project(project=project, encoder=text_encoder)

    hashes = _hashes(project)
    assert created == len(hashes) == 3 + 7  # prompts; candidates, "Paris" per prompt once
    rows = Embedding.objects.filter(encoder=text_encoder.version)
    assert set(rows.values_list("content_hash", flat=True)) == hashes
    for row in rows:
        assert (row.dim, row.dtype, len(bytes(row.vector))) == (384, "f2", 768)
        vector = np.frombuffer(bytes(row.vector), dtype="<f2").astype(np.float32)
        assert abs(np.linalg.norm(vector) - 1) < 2e-3


def test_conversation_prompt_is_embedded_as_its_flattened_text(db, tmp_path, text_encoder):
    project = ProjectFactory()
    _import(project, tmp_path)
    prompt = Prompt.objects.get(project=project, messages__isnull=False)

    embeddings_compute_project(project=project, encoder=text_encoder)

    stored = embeddings_load(content_hashes=[prompt.content_hash], encoder=text_encoder)[0]
    expected = text_encoder.encode([prompt.text])[0]
    assert float(stored @ expected) > 0.999


def test_same_text_in_two_projects_is_embedded_once(db, tmp_path, text_encoder):
    first, second = ProjectFactory(), ProjectFactory()
    _import(first, tmp_path)
    _import(second, tmp_path)

    created_first = embeddings_compute_project(project=first, encoder=text_encoder)
    created_second = embeddings_compute_project(project=second, encoder=text_encoder)

    assert (created_first, created_second) == (10, 0)
    assert _hashes(first) == _hashes(second)
    assert Embedding.objects.count() == 10


def test_running_again_creates_nothing(db, tmp_path, text_encoder):
    project = ProjectFactory()
    _import(project, tmp_path)
    embeddings_compute_project(project=project, encoder=text_encoder)
    before = list(Embedding.objects.order_by("id").values_list("id", "content_hash", "vector"))

    again = embeddings_compute_project(project=project, encoder=text_encoder)
    direct = embeddings_compute(
        items=[(h, "other text") for h in _hashes(project)], encoder=text_encoder
    )

    assert (again, direct) == (0, 0)
    assert list(Embedding.objects.order_by("id").values_list("id", "content_hash", "vector")) == (
        before
    )


def test_missing_query_only_returns_what_is_missing(db, tmp_path, text_encoder):
    project, other = ProjectFactory(), ProjectFactory()
    _import(project, tmp_path)
    _import(other, tmp_path, rows=[{"prompt": "elsewhere", "chosen": "x", "rejected": "y"}])
    everything = dict(embeddings_missing(project=project, encoder=text_encoder))
    assert set(everything) == _hashes(project)
    assert "Paris" in everything.values()
    assert "elsewhere" not in everything.values()
    done = sorted(everything)[:4]

    embeddings_compute(items=[(h, everything[h]) for h in done], encoder=text_encoder)

    left = embeddings_missing(project=project, encoder=text_encoder)
    assert {h for h, _ in left} == set(everything) - set(done)
    assert len(embeddings_missing(project=project, encoder=text_encoder, limit=2)) == 2


def test_image_candidates_are_not_embedded_by_the_text_encoder(db, tmp_path, text_encoder):
    project = ProjectFactory()
    _import(project, tmp_path)
    prompt = Prompt.objects.filter(project=project).first()
    Candidate.objects.create(
        prompt=prompt, kind="image", content_hash="f" * 64, file="candidates/x.png"
    )

    missing = {h for h, _ in embeddings_missing(project=project, encoder=text_encoder)}

    assert "f" * 64 not in missing


def test_load_returns_a_matrix_aligned_to_the_hash_list(db, text_encoder):
    texts = {f"h{i:02d}": f"sentence number {i}" for i in range(20)}
    embeddings_compute(items=list(texts.items()), encoder=text_encoder, batch_size=6)
    order = ["h07", "h03", "h19", "h03", "h00"]

    matrix = embeddings_load(content_hashes=order, encoder=text_encoder)

    assert matrix.shape == (5, 384)
    assert matrix.dtype == np.float32
    expected = text_encoder.encode([texts[h] for h in order])
    np.testing.assert_allclose(matrix, expected, atol=2e-3)
    assert embeddings_load(content_hashes=[], encoder=text_encoder).shape == (0, 384)


def test_load_of_a_hash_without_vector_says_so(db, text_encoder):
    embeddings_compute(items=[("h1", "one")], encoder=text_encoder)

    with pytest.raises(EmbeddingsMissing, match="1 of 2 contents have no"):
        embeddings_load(content_hashes=["h1", "nope"], encoder=text_encoder)
    matrix = embeddings_load(
        content_hashes=["h1", "nope"], encoder=text_encoder, allow_missing=True
    )
    assert not np.isnan(matrix[0]).any()
    assert np.isnan(matrix[1]).all()


def test_float32_storage_is_available(db, text_encoder):
    embeddings_compute(items=[("h1", "one")], encoder=text_encoder, dtype="f4")

    row = Embedding.objects.get()
    assert (row.dtype, len(bytes(row.vector))) == ("f4", 1536)
    np.testing.assert_allclose(
        embeddings_load(content_hashes=["h1"], encoder=text_encoder)[0],
        text_encoder.encode(["one"])[0],
        atol=1e-6,
    )
