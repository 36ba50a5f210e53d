"""Reads of the embedding store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import connection
from django.db.models import Exists, F, OuterRef
from django.http import Http404

from annotation.models import Candidate, Choice, Comparison, Project, Prompt
from core.exceptions import ApplicationError
from scoring.encoders import Encoder
from scoring.models import Embedding, ModelVersion, ScoringSettings, TrainingRun

LOAD_BATCH = 50_000


class EmbeddingsMissing(ApplicationError):
    """Some contents have no vector for the encoder yet (the embedding task has not run)."""


def project_modality(*, project: Project) -> str:
    """What the project's pairs compare: "image" or "audio" when it has comparisons with a
    file of that kind on both sides (the first such; a project mixes no image and audio
    pairs), else "text". Reward models, scores, curation and routing work on the pairs of
    this kind; a pair of a text and an image is left out, as before."""
    has_media = (
        Candidate.objects.exclude(file="")  # the partial index on file: media only
        .filter(prompt__project=project)
        .order_by()
        .exists()
    )
    if not has_media:  # the usual text project: one index look-up
        return Candidate.Kind.TEXT
    kind = (
        Comparison.objects.filter(
            project=project, candidate_a__kind__in=[Candidate.Kind.IMAGE, Candidate.Kind.AUDIO]
        )
        .filter(candidate_b__kind=F("candidate_a__kind"))
        .values_list("candidate_a__kind", flat=True)
        .order_by()
        .first()
    )
    return kind or Candidate.Kind.TEXT


def embeddings_missing(
    *, project: Project, encoder: Encoder, limit: int | None = None
) -> list[tuple[str, str]]:
    """What of the project has no Embedding for `encoder` yet, each hash once: for the text
    encoder, (content hash, text) of its prompts and text candidates (one query, an
    anti-join per table); for a media encoder, (content hash, storage file name) of its
    candidates of that kind."""
    has_vector = Exists(
        Embedding.objects.filter(content_hash=OuterRef("content_hash"), encoder=encoder.version)
    )
    if encoder.modality != Candidate.Kind.TEXT:
        media = (
            Candidate.objects.filter(prompt__project=project, kind=encoder.modality)
            .filter(~has_vector)
            .values_list("content_hash", "file")
            .order_by()
            .distinct()
        )
        rows = media[:limit] if limit is not None else media
        return list(dict(rows).items())
    prompts = (
        Prompt.objects.filter(project=project)
        .filter(~has_vector)
        .values_list("content_hash", "text")
        .order_by()
    )
    candidates = (
        Candidate.objects.filter(prompt__project=project, kind=Candidate.Kind.TEXT)
        .filter(~has_vector)
        .values_list("content_hash", "text")
        .order_by()
    )
    query = prompts.union(candidates)  # UNION, not ALL: a text shared by rows comes once
    rows = query[:limit] if limit is not None else query
    # Equal hashes mean equal content; a prompt and a candidate may still carry the same
    # hash with their own text (a flattened conversation): keep the first.
    return list(dict(rows).items())


def embeddings_load(
    *, content_hashes: Sequence[str], encoder: Encoder, allow_missing: bool = False
) -> np.ndarray:
    """A (len(content_hashes), dim) float32 matrix, row i the vector of content_hashes[i].

    One query per LOAD_BATCH hashes. A hash with no vector raises EmbeddingsMissing, or
    gives a row of NaN with allow_missing=True."""
    unique = list(dict.fromkeys(content_hashes))
    where = {h: i for i, h in enumerate(unique)}
    out = np.full((len(unique), encoder.dim), np.nan, dtype=np.float32)
    found = np.zeros(len(unique), dtype=bool)
    for start in range(0, len(unique), LOAD_BATCH):
        batch = unique[start : start + LOAD_BATCH]
        for dtype, hashes, vectors in _vectors_fetch(batch, encoder.version):
            rows = np.fromiter((where[h] for h in hashes), dtype=np.int64, count=len(hashes))
            matrix = np.frombuffer(b"".join(vectors), dtype=np.dtype(dtype).newbyteorder("<"))
            out[rows] = matrix.reshape(len(hashes), encoder.dim)
            found[rows] = True
    if not allow_missing and not found.all():
        missing = int((~found).sum())
        raise EmbeddingsMissing(
            f"{missing:,} of {len(unique):,} contents have no {encoder.version} vector yet; "
            "wait for the embedding task to finish."
        )
    if len(unique) == len(content_hashes):
        return out
    return out[np.fromiter((where[h] for h in content_hashes), dtype=np.int64)]


def _vectors_fetch(
    hashes: list[str], encoder_version: str
) -> list[tuple[str, list[str], list[bytes]]]:
    """[(dtype, hashes, vector bytes)] per stored dtype, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT dtype, content_hash, vector FROM {Embedding._meta.db_table} "
            "WHERE encoder = %s AND content_hash = ANY(%s::text[])",
            [encoder_version, hashes],
        )
        rows = cursor.fetchall()
    groups: dict[str, tuple[list[str], list[bytes]]] = {}
    for dtype, content_hash, vector in rows:
        hs, vs = groups.setdefault(dtype, ([], []))
        hs.append(content_hash)
        vs.append(bytes(vector))
    return [(dtype, hs, vs) for dtype, (hs, vs) in groups.items()]


# ---------------------------------------------------------------- model versions

# (metrics key, label) in the order the models page shows them.
MODEL_VERSION_METRICS = (
    ("eval_accuracy", "Accuracy"),
    ("eval_log_loss", "Log loss"),
    ("eval_ece", "ECE"),
    ("eval_accuracy_human", "Accuracy (human labels)"),
    ("eval_accuracy_import", "Accuracy (imported labels)"),
    ("eval_accuracy_ai", "Accuracy (AI labels)"),
    ("eval_accuracy_chosen_longer", "Accuracy (chosen longer)"),
    ("eval_accuracy_chosen_shorter", "Accuracy (chosen shorter)"),
    ("eval_length_corr", "Reward-length correlation"),
)


def training_comparisons(*, project: Project, modality: str | None = None):
    """The comparisons reward models train on and curation judges: labelled A or B, both
    sides of the project's modality (`project_modality`: text, image or audio; pass it
    when known, to spare the look-up), not dropped by curation."""
    kind = modality or project_modality(project=project)
    return Comparison.objects.filter(
        project=project,
        label__in=[Choice.A, Choice.B],
        excluded=False,
        candidate_a__kind=kind,
        candidate_b__kind=kind,
    )


def training_run_list(*, project: Project, limit: int = 50) -> list[TrainingRun]:
    """The project's training runs, newest first, each with its model version (if it made
    one) and `metric_rows`: (label, value or None) in MODEL_VERSION_METRICS order."""
    runs = list(
        TrainingRun.objects.filter(project=project)
        .select_related("model_version")
        .order_by("-created_at", "-id")
        .defer("config")[:limit]
    )
    for run in runs:
        _metric_rows_attach(run)
    return runs


def _metric_rows_attach(run: TrainingRun) -> TrainingRun:
    metrics = run.model_version.metrics if run.model_version else {}
    run.metric_rows = [(label, (metrics or {}).get(key)) for key, label in MODEL_VERSION_METRICS]
    return run


def training_run_get(*, project: Project, run_id: int) -> TrainingRun:
    """The project's training run `run_id` with its `metric_rows` (as training_run_list);
    Http404 for another project's or a missing one."""
    run = (
        TrainingRun.objects.filter(project=project, pk=run_id)
        .select_related("model_version")
        .first()
    )
    if run is None:
        raise Http404("No such training run.")
    return _metric_rows_attach(run)


def model_version_active(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_active=True).first()


def scoring_settings_get(*, project: Project) -> ScoringSettings:
    """The project's scoring settings; the defaults (unsaved) when it has never set any."""
    found = ScoringSettings.objects.filter(project=project).first()
    return found or ScoringSettings(project=project)
