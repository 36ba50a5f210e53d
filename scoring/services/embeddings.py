"""The embedding store: every prompt and text candidate embedded once per encoder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import connection

from annotation.models import Project
from scoring.encoders import Encoder, encoder_for
from scoring.models import Embedding
from scoring.selectors import embeddings_missing

# Texts read from the database per round: each round's texts are sorted by length, so
# that the encoder pads little, and the next round starts after they are written.
PROJECT_CHUNK = 4096

Progress = Callable[[int, int], None]


def encoder_current(*, modality: str = "text") -> Encoder:
    """The encoder this deployment embeds `modality` with, on settings.SCORING_DEVICE."""
    return encoder_for(modality, settings.SCORING_DEVICE)


def embeddings_compute(
    *,
    items: list[tuple[str, str]],
    encoder: Encoder,
    batch_size: int = 256,
    dtype: str = Embedding.Dtype.F2,
    progress: Progress | None = None,
) -> int:
    """Encode (content hash, text) items in batches and store their vectors; return how
    many rows were created. Idempotent: a vector that exists (another worker, an earlier
    run) is left as it is (ON CONFLICT DO NOTHING)."""
    unique = dict(items)
    # Longest first, as sentence-transformers orders one call's texts: batches of like
    # lengths pad little.
    ordered = sorted(unique.items(), key=lambda item: -len(item[1]))
    np_dtype = np.dtype(dtype).newbyteorder("<")
    created = 0
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        vectors = encoder.encode([text for _, text in batch]).astype(np_dtype, copy=False)
        created += _vectors_write(
            [h for h, _ in batch], [row.tobytes() for row in vectors], encoder, dtype
        )
        if progress is not None:
            progress(start + len(batch), len(ordered))
    return created


def embeddings_compute_project(
    *, project: Project, encoder: Encoder | None = None, progress: Progress | None = None
) -> int:
    """Embed every prompt and text candidate of `project` that has no vector yet; return
    how many were created. Reads what is missing in rounds of PROJECT_CHUNK, so memory
    stays flat on big projects, and stops when nothing is missing (or the project is gone)."""
    encoder = encoder or encoder_current()
    created = 0
    while items := embeddings_missing(project=project, encoder=encoder, limit=PROJECT_CHUNK):
        created += embeddings_compute(items=items, encoder=encoder, progress=progress)
        if len(items) < PROJECT_CHUNK:
            break
    return created


def _vectors_write(hashes: list[str], vectors: list[bytes], encoder: Encoder, dtype: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Embedding._meta.db_table} "
            "(content_hash, encoder, dim, dtype, vector, created_at) "
            "SELECT k.h, %s, %s, %s, k.v, now() "
            "FROM unnest(%s::text[], %s::bytea[]) AS k(h, v) "
            "ON CONFLICT (content_hash, encoder) DO NOTHING",
            [encoder.version, encoder.dim, dtype, hashes, vectors],
        )
        return cursor.rowcount
