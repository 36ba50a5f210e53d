"""Writes of the scoring app: the embedding store, reward-model training runs and scores."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, connections, transaction
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Length
from django.utils import timezone

from annotation.exceptions import ApplicationError
from annotation.models import Candidate, Choice, Comparison, Judgement, Project, Prompt
from annotation.services.locks import advisory_lock_try
from scoring.encoders import Encoder, encoder_for
from scoring.models import Embedding, ModelVersion, Score
from scoring.selectors import EmbeddingsMissing, embeddings_load, embeddings_missing
from scoring.signals import model_version_activated
from scoring.train import (
    Cancelled,
    PairArrays,
    TrainConfig,
    ensemble_load,
    ensemble_save,
    ensemble_score,
    ensemble_score_indexed,
    fast_dtype,
    stable_split,
    train_ensemble,
)
from scoring.transformer import (
    TextPairs,
    TransformerConfig,
    transformer_load,
    transformer_save,
    transformer_train,
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
AUTO_TRAIN_LOCK = 0x5C0F  # advisory lock class for the automatic-training decision
# Comparisons scored (and their vectors loaded) per round. Rounds of 10,000-12,500 overlap
# reading with scoring best on 2 cores (100k: 3.9-4.5 s; 25,000: 4.6 s; 50,000: 5.1 s;
# 5,000: 4.6-5.0 s; docs/benchmarks.md).
SCORE_CHUNK = 12_500
TRANSFORMER_SCORE_CHUNK = 2_000  # comparisons (with their texts) a transformer scores per round

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
    trigger: str = ModelVersion.Trigger.MANUAL,
) -> ModelVersion:
    """Create a queued training run of `project` and enqueue it once committed
    (`enqueue=False`: the caller runs `model_version_train` itself, as `--wait` does).

    Heads train on the `cpu` queue. A transformer run goes to the `gpu` queue when a worker
    serves it, and otherwise to `cpu` if the project is small enough
    (settings.SCORING_TRANSFORMER_CPU_MAX_PAIRS); a bigger one is refused."""
    if kind not in ModelVersion.Kind.values:
        raise ApplicationError(f"Unknown model kind '{kind}'.")
    options = dict(config or {})
    if kind == ModelVersion.Kind.HEADS:
        options.setdefault("members", project.ensemble_members)
    try:
        config_class = TransformerConfig if kind == ModelVersion.Kind.TRANSFORMER else TrainConfig
        train_config = config_class.from_dict(options)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"Bad training options: {exc}") from exc
    labelled = _training_comparisons(project).count()
    if labelled < MIN_TRAIN_PAIRS:
        raise ApplicationError(
            f"The project has {labelled} labelled A/B pairs; training needs at least "
            f"{MIN_TRAIN_PAIRS}. Label or import more first."
        )
    queue = "cpu"
    if kind == ModelVersion.Kind.TRANSFORMER and enqueue:
        queue = _transformer_queue(labelled)
    version = ModelVersion.objects.create(
        project=project,
        kind=kind,
        config=train_config.to_dict(),
        trigger=trigger,
        queue=queue,
        label_count=labelled,
    )
    if enqueue:
        from scoring.tasks import model_version_train_task

        transaction.on_commit(
            lambda: model_version_train_task.apply_async((version.id,), queue=queue)
        )
    return version


def gpu_worker_available(timeout: float = 1.0) -> bool:
    """Whether a live Celery worker consumes the `gpu` queue (asks the workers, `timeout` s)."""
    from config.celery_app import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # an unreachable broker: no GPU worker we could use
        logger.warning("could not ask the workers for their queues", exc_info=True)
        return False
    return any(q.get("name") == "gpu" for queues in replies.values() for q in queues)


def _transformer_queue(labelled: int) -> str:
    if gpu_worker_available():
        return "gpu"
    limit = settings.SCORING_TRANSFORMER_CPU_MAX_PAIRS
    if labelled > limit:
        raise ApplicationError(
            f"No GPU worker is up, and fine-tuning a transformer on {labelled} pairs on a CPU "
            f"would take hours (the CPU limit is {limit} pairs). Start a worker with "
            "SCORING_DEVICE=cuda on the 'gpu' queue, or train heads."
        )
    return "cpu"


def model_version_auto_train(*, project: Project) -> ModelVersion | None:
    """Start a heads run when the project trains automatically (`auto_train_every` = N) and
    has N or more labelled pairs beyond the newest run's count; return it, or None. Never
    while a run is queued or running, so a burst of labels makes one run; a failed run also
    waits for N more labels before the next try."""
    if not project.auto_train_every:
        return None
    with advisory_lock_try(AUTO_TRAIN_LOCK, project.pk) as locked:
        if not locked:  # another worker is deciding right now
            return None
        busy = [ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]
        if ModelVersion.objects.filter(project=project, status__in=busy).exists():
            return None
        newest = ModelVersion.objects.filter(project=project).order_by("-created_at", "-id").first()
        seen = newest.label_count if newest else 0
        if _training_comparisons(project).count() - seen < project.auto_train_every:
            return None
        try:
            return model_version_train_start(project=project, trigger=ModelVersion.Trigger.AUTO)
        except ApplicationError as exc:
            logger.info("automatic training of %s not started: %s", project.slug, exc.message)
            return None


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
    losses: list[float] = []

    # Short autocommit updates (no transaction is open here), so the UI sees them.
    def progress(done: int, total: int, loss: float) -> None:
        losses.append(round(float(loss), 6))
        running.update(progress_done=done, progress_total=total, loss_history=losses)

    def should_stop() -> bool:
        return ModelVersion.objects.filter(
            pk=version_id, status=ModelVersion.Status.CANCELLED
        ).exists()

    try:
        if version.kind == ModelVersion.Kind.TRANSFORMER:
            artifact, metrics, label_set_hash = _transformer_fit(version, progress, should_stop)
        else:
            artifact, metrics, label_set_hash = _heads_fit(version, progress, should_stop)
        with transaction.atomic():
            row = ModelVersion.objects.select_for_update().get(pk=version_id)
            if row.status != ModelVersion.Status.RUNNING:  # cancelled at the last moment
                return
            ModelVersion.objects.filter(project_id=row.project_id, is_active=True).update(
                is_active=False
            )
            row.artifact.save(
                f"reward-{row.pk}.{artifact[1]}", ContentFile(artifact[0]), save=False
            )
            row.metrics = metrics
            row.label_set_hash = label_set_hash
            row.loss_history = losses
            row.status = ModelVersion.Status.SUCCEEDED
            row.is_active = True
            row.finished_at = timezone.now()
            row.save()
            transaction.on_commit(lambda: _model_version_activated(row))
    except Cancelled:
        logger.info("training run %s was cancelled", version_id)
    except Exception as exc:
        logger.exception("training run %s failed", version_id)
        running.update(
            status=ModelVersion.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )


def _model_version_activated(version: ModelVersion) -> None:
    """After the commit that made `version` active: score the project with it (on the queue
    it trained on: a transformer scores where its GPU is), then tell other apps."""
    from scoring.tasks import scores_compute_task

    scores_compute_task.apply_async((version.pk,), queue=version.queue)
    model_version_activated.send(
        sender=ModelVersion, version_id=version.pk, project_id=version.project_id
    )


def _heads_fit(version: ModelVersion, progress, should_stop) -> tuple[tuple[bytes, str], dict, str]:
    config = TrainConfig.from_dict(version.config)
    encoder = encoder_current()
    embeddings_compute_project(project=version.project, encoder=encoder)
    pairs, keys, label_set_hash = _training_pairs(version.project, encoder)
    train_idx, eval_idx = stable_split(keys)
    result = train_ensemble(
        config,
        pairs.subset(train_idx),
        pairs.subset(eval_idx) if len(eval_idx) else None,
        progress=progress,
        should_stop=should_stop,
    )
    buffer = io.BytesIO()
    ensemble_save(result, buffer)
    metrics = {**result.metrics, "eval_pairs": float(len(eval_idx))}
    return (buffer.getvalue(), "pt"), metrics, label_set_hash


def _transformer_fit(
    version: ModelVersion, progress, should_stop
) -> tuple[tuple[bytes, str], dict, str]:
    config = TransformerConfig.from_dict(version.config)
    rows = _training_rows(version.project)
    texts = dict(
        Prompt.objects.filter(
            content_hash__in={r.prompt_hash for r in rows}, project=version.project
        ).values_list("content_hash", "text")
    )
    candidates = dict(
        Candidate.objects.filter(
            id__in={r.a_id for r in rows} | {r.b_id for r in rows}
        ).values_list("id", "text")
    )
    chosen = [candidates[r.a_id if r.a_wins else r.b_id] for r in rows]
    rejected = [candidates[r.b_id if r.a_wins else r.a_id] for r in rows]
    pairs = TextPairs(
        prompt=[texts[r.prompt_hash] for r in rows],
        chosen=chosen,
        rejected=rejected,
        margin=_margins(rows),
        chosen_len=np.array([len(t) for t in chosen], dtype=np.float32),
        rejected_len=np.array([len(t) for t in rejected], dtype=np.float32),
        sources=[r.source or "unknown" for r in rows],
    )
    train_idx, eval_idx = stable_split([r.key for r in rows])
    rm = transformer_train(
        config,
        pairs.subset(train_idx),
        pairs.subset(eval_idx) if len(eval_idx) else None,
        progress=progress,
        should_stop=should_stop,
    )
    buffer = io.BytesIO()
    transformer_save(rm, buffer)
    metrics = {**rm.metrics, "eval_pairs": float(len(eval_idx)), "device": str(rm.device)}
    return (buffer.getvalue(), "zip"), metrics, _label_set_hash(rows)


def _scores_compute_transformer(version: ModelVersion) -> int:
    """Score every text comparison with a fine-tuned transformer: P(A > B) =
    sigmoid(r(prompt, a) - r(prompt, b)); one model, so the spread is 0."""
    with version.artifact.open("rb") as fh:
        rm = transformer_load(fh.read(), device=settings.SCORING_DEVICE)
    comparisons = Comparison.objects.filter(
        project_id=version.project_id,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    ).order_by("id")
    written, last_id = 0, 0
    while rows := list(
        comparisons.filter(id__gt=last_id).values_list(
            "id", "prompt__text", "candidate_a__text", "candidate_b__text"
        )[:TRANSFORMER_SCORE_CHUNK]
    ):
        ids, prompts, texts_a, texts_b = zip(*rows, strict=True)
        r_a = rm.score(prompts, texts_a).astype(np.float64)
        r_b = rm.score(prompts, texts_b).astype(np.float64)
        p_a = 1.0 / (1.0 + np.exp(-(r_a - r_b)))
        Score.objects.bulk_create(
            [
                Score(comparison_id=cid, model_version=version, p_a=float(p), spread=0.0)
                for cid, p in zip(ids, p_a, strict=True)
            ],
            batch_size=5000,
            update_conflicts=True,
            unique_fields=["comparison", "model_version"],
            update_fields=["p_a", "spread"],
        )
        written += len(rows)
        last_id = ids[-1]
    return written


def _training_comparisons(project: Project):
    return Comparison.objects.filter(
        project=project,
        label__in=[Choice.A, Choice.B],
        excluded=False,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    )


@dataclass(frozen=True)
class _Row:
    id: int
    a_wins: bool
    margin: float | None
    prompt_hash: str
    a_hash: str
    b_hash: str
    a_id: int
    b_id: int
    len_a: int
    len_b: int
    source: str | None

    @property
    def key(self) -> str:  # the stable split key: the pair, whatever its label
        return f"{self.a_hash}{self.b_hash}"


def _training_rows(project: Project) -> list[_Row]:
    """The labelled A/B comparisons that training reads, in id order."""
    first_source = Subquery(
        Judgement.objects.filter(comparison=OuterRef("pk")).order_by("id").values("source_kind")[:1]
    )
    rows = [
        _Row(cid, label == Choice.A, *rest)
        for cid, label, *rest in _training_comparisons(project)
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
            "candidate_a_id",
            "candidate_b_id",
            "len_a",
            "len_b",
            "source",
        )
    ]
    if len(rows) < MIN_TRAIN_PAIRS:
        raise ApplicationError(
            f"only {len(rows)} labelled A/B pairs; training needs {MIN_TRAIN_PAIRS}"
        )
    return rows


def _margins(rows: list[_Row]) -> np.ndarray | None:
    if all(r.margin is None for r in rows):
        return None
    return np.array([r.margin or 0.0 for r in rows], dtype=np.float32)


def _label_set_hash(rows: list[_Row]) -> str:
    """sha256 over the sorted comparison ids and labels: the exact label set a run saw."""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.id):
        digest.update(f"{row.id}:{Choice.A if row.a_wins else Choice.B}\n".encode())
    return digest.hexdigest()


def _training_pairs(project: Project, encoder: Encoder) -> tuple[PairArrays, list[str], str]:
    """The labelled A/B comparisons as PairArrays (chosen first), their split keys and the
    label-set hash."""
    rows = _training_rows(project)
    a_wins = np.array([r.a_wins for r in rows])
    prompt = embeddings_load(content_hashes=[r.prompt_hash for r in rows], encoder=encoder)
    a = embeddings_load(content_hashes=[r.a_hash for r in rows], encoder=encoder)
    b = embeddings_load(content_hashes=[r.b_hash for r in rows], encoder=encoder)
    lengths_a = np.array([r.len_a for r in rows], dtype=np.float32)
    lengths_b = np.array([r.len_b for r in rows], dtype=np.float32)
    pairs = PairArrays(
        prompt=prompt,
        chosen=np.where(a_wins[:, None], a, b),
        rejected=np.where(a_wins[:, None], b, a),
        margin=_margins(rows),
        chosen_len=np.where(a_wins, lengths_a, lengths_b),
        rejected_len=np.where(a_wins, lengths_b, lengths_a),
        sources=[r.source or "unknown" for r in rows],
    )
    return pairs, [r.key for r in rows], _label_set_hash(rows)


def scores_compute(*, version: ModelVersion) -> int:
    """P(A > B) (ensemble mean and spread) of `version` for every text comparison of its
    project; return how many were written. Idempotent: rows are upserted on (comparison,
    model version), so scoring again overwrites them.

    Per round of SCORE_CHUNK comparisons: one query reads the comparisons with their three
    vectors, the heads run once per distinct (prompt, response) in bfloat16 where the CPU
    has it natively (`fast_dtype`), and one statement upserts the scores; the next round is
    read meanwhile on a second connection (`_prefetcher`). Contents without a vector are
    embedded first (`embeddings_compute_project`), then the round is read again."""
    if version.status != ModelVersion.Status.SUCCEEDED or not version.artifact:
        raise ApplicationError(f"Model version #{version.pk} has no trained model to score with.")
    if version.kind == ModelVersion.Kind.TRANSFORMER:
        return _scores_compute_transformer(version)
    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))
    dtype = fast_dtype(next(ensemble.parameters()).device)
    encoder = encoder_current()

    def read(after_id: int) -> _ScoreChunk | None:
        return _score_chunk_read(version.project_id, encoder, after_id, SCORE_CHUNK)

    written, last_id, embedded = 0, 0, False
    with _prefetcher() as prefetch:
        pending = prefetch(read, last_id)
        while chunk := pending.result():
            if chunk.missing:
                if embedded:  # embedded already, still missing: the encoder wrote nothing
                    raise EmbeddingsMissing(
                        f"{chunk.missing:,} contents of project #{version.project_id} have no "
                        f"{encoder.version} vector after embedding them."
                    )
                embeddings_compute_project(project=version.project, encoder=encoder)
                embedded = True
                pending = prefetch(read, last_id)  # the same round again, with its vectors
                continue
            last_id = int(chunk.ids.max())
            # The next round is read (mostly PostgreSQL's time) while this one is scored
            # and written (mostly ours).
            pending = prefetch(read, last_id)
            p_a, spread = _chunk_score(ensemble, chunk, dtype)
            written += _scores_write(chunk.ids, version.pk, p_a, spread)
    return written


# ---------------------------------------------------------------- scoring, helpers


@contextmanager
def _prefetcher() -> Iterator[Callable[..., Future]]:
    """`prefetch(fn, *args)` -> a Future of `fn(*args)`, run in one background thread with
    its own database connection (closed at the end) on PostgreSQL outside a transaction.
    Inside a transaction another connection would not see its rows, and SQLite has one
    writer: there the call runs at once, in this thread."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:

        def now(fn: Callable, *args) -> Future:
            future: Future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future

        yield now
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scores-read") as pool:
        try:
            yield pool.submit
        finally:
            # Connections are per thread: run there, this closes the reader thread's own.
            pool.submit(connections.close_all).result()


@dataclass
class _ScoreChunk:
    """A round of comparisons to score: ids (N,); prompt, A and B vectors, each (N, dim)
    float32; how many of the round's contents have no vector; and, where responses repeat
    enough to be worth it, `distinct`: (first, inverse) of the distinct (prompt, response)
    rows among the 2N (A rows, then B rows)."""

    ids: np.ndarray
    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    missing: int
    distinct: tuple[np.ndarray, np.ndarray] | None = None


# Score the distinct (prompt, response) rows only when they are at most this share of all.
DISTINCT_SHARE = 0.9


def _chunk_score(ensemble, chunk: _ScoreChunk, dtype) -> tuple[np.ndarray, np.ndarray]:
    """P(A > B) mean and spread of a round, each distinct (prompt, response) row once."""
    if chunk.distinct is None:
        return ensemble_score(ensemble, chunk.prompt, chunk.a, chunk.b, dtype=dtype)
    first, inverse = chunk.distinct
    n = len(chunk.ids)
    from_a = first < n
    responses = np.empty((len(first), chunk.a.shape[1]), dtype=np.float32)
    responses[from_a] = chunk.a[first[from_a]]
    responses[~from_a] = chunk.b[first[~from_a] - n]
    return ensemble_score_indexed(
        ensemble,
        chunk.prompt[first % n],
        responses,
        inverse[:n],
        inverse[n:],
        dtype=dtype,
    )


def _score_chunk_read(
    project_id: int, encoder: Encoder, after_id: int, limit: int
) -> _ScoreChunk | None:
    """The next `limit` text comparisons of the project with id > after_id, by id."""
    if connection.vendor != "postgresql":
        return _score_chunk_read_orm(project_id, encoder, after_id, limit)
    import psycopg

    c, p, cand, e = (
        Comparison._meta.db_table,
        Prompt._meta.db_table,
        Candidate._meta.db_table,
        Embedding._meta.db_table,
    )
    # One statement: the comparisons, each side's (prompt, candidate) ids, and the three
    # vectors (NULL where missing). Results in binary: bytea comes back as raw bytes.
    query = (
        f"SELECT c.id, c.prompt_id, c.candidate_a_id, c.candidate_b_id, "
        f"ep.dtype, ep.vector, ea.dtype, ea.vector, eb.dtype, eb.vector "
        f"FROM (SELECT id, prompt_id, candidate_a_id, candidate_b_id FROM {c} "
        f"      WHERE project_id = %s AND id > %s ORDER BY id LIMIT %s) c "
        f"JOIN {p} p ON p.id = c.prompt_id "
        f"JOIN {cand} ca ON ca.id = c.candidate_a_id AND ca.kind = %s "
        f"JOIN {cand} cb ON cb.id = c.candidate_b_id AND cb.kind = %s "
        f"LEFT JOIN {e} ep ON ep.content_hash = p.content_hash AND ep.encoder = %s "
        f"LEFT JOIN {e} ea ON ea.content_hash = ca.content_hash AND ea.encoder = %s "
        f"LEFT JOIN {e} eb ON eb.content_hash = cb.content_hash AND eb.encoder = %s"
    )  # no ORDER BY: sorting 2 KB rows spills to disk; the ids are sorted in numpy instead
    text = Candidate.Kind.TEXT
    params = [project_id, after_id, limit, text, text] + [encoder.version] * 3
    connection.ensure_connection()
    # SET LOCAL needs a transaction: the JIT compiler costs ~0.1 s a round and gains
    # nothing on index look-ups and hash joins.
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(query, params, binary=True)
        rows = cursor.fetchall()
        if not rows:
            # The window held only non-text comparisons: step over it, or stop at the end.
            cursor.execute(
                f"SELECT max(id) FROM (SELECT id FROM {c} WHERE project_id = %s AND id > %s "
                f"ORDER BY id LIMIT %s) w",
                [project_id, after_id, limit],
            )
            last = cursor.fetchone()[0]
            if last is None:
                return None
            return _score_chunk_read(project_id, encoder, last, limit)
    ids, prompt_ids, a_ids, b_ids, p_dt, p_vec, a_dt, a_vec, b_dt, b_vec = zip(*rows, strict=True)
    return _score_chunk_build(
        np.array(ids, dtype=np.int64),
        np.array(prompt_ids, dtype=np.int64),
        np.array(a_ids, dtype=np.int64),
        np.array(b_ids, dtype=np.int64),
        (p_dt, p_vec),
        (a_dt, a_vec),
        (b_dt, b_vec),
        encoder.dim,
    )


def _score_chunk_read_orm(
    project_id: int, encoder: Encoder, after_id: int, limit: int
) -> _ScoreChunk | None:
    """The same round on databases other than PostgreSQL (SQLite in development)."""
    window = list(
        Comparison.objects.filter(project_id=project_id, id__gt=after_id)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if not window:
        return None
    rows = list(
        Comparison.objects.filter(
            id__in=window,
            candidate_a__kind=Candidate.Kind.TEXT,
            candidate_b__kind=Candidate.Kind.TEXT,
        )
        .order_by("id")
        .values_list(
            "id",
            "prompt_id",
            "candidate_a_id",
            "candidate_b_id",
            "prompt__content_hash",
            "candidate_a__content_hash",
            "candidate_b__content_hash",
        )
    )
    if not rows:
        return _score_chunk_read_orm(project_id, encoder, window[-1], limit)
    ids, prompt_ids, a_ids, b_ids, p_hash, a_hash, b_hash = zip(*rows, strict=True)
    found = {
        h: (dt, bytes(v))
        for h, dt, v in Embedding.objects.filter(
            encoder=encoder.version, content_hash__in=set(p_hash + a_hash + b_hash)
        ).values_list("content_hash", "dtype", "vector")
    }

    def column(hashes):
        pairs = [found.get(h, (None, None)) for h in hashes]
        return [d for d, _ in pairs], [v for _, v in pairs]

    return _score_chunk_build(
        np.array(ids, dtype=np.int64),
        np.array(prompt_ids, dtype=np.int64),
        np.array(a_ids, dtype=np.int64),
        np.array(b_ids, dtype=np.int64),
        column(p_hash),
        column(a_hash),
        column(b_hash),
        encoder.dim,
    )


def _vectors_matrix(dtypes, vectors, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, dim) float32 from per-row (dtype, bytes); rows without a vector are NaN. Also the
    mask of missing rows."""
    n = len(vectors)
    missing = np.fromiter((v is None for v in vectors), dtype=bool, count=n)
    kinds = set(dtypes) - {None}
    if not missing.any() and len(kinds) == 1:  # the usual case: one join, one frombuffer
        raw = np.frombuffer(b"".join(vectors), dtype=np.dtype(kinds.pop()).newbyteorder("<"))
        return raw.reshape(n, dim).astype(np.float32), missing
    out = np.full((n, dim), np.nan, dtype=np.float32)
    for i, (dt, v) in enumerate(zip(dtypes, vectors, strict=True)):
        if v is not None:
            out[i] = np.frombuffer(v, dtype=np.dtype(dt).newbyteorder("<"))
    return out, missing


def _score_chunk_build(ids, prompt_ids, a_ids, b_ids, p_col, a_col, b_col, dim) -> _ScoreChunk:
    prompt, p_missing = _vectors_matrix(*p_col, dim)
    a, a_missing = _vectors_matrix(*a_col, dim)
    b, b_missing = _vectors_matrix(*b_col, dim)
    chunk = _ScoreChunk(ids, prompt, a, b, int(p_missing.sum() + a_missing.sum() + b_missing.sum()))
    # Distinct (prompt, candidate) rows: a response compared several times (rankings,
    # overlapping pairs) need go through the heads once. Ids are positive and far below
    # 2**31 in practice: packed into one int64 key each, a 1-d unique is fast (a 2-d
    # `np.unique(axis=...)` sorts row views, about 50 times slower).
    n = len(ids)
    both_ids = np.concatenate([a_ids, b_ids])
    prompts_twice = np.concatenate([prompt_ids, prompt_ids])
    width = int(both_ids.max()) + 1
    if int(prompts_twice.max()) < (2**62) // width:
        _, first, inverse = np.unique(
            prompts_twice * width + both_ids, return_index=True, return_inverse=True
        )
    else:
        _, first, inverse = np.unique(
            np.stack([prompts_twice, both_ids], axis=1),
            axis=0,
            return_index=True,
            return_inverse=True,
        )
    if len(first) <= DISTINCT_SHARE * 2 * n:
        chunk.distinct = (first, inverse.reshape(-1))
    return chunk


def _scores_write(ids: np.ndarray, version_id: int, p_a: np.ndarray, spread: np.ndarray) -> int:
    """Upsert (comparison, version) scores in one statement; return the rows written."""
    if connection.vendor != "postgresql":
        Score.objects.bulk_create(
            [
                Score(
                    comparison_id=int(c), model_version_id=version_id, p_a=float(p), spread=float(s)
                )
                for c, p, s in zip(ids, p_a, spread, strict=True)
            ],
            batch_size=5000,
            update_conflicts=True,
            unique_fields=["comparison", "model_version"],
            update_fields=["p_a", "spread"],
        )
        return len(ids)
    # In comparison order, so that two writers of the same rows cannot deadlock.
    order = np.argsort(ids, kind="stable")
    ids, p_a, spread = ids[order], p_a[order], spread[order]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Score._meta.db_table} (comparison_id, model_version_id, p_a, spread) "
            "SELECT k.c, %s, k.p, k.s FROM unnest(%s::bigint[], %s::float8[], %s::float8[]) "
            "AS k(c, p, s) "
            "ON CONFLICT (comparison_id, model_version_id) "
            "DO UPDATE SET p_a = EXCLUDED.p_a, spread = EXCLUDED.spread",
            # Array literals as text: PostgreSQL parses them in C; psycopg would adapt
            # 3 x N Python numbers one by one.
            [version_id, _array_text(ids), _array_text(p_a), _array_text(spread)],
        )
        return cursor.rowcount


def _array_text(values: np.ndarray) -> str:
    """A PostgreSQL array literal of numbers: '{1,2.5,...}' (float32 values exactly, as the
    shortest decimal that reads back as the same double)."""
    return "{" + ",".join(map(repr, values.tolist())) + "}"
