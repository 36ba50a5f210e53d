"""Writes of the scoring app: the embedding store, reward-model training runs and scores."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Length
from django.utils import timezone

from annotation.exceptions import ApplicationError
from annotation.models import Candidate, Choice, Comparison, Judgement, Project
from annotation.services.locks import advisory_lock_try
from scoring.encoders import Encoder, encoder_for
from scoring.models import Embedding, ModelVersion, Score
from scoring.selectors import embeddings_load, embeddings_missing
from scoring.train import (
    Cancelled,
    PairArrays,
    TrainConfig,
    ensemble_load,
    ensemble_save,
    ensemble_score,
    stable_split,
    train_ensemble,
)

logger = logging.getLogger(__name__)

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
    if connection.vendor == "postgresql":
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
    before = Embedding.objects.filter(encoder=encoder.version, content_hash__in=hashes).count()
    Embedding.objects.bulk_create(
        [
            Embedding(
                content_hash=h, encoder=encoder.version, dim=encoder.dim, dtype=dtype, vector=v
            )
            for h, v in zip(hashes, vectors, strict=True)
        ],
        ignore_conflicts=True,
    )
    return len(hashes) - before


# ---------------------------------------------------------------- reward-model training

# Fewer labelled A/B pairs than this cannot give a model (or a held-out split) worth having.
MIN_TRAIN_PAIRS = 20
MODEL_VERSION_LOCK = 0x5C0E  # advisory lock class for training runs
SCORE_CHUNK = 50_000  # comparisons scored (and their vectors loaded) per round

_FINISHED = (
    ModelVersion.Status.SUCCEEDED,
    ModelVersion.Status.FAILED,
    ModelVersion.Status.CANCELLED,
)


def model_version_train_start(
    *,
    project: Project,
    kind: str = ModelVersion.Kind.HEADS,
    config: dict | None = None,
    enqueue: bool = True,
) -> ModelVersion:
    """Create a queued training run of `project` and enqueue it once committed
    (`enqueue=False`: the caller runs `model_version_train` itself, as `--wait` does)."""
    if kind == ModelVersion.Kind.TRANSFORMER:
        raise ApplicationError("The transformer (fine-tuning) path is not built yet; use heads.")
    if kind not in ModelVersion.Kind.values:
        raise ApplicationError(f"Unknown model kind '{kind}'.")
    try:
        train_config = TrainConfig.from_dict(dict(config or {}))
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"Bad training options: {exc}") from exc
    labelled = _training_comparisons(project).count()
    if labelled < MIN_TRAIN_PAIRS:
        raise ApplicationError(
            f"The project has {labelled} labelled A/B pairs; training needs at least "
            f"{MIN_TRAIN_PAIRS}. Label or import more first."
        )
    version = ModelVersion.objects.create(project=project, kind=kind, config=train_config.to_dict())
    if enqueue:
        from scoring.tasks import model_version_train_task

        transaction.on_commit(lambda: model_version_train_task.delay(version.id))
    return version


def model_version_cancel(*, version: ModelVersion) -> ModelVersion:
    """Ask a queued or running run to stop: the trainer sees the flag at its next progress
    report. A finished run is left as it is."""
    ModelVersion.objects.filter(
        pk=version.pk, status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]
    ).update(status=ModelVersion.Status.CANCELLED, finished_at=timezone.now())
    version.refresh_from_db()
    return version


def model_version_train(*, version: ModelVersion) -> ModelVersion:
    """Run a queued training run. Idempotent: a finished run is left as it is, and one that
    another worker holds is left to it. A run marked running whose worker died (the task is
    delivered again) runs again from the start: nothing it did was made active."""
    with advisory_lock_try(MODEL_VERSION_LOCK, version.pk) as locked:
        claimed = locked and ModelVersion.objects.filter(
            pk=version.pk,
            status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING],
        ).update(
            status=ModelVersion.Status.RUNNING,
            started_at=timezone.now(),
            progress_done=0,
            progress_total=0,
            loss_history=[],
            error="",
        )
        if claimed:
            _model_version_execute(version.pk)
    version.refresh_from_db()
    return version


def _model_version_execute(version_id: int) -> None:
    version = ModelVersion.objects.select_related("project").get(pk=version_id)
    running = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.RUNNING)
    try:
        config = TrainConfig.from_dict(version.config)
        encoder = encoder_current()
        embeddings_compute_project(project=version.project, encoder=encoder)
        pairs, keys, label_set_hash = _training_pairs(version.project, encoder)
        train_idx, eval_idx = stable_split(keys)
        losses: list[float] = []

        # Short autocommit updates (no transaction is open here), so the UI sees them.
        def progress(done: int, total: int, loss: float) -> None:
            losses.append(round(float(loss), 6))
            running.update(progress_done=done, progress_total=total, loss_history=losses)

        def should_stop() -> bool:
            return ModelVersion.objects.filter(
                pk=version_id, status=ModelVersion.Status.CANCELLED
            ).exists()

        result = train_ensemble(
            config,
            pairs.subset(train_idx),
            pairs.subset(eval_idx) if len(eval_idx) else None,
            progress=progress,
            should_stop=should_stop,
        )
        buffer = io.BytesIO()
        ensemble_save(result, buffer)
        with transaction.atomic():
            row = ModelVersion.objects.select_for_update().get(pk=version_id)
            if row.status != ModelVersion.Status.RUNNING:  # cancelled at the last moment
                return
            ModelVersion.objects.filter(project_id=row.project_id, is_active=True).update(
                is_active=False
            )
            row.artifact.save(f"reward-{row.pk}.pt", ContentFile(buffer.getvalue()), save=False)
            row.metrics = {**result.metrics, "eval_pairs": float(len(eval_idx))}
            row.label_set_hash = label_set_hash
            row.loss_history = losses
            row.status = ModelVersion.Status.SUCCEEDED
            row.is_active = True
            row.finished_at = timezone.now()
            row.save()
            from scoring.tasks import scores_compute_task

            transaction.on_commit(lambda: scores_compute_task.delay(version_id))
    except Cancelled:
        logger.info("training run %s was cancelled", version_id)
    except Exception as exc:
        logger.exception("training run %s failed", version_id)
        running.update(
            status=ModelVersion.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )


def _training_comparisons(project: Project):
    return Comparison.objects.filter(
        project=project,
        label__in=[Choice.A, Choice.B],
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    )


def _training_pairs(project: Project, encoder: Encoder) -> tuple[PairArrays, list[str], str]:
    """The labelled A/B comparisons as PairArrays (chosen first), their split keys and the
    label-set hash (sha256 over the sorted comparison ids and labels)."""
    first_source = Subquery(
        Judgement.objects.filter(comparison=OuterRef("pk")).order_by("id").values("source_kind")[:1]
    )
    rows = list(
        _training_comparisons(project)
        .annotate(
            len_a=Length("candidate_a__text"),
            len_b=Length("candidate_b__text"),
            source=first_source,
        )
        .order_by("id")
        .values_list(
            "id",
            "label",
            "label_margin",
            "prompt__content_hash",
            "candidate_a__content_hash",
            "candidate_b__content_hash",
            "len_a",
            "len_b",
            "source",
        )
    )
    if len(rows) < MIN_TRAIN_PAIRS:
        raise ApplicationError(
            f"only {len(rows)} labelled A/B pairs; training needs {MIN_TRAIN_PAIRS}"
        )
    ids, labels, margins, p_hash, a_hash, b_hash, len_a, len_b, sources = zip(*rows, strict=True)
    a_wins = np.array([label == Choice.A for label in labels])
    prompt = embeddings_load(content_hashes=p_hash, encoder=encoder)
    a = embeddings_load(content_hashes=a_hash, encoder=encoder)
    b = embeddings_load(content_hashes=b_hash, encoder=encoder)
    lengths_a, lengths_b = np.asarray(len_a, dtype=np.float32), np.asarray(len_b, dtype=np.float32)
    margin = None
    if any(m is not None for m in margins):
        margin = np.array([m or 0.0 for m in margins], dtype=np.float32)
    pairs = PairArrays(
        prompt=prompt,
        chosen=np.where(a_wins[:, None], a, b),
        rejected=np.where(a_wins[:, None], b, a),
        margin=margin,
        chosen_len=np.where(a_wins, lengths_a, lengths_b),
        rejected_len=np.where(a_wins, lengths_b, lengths_a),
        sources=[s or "unknown" for s in sources],
    )
    keys = [f"{ha}{hb}" for ha, hb in zip(a_hash, b_hash, strict=True)]
    digest = hashlib.sha256()
    for cid, label in sorted(zip(ids, labels, strict=True)):
        digest.update(f"{cid}:{label}\n".encode())
    return pairs, keys, digest.hexdigest()


def scores_compute(*, version: ModelVersion) -> int:
    """P(A > B) (ensemble mean and spread) of `version` for every text comparison of its
    project; return how many were written. Idempotent: rows are upserted on (comparison,
    model version)."""
    if version.status != ModelVersion.Status.SUCCEEDED or not version.artifact:
        raise ApplicationError(f"Model version #{version.pk} has no trained model to score with.")
    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))
    encoder = encoder_current()
    embeddings_compute_project(project=version.project, encoder=encoder)
    comparisons = Comparison.objects.filter(
        project_id=version.project_id,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    ).order_by("id")
    written, last_id = 0, 0
    while rows := list(
        comparisons.filter(id__gt=last_id).values_list(
            "id", "prompt__content_hash", "candidate_a__content_hash", "candidate_b__content_hash"
        )[:SCORE_CHUNK]
    ):
        ids, p_hash, a_hash, b_hash = zip(*rows, strict=True)
        p_a, spread = ensemble_score(
            ensemble,
            embeddings_load(content_hashes=p_hash, encoder=encoder),
            embeddings_load(content_hashes=a_hash, encoder=encoder),
            embeddings_load(content_hashes=b_hash, encoder=encoder),
        )
        Score.objects.bulk_create(
            [
                Score(comparison_id=cid, model_version=version, p_a=float(p), spread=float(s))
                for cid, p, s in zip(ids, p_a, spread, strict=True)
            ],
            batch_size=5000,
            update_conflicts=True,
            unique_fields=["comparison", "model_version"],
            update_fields=["p_a", "spread"],
        )
        written += len(rows)
        last_id = ids[-1]
    return written
