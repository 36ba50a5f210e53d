"""Reward-model training runs: started by hand or after enough new labels, executed on a
worker (heads on embeddings, or a fine-tuned transformer), cancelled from the models page.

A run that succeeds registers its ModelVersion and makes it the project's active one in the
same transaction as the run's success; once that commits, the project is scored with it
(on the queue it trained on) and other apps hear of it (`model_version_activated`: routing
re-routes). A failed or cancelled run registers nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Length

from annotation.models import Candidate, Choice, Judgement, Project, Prompt
from core.exceptions import ApplicationError
from core.locks import Lock, advisory_lock_try
from core.runs import OnProgress, RunHandle, run_cancel, run_enqueue, run_execute
from scoring.models import ModelVersion, TrainingRun
from scoring.selectors import (
    embeddings_load,
    project_modality,
    scoring_settings_get,
    training_comparisons,
)
from scoring.services.embeddings import PairEncoders, embeddings_compute_project, pair_encoders
from scoring.signals import model_version_activated
from scoring.train import PairArrays, TrainConfig, ensemble_save, stable_split, train_ensemble
from scoring.transformer import TextPairs, TransformerConfig, transformer_save, transformer_train

logger = logging.getLogger(__name__)

# Fewer labelled A/B pairs than this cannot give a model (or a held-out split) worth having.
MIN_TRAIN_PAIRS = 20


def training_run_create(
    *,
    project: Project,
    kind: str = TrainingRun.Kind.HEADS,
    config: dict | None = None,
    trigger: str = TrainingRun.Trigger.MANUAL,
    created_by=None,
    queue: str | None = None,
) -> TrainingRun:
    """A queued training run of `project`, its options validated (nothing is enqueued: see
    training_run_start, or execute it here with training_run_execute)."""
    if kind not in TrainingRun.Kind.values:
        raise ApplicationError(f"Unknown model kind '{kind}'.")
    options = dict(config or {})
    if kind == TrainingRun.Kind.HEADS:
        options.setdefault("members", scoring_settings_get(project=project).ensemble_members)
    try:
        config_class = TransformerConfig if kind == TrainingRun.Kind.TRANSFORMER else TrainConfig
        train_config = config_class.from_dict(options)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"Bad training options: {exc}") from exc
    modality = project_modality(project=project)
    if kind == TrainingRun.Kind.TRANSFORMER and modality != Candidate.Kind.TEXT:
        raise ApplicationError(
            f"A fine-tuned transformer reads text, and this project's candidates are "
            f"{modality} files: train heads on {modality} embeddings instead."
        )
    labelled = training_comparisons(project=project, modality=modality).count()
    if labelled < MIN_TRAIN_PAIRS:
        raise ApplicationError(
            f"The project has {labelled} labelled A/B pairs; training needs at least "
            f"{MIN_TRAIN_PAIRS}. Label or import more first."
        )
    if queue is None:
        gpu = kind == TrainingRun.Kind.TRANSFORMER and settings.SCORING_DEVICE == "cuda"
        queue = "gpu" if gpu else "cpu"
    return TrainingRun.objects.create(
        project=project,
        kind=kind,
        config=train_config.to_dict(),
        trigger=trigger,
        queue=queue,
        label_count=labelled,
        created_by=created_by,
    )


def training_run_start(
    *,
    project: Project,
    kind: str = TrainingRun.Kind.HEADS,
    config: dict | None = None,
    trigger: str = TrainingRun.Trigger.MANUAL,
    created_by=None,
) -> TrainingRun:
    """training_run_create, then enqueue it once committed.

    Heads train on the `cpu` queue. A transformer run goes to the `gpu` queue when a worker
    serves it, and otherwise to `cpu` if the project is small enough
    (settings.SCORING_TRANSFORMER_CPU_MAX_PAIRS); a bigger one is refused."""
    queue = "cpu"
    if kind == TrainingRun.Kind.TRANSFORMER:
        queue = _transformer_queue(training_comparisons(project=project).count())
    run = training_run_create(
        project=project,
        kind=kind,
        config=config,
        trigger=trigger,
        created_by=created_by,
        queue=queue,
    )
    run_enqueue(run)
    return run


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


def training_auto_start(*, project: Project) -> TrainingRun | None:
    """Start a heads run when the project trains automatically (`auto_train_every` = N) and
    has N or more labelled pairs beyond the newest run's count; return it, or None. Never
    while a run is queued or running, so a burst of labels makes one run; a failed run also
    waits for N more labels before the next try. (A run whose worker died is failed by the
    runs sweep, so it cannot hold automatic training off for good.)"""
    every = scoring_settings_get(project=project).auto_train_every
    if not every:
        return None
    with advisory_lock_try(Lock.AUTO_TRAIN, project.pk) as locked:
        if not locked:  # another worker is deciding right now
            return None
        runs = TrainingRun.objects.filter(project=project)
        if runs.active().exists():
            return None
        newest = runs.order_by("-created_at", "-id").first()
        seen = newest.label_count if newest else 0
        if training_comparisons(project=project).count() - seen < every:
            return None
        try:
            return training_run_start(project=project, trigger=TrainingRun.Trigger.AUTO)
        except ApplicationError as exc:
            logger.info("automatic training of %s not started: %s", project.slug, exc.message)
            return None


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Ask a queued or running run to stop: the trainer stops at its next progress report
    and registers nothing. A finished run is left as it is."""
    return run_cancel(run)


def training_run_execute(*, run: TrainingRun, on_progress: OnProgress | None = None) -> TrainingRun:
    """Train (see core.runs.run_execute for the guarantees: idempotent, one worker, crash
    loops end failed). A run whose worker died trains again from the start: nothing it did
    was registered."""
    return run_execute(run, _training_body(run), on_progress=on_progress)


def _training_body(run: TrainingRun):
    def body(handle: RunHandle) -> None:
        project = Project.objects.get(pk=run.project_id)
        losses: list[float] = []

        def progress(done: int, total: int, loss: float) -> None:
            losses.append(round(float(loss), 6))
            handle.progress(done, total, phase="training", loss_history=losses)

        if run.kind == TrainingRun.Kind.TRANSFORMER:
            fitted = _transformer_fit(run, project, progress)
        else:
            embeddings_compute_project(  # text, and the image or audio candidates' files
                project=project,
                progress=lambda done, total: handle.progress(done, total, phase="embedding"),
            )
            fitted = _heads_fit(run, project, progress)
        _model_version_register(run, handle, fitted, losses)

    return body


@dataclass
class _Fitted:
    artifact: bytes
    extension: str
    metrics: dict
    label_set_hash: str


def _model_version_register(
    run: TrainingRun, handle: RunHandle, fitted: _Fitted, losses: list[float]
) -> None:
    """Register the trained model as the project's active version and mark the run
    succeeded, in one transaction; then score the project with it and tell other apps."""
    version = ModelVersion(
        project_id=run.project_id,
        kind=run.kind,
        config=run.config,
        queue=run.queue,
        label_count=run.label_count,
        label_set_hash=fitted.label_set_hash,
        metrics=fitted.metrics,
        is_active=True,
    )
    version.artifact.save(
        f"reward-run{run.pk}.{fitted.extension}", ContentFile(fitted.artifact), save=False
    )
    try:
        with transaction.atomic():
            ModelVersion.objects.filter(project_id=run.project_id, is_active=True).update(
                is_active=False
            )
            version.save()
            handle.complete(model_version=version, loss_history=losses)
            transaction.on_commit(lambda: _model_version_activated(version))
    except BaseException:
        version.artifact.delete(save=False)  # cancelled at the last moment, or failed
        raise


def _model_version_activated(version: ModelVersion) -> None:
    """After the commit that made `version` active: score the project with it (on the queue
    it trained on: a transformer scores where its GPU is), then tell other apps."""
    from scoring.tasks import scores_compute_task

    scores_compute_task.apply_async((version.pk,), queue=version.queue)
    model_version_activated.send(
        sender=ModelVersion, version_id=version.pk, project_id=version.project_id
    )


def _heads_fit(run: TrainingRun, project: Project, progress) -> _Fitted:
    config = TrainConfig.from_dict(run.config)
    pairs, keys, label_set_hash = _training_pairs(project, pair_encoders(project=project))
    train_idx, eval_idx = stable_split(keys)
    result = train_ensemble(
        config,
        pairs.subset(train_idx),
        pairs.subset(eval_idx) if len(eval_idx) else None,
        progress=progress,
    )
    buffer = io.BytesIO()
    ensemble_save(result, buffer)
    metrics = {**result.metrics, "eval_pairs": float(len(eval_idx))}
    return _Fitted(buffer.getvalue(), "pt", metrics, label_set_hash)


def _transformer_fit(run: TrainingRun, project: Project, progress) -> _Fitted:
    config = TransformerConfig.from_dict(run.config)
    rows = _training_rows(project)
    texts = dict(
        Prompt.objects.filter(
            content_hash__in={r.prompt_hash for r in rows}, project=project
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
    )
    buffer = io.BytesIO()
    transformer_save(rm, buffer)
    metrics = {**rm.metrics, "eval_pairs": float(len(eval_idx)), "device": str(rm.device)}
    return _Fitted(buffer.getvalue(), "zip", metrics, _label_set_hash(rows))


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
        for cid, label, *rest in training_comparisons(project=project)
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


def _training_pairs(project: Project, encoders: PairEncoders) -> tuple[PairArrays, list[str], str]:
    """The labelled A/B comparisons as PairArrays (chosen first), their split keys and the
    label-set hash. Prompts' text vectors; the candidates' vectors of their own encoder
    (text, image or audio). Media have no text length: no length metrics for them."""
    rows = _training_rows(project)
    a_wins = np.array([r.a_wins for r in rows])
    prompt = embeddings_load(content_hashes=[r.prompt_hash for r in rows], encoder=encoders.prompt)
    a = embeddings_load(content_hashes=[r.a_hash for r in rows], encoder=encoders.response)
    b = embeddings_load(content_hashes=[r.b_hash for r in rows], encoder=encoders.response)
    chosen_len = rejected_len = None
    if encoders.modality == Candidate.Kind.TEXT:
        lengths_a = np.array([r.len_a for r in rows], dtype=np.float32)
        lengths_b = np.array([r.len_b for r in rows], dtype=np.float32)
        chosen_len = np.where(a_wins, lengths_a, lengths_b)
        rejected_len = np.where(a_wins, lengths_b, lengths_a)
    pairs = PairArrays(
        prompt=prompt,
        chosen=np.where(a_wins[:, None], a, b),
        rejected=np.where(a_wins[:, None], b, a),
        margin=_margins(rows),
        chosen_len=chosen_len,
        rejected_len=rejected_len,
        sources=[r.source or "unknown" for r in rows],
    )
    return pairs, [r.key for r in rows], _label_set_hash(rows)
