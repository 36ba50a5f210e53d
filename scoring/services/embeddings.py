"""The embedding store: every prompt and candidate embedded once per encoder version.

Prompts and text candidates go through the text encoder; image and audio candidates through
the encoder of their kind (scoring.encoders), their files read from storage here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from annotation.models import Project
from scoring.encoders import Encoder, encoder_for
from scoring.models import Embedding
from scoring.selectors import embeddings_missing, project_modality

# Texts read from the database per round: each round's texts are sorted by length, so
# that the encoder pads little, and the next round starts after they are written.
PROJECT_CHUNK = 4096

# Media files read from storage (and so held in memory) per write round; the encoder runs
# them in its own batches.
MEDIA_CHUNK = 64

Progress = Callable[[int, int], None]


def encoder_current(*, modality: str = "text") -> Encoder:
    """The encoder this deployment embeds `modality` with, on settings.SCORING_DEVICE."""
    return encoder_for(modality, settings.SCORING_DEVICE)


@dataclass(frozen=True)
class PairEncoders:
    """The encoders of a project's pairs: `prompt` (always text: a prompt's own image or
    audio is context for people, not embedded) and `response` (the candidates' kind)."""

    prompt: Encoder
    response: Encoder

    @property
    def modality(self) -> str:
        return self.response.modality

    def all(self) -> list[Encoder]:
        return list({e.version: e for e in (self.prompt, self.response)}.values())


def pair_encoders(*, project: Project, modality: str | None = None) -> PairEncoders:
    """The prompt and response encoders of `project` (its `project_modality`)."""
    modality = modality or project_modality(project=project)
    return PairEncoders(encoder_current(), encoder_current(modality=modality))


def embeddings_compute(
    *,
    items: list[tuple[str, str]],
    encoder: Encoder,
    batch_size: int = 256,
    dtype: str = Embedding.Dtype.F2,
    progress: Progress | None = None,
) -> int:
    """Encode (content hash, text) items in batches and store their vectors; return how
    many rows were created. For an image or audio encoder the items are (content hash,
    storage file name): the files are read from storage, MEDIA_CHUNK at a time.
    Idempotent: a vector that exists (another worker, an earlier run) is left as it is
    (ON CONFLICT DO NOTHING)."""
    if encoder.modality != "text":
        return _media_compute(dict(items), encoder, dtype, progress)
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
    """Embed everything of `project` that has no vector yet (with `encoder` only, if given;
    else prompts and text candidates with the text encoder, and image or audio candidates
    with theirs); return how many were created. Reads what is missing in rounds of
    PROJECT_CHUNK, so memory stays flat on big projects, and stops when nothing is missing
    (or the project is gone)."""
    encoders = [encoder] if encoder is not None else pair_encoders(project=project).all()
    created = 0
    for enc in encoders:
        while items := embeddings_missing(project=project, encoder=enc, limit=PROJECT_CHUNK):
            created += embeddings_compute(items=items, encoder=enc, progress=progress)
            if len(items) < PROJECT_CHUNK:
                break
    return created


def _media_compute(
    files: dict[str, str], encoder: Encoder, dtype: str, progress: Progress | None
) -> int:
    """Embed {content hash: storage name} media files with `encoder`, MEDIA_CHUNK files per
    round (read, encode, write)."""
    np_dtype = np.dtype(dtype).newbyteorder("<")
    ordered = list(files.items())
    created = 0
    for start in range(0, len(ordered), MEDIA_CHUNK):
        batch = ordered[start : start + MEDIA_CHUNK]
        data = [_file_read(name) for _, name in batch]
        vectors = encoder.encode(data).astype(np_dtype, copy=False)
        created += _vectors_write(
            [h for h, _ in batch], [row.tobytes() for row in vectors], encoder, dtype
        )
        if progress is not None:
            progress(start + len(batch), len(ordered))
    return created


def _file_read(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


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
