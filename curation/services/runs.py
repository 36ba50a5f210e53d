"""Curation runs ("Find noisy pairs"): every detector over a project's labelled pairs with
the active reward model, their flags written, then the project's policy applied."""

from __future__ import annotations

import logging

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.functions import Length

from annotation.models import Choice, Judgement, Project
from core.exceptions import ApplicationError
from core.runs import OnProgress, RunHandle, run_cancel, run_enqueue, run_execute
from curation.models import CurationPolicy, CurationRun, NoiseFlag
from curation.services.policy import curation_policy_apply
from scoring.models import ModelVersion
from scoring.selectors import scoring_settings_get, training_comparisons

logger = logging.getLogger(__name__)

# Fewer labelled A/B pairs than this cannot be split into folds worth training on.
MIN_PAIRS = 20


def _labelled_pairs(project: Project):
    """The pairs the detectors judge: those reward models train on."""
    return training_comparisons(project=project)


# Options a run may set for detectors_run (positive integers); the rest are refused.
RUN_OPTIONS = ("folds", "members", "epochs", "rounds", "peer_steps", "seed")


def _options_validate(options: dict | None) -> dict:
    options = dict(options or {})
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise ApplicationError(
            f"Unknown detector option(s) {', '.join(unknown)}: use {', '.join(RUN_OPTIONS)}."
        )
    for key, value in options.items():
        low = 0 if key == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ApplicationError(f"Detector option {key} must be an integer ≥ {low}.")
    return options


def curation_run_create(
    *, project: Project, user: AbstractBaseUser | None = None, options: dict | None = None
) -> CurationRun:
    """A queued "Find noisy pairs" run of `project` with its active model version (nothing
    enqueued: curation_run_start does that, curation_run_execute runs it here). Refused
    while another run of the project is queued or running. `options`: detectors_run's
    folds, members, epochs, rounds, peer_steps, seed."""
    options = _options_validate(options)
    version = ModelVersion.objects.filter(project=project, is_active=True).first()
    if version is None:
        raise ApplicationError(
            "The project has no active reward model: train one on the Models page first."
        )
    labelled = _labelled_pairs(project).count()
    if labelled < MIN_PAIRS:
        raise ApplicationError(
            f"The project has {labelled} labelled A/B pairs; finding noisy ones needs at "
            f"least {MIN_PAIRS}."
        )
    with transaction.atomic():
        # Lock the project row: two clicks at once make one run.
        Project.objects.select_for_update().get(pk=project.pk)
        running = CurationRun.objects.filter(project=project).active().first()
        if running is not None:
            raise ApplicationError(f"Run #{running.pk} is still going; wait for it or cancel it.")
        return CurationRun.objects.create(
            project=project, model_version=version, created_by=user, options=options
        )


def curation_run_start(
    *, project: Project, user: AbstractBaseUser | None = None, options: dict | None = None
) -> CurationRun:
    """curation_run_create, then enqueue it once committed."""
    run = curation_run_create(project=project, user=user, options=options)
    run_enqueue(run)
    return run


def curation_run_after_training(*, project_id: int) -> CurationRun | None:
    """After a new active model version of the project: start a "Find noisy pairs" run with
    it if the project finds noisy pairs after training; return it, or None (not asked for,
    or refused, e.g. while another run is going: that one goes on)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None or not scoring_settings_get(project=project).find_noisy_after_training:
        return None
    try:
        return curation_run_start(project=project)
    except ApplicationError as exc:
        logger.info("curation after training of %s not started: %s", project.slug, exc.message)
        return None


def curation_run_cancel(*, run: CurationRun) -> CurationRun:
    """Ask a queued or running run to stop; the detectors see it at their next progress
    report. A finished run is left as it is."""
    return run_cancel(run)


def curation_run_execute(*, run: CurationRun, on_progress: OnProgress | None = None) -> CurationRun:
    """Run the detectors (see core.runs.run_execute for the guarantees). A run whose worker
    died runs again from the start; its flags are written again on their unique key, not
    added."""
    return run_execute(run, _curation_body(run), on_progress=on_progress)


def _curation_body(run: CurationRun):
    def body(handle: RunHandle) -> None:
        from curation.detectors import detectors_run

        project = Project.objects.get(pk=run.project_id)
        handle.progress(0, 0, phase="loading")
        data, labels = _curation_input(
            project,
            progress=lambda done, total: handle.progress(done, total, phase="embedding"),
        )
        handle.progress(0, 0, phase="detecting", pairs=len(data.ids))
        # The out-of-fold heads are of the active version's kind (no model may score a
        # pair it trained on, so the active model itself cannot judge its own labels).
        config = run.model_version.config if run.model_version else {}
        members = config.get("members") or scoring_settings_get(project=project).ensemble_members
        results = detectors_run(
            data,
            head=config.get("head") or "mlp",
            progress=lambda done, total: handle.progress(done, total, phase="detecting"),
            **{"members": int(members), **run.options},
        )
        with transaction.atomic():
            summary = _flags_write(run, data.ids, labels, results)
            policy = CurationPolicy.objects.filter(project=project, enabled=True).first()
            if policy is not None:
                summary["policy"] = {
                    "name": policy.name,
                    "applied": len(curation_policy_apply(policy=policy, run=run)),
                }
            handle.complete(summary=summary)

    return body


def _curation_input(project: Project, *, progress=None):
    """The project's labelled pairs as the detectors' CurationInput, and their labels.
    Contents without a vector are embedded first (`progress(done, total)` meanwhile)."""
    from curation.detectors import CurationInput
    from scoring.selectors import embeddings_load
    from scoring.services.embeddings import embeddings_compute_project, pair_encoders

    rows = list(
        _labelled_pairs(project)
        .annotate(len_a=Length("candidate_a__text"), len_b=Length("candidate_b__text"))
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
        )
    )
    if len(rows) < MIN_PAIRS:
        raise ApplicationError(
            f"only {len(rows)} labelled A/B pairs; finding noisy ones needs {MIN_PAIRS}"
        )
    encoders = pair_encoders(project=project)  # prompts: text; candidates: their kind
    embeddings_compute_project(project=project, progress=progress)
    ids, labels, margins, p_hash, a_hash, b_hash, len_a, len_b = zip(*rows, strict=True)
    index = {cid: i for i, cid in enumerate(ids)}
    # Every A/B judgement by a person or an AI annotator; an imported file is not an
    # annotator (it is usually the only label there is).
    judgements = [
        (index[cid], f"user:{uid}" if uid else name, choice == Choice.A)
        for cid, uid, name, choice in Judgement.objects.filter(
            comparison__in=_labelled_pairs(project),
            choice__in=[Choice.A, Choice.B],
            source_kind__in=[Judgement.SourceKind.HUMAN, Judgement.SourceKind.AI],
        )
        .order_by("id")
        .values_list("comparison_id", "user_id", "source_name", "choice")
        .iterator(chunk_size=10_000)
        if cid in index  # a pair labelled since `rows` was read waits for the next run
    ]
    margin = None
    if any(m is not None for m in margins):
        margin = np.array([m or 0.0 for m in margins], dtype=np.float32)
    data = CurationInput(
        ids=np.asarray(ids, dtype=np.int64),
        prompt=embeddings_load(content_hashes=p_hash, encoder=encoders.prompt),
        a=embeddings_load(content_hashes=a_hash, encoder=encoders.response),
        b=embeddings_load(content_hashes=b_hash, encoder=encoders.response),
        label_a=np.array([label == Choice.A for label in labels]),
        len_a=np.asarray(len_a, dtype=np.float32),
        len_b=np.asarray(len_b, dtype=np.float32),
        judgements=judgements,
        margin=margin,
    )
    return data, labels


def _flags_write(run: CurationRun, ids, labels, results) -> dict:
    """Store the flagged rows of each detector's result; return the run's summary."""
    summary: dict = {}
    flags = []
    for result in results:
        flagged = np.flatnonzero(np.asarray(result.flagged, dtype=bool))
        scores = np.clip(np.nan_to_num(np.asarray(result.score, dtype=np.float64)), 0.0, 1.0)
        summary[result.name] = {
            "flagged": len(flagged),
            "mean_score": round(float(scores.mean()), 4) if len(scores) else 0.0,
        }
        flags.extend(
            NoiseFlag(
                run=run,
                comparison_id=int(ids[i]),
                detector=result.name,
                score=float(scores[i]),
                reason=str(result.reasons[i])[:2000] or "flagged",
                model_version_id=run.model_version_id,
                label=labels[i],
            )
            for i in flagged
        )
    NoiseFlag.objects.bulk_create(
        flags,
        batch_size=5000,
        update_conflicts=True,
        unique_fields=["run", "comparison", "detector"],
        update_fields=["score", "reason", "model_version", "label"],
    )
    return summary
