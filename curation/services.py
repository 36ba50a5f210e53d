"""Writes of the curation app: detector runs, their flags, actions on flagged pairs (each one
audited and reversible), the project's automatic policy and annotator reliability.

How a flip is recorded: as a LabelResolution (annotation's "final label, with why") by the
person who flipped, or for a policy by the admin who set the policy, with a note naming the
curation action. annotation/services/labels.py already leaves a resolved comparison's label
alone when judgements are aggregated again, so a flip survives new judgements and
re-weighting without annotation knowing anything about curation. Undoing the flip deletes
exactly that resolution row (its id is in the action's `after`) and restores the label,
confidence and status the comparison had; the CurationAction rows keep the history.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.db.models.functions import Length
from django.utils import timezone

from annotation.exceptions import ApplicationError
from annotation.models import (
    Candidate,
    Choice,
    Comparison,
    Judgement,
    LabelResolution,
    Membership,
    Project,
)
from annotation.services.labels import comparison_labels_refresh
from annotation.services.locks import advisory_lock_try
from annotation.signals import labels_changed
from curation.models import (
    Action,
    AnnotatorReliability,
    CurationAction,
    CurationPolicy,
    CurationRun,
    Detector,
    NoiseFlag,
)
from scoring.models import ModelVersion

logger = logging.getLogger(__name__)

# Fewer labelled A/B pairs than this cannot be split into folds worth training on.
MIN_PAIRS = 20
CURATION_RUN_LOCK = 0xC0A7  # advisory lock class for curation runs
# Fields of a comparison an action may change; `before`/`after` hold exactly these.
STATE_FIELDS = (
    "label",
    "label_confidence",
    "label_margin",
    "excluded",
    "status",
    "priority",
    "route",
)
_ACTIVE = (CurationRun.Status.QUEUED, CurationRun.Status.RUNNING)


class Cancelled(Exception):  # noqa: N818 (the name reads as what happened)
    """The run was cancelled while the detectors ran."""


# ---------------------------------------------------------------- runs


def _labelled_pairs(project: Project):
    """The pairs the detectors judge: labelled A or B, text on both sides, not dropped."""
    return Comparison.objects.filter(
        project=project,
        label__in=[Choice.A, Choice.B],
        excluded=False,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    )


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


def curation_run_start(
    *,
    project: Project,
    user: AbstractBaseUser | None = None,
    options: dict | None = None,
    enqueue: bool = True,
) -> CurationRun:
    """Queue a "Find noisy pairs" run of `project` with its active model version, and
    enqueue it once committed (`enqueue=False`: the caller runs curation_run_execute).
    `options`: detectors_run's folds, members, epochs, rounds, peer_steps, seed."""
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
        running = CurationRun.objects.filter(project=project, status__in=_ACTIVE).first()
        if running is not None:
            raise ApplicationError(f"Run #{running.pk} is still going; wait for it or cancel it.")
        run = CurationRun.objects.create(
            project=project, model_version=version, created_by=user, options=options
        )
        if enqueue:
            from curation.tasks import curation_run_execute_task

            transaction.on_commit(lambda: curation_run_execute_task.delay(run.pk))
    return run


def curation_run_cancel(*, run: CurationRun) -> CurationRun:
    """Ask a queued or running run to stop; the detectors see it at their next progress
    report. A finished run is left as it is."""
    CurationRun.objects.filter(pk=run.pk, status__in=_ACTIVE).update(
        status=CurationRun.Status.CANCELLED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def curation_run_execute(*, run: CurationRun) -> CurationRun:
    """Run a queued run. Idempotent: a finished run is left as it is, one another worker
    holds is left to it, and a run whose worker died runs again from the start (its flags
    are written again on their unique key, not added)."""
    with advisory_lock_try(CURATION_RUN_LOCK, run.pk) as locked:
        claimed = locked and CurationRun.objects.filter(pk=run.pk, status__in=_ACTIVE).update(
            status=CurationRun.Status.RUNNING,
            started_at=timezone.now(),
            phase="loading",
            progress_done=0,
            progress_total=0,
            error="",
        )
        if claimed:
            _run_execute(run.pk)
    run.refresh_from_db()
    return run


def _run_execute(run_id: int) -> None:
    run = CurationRun.objects.select_related("project", "model_version").get(pk=run_id)
    running = CurationRun.objects.filter(pk=run_id, status=CurationRun.Status.RUNNING)

    def progress(done: int, total: int) -> None:
        # Short autocommit updates (no transaction is open here), so the page sees them.
        if not running.update(phase="detecting", progress_done=done, progress_total=total):
            raise Cancelled

    try:
        data, labels = _curation_input(run.project)
        running.update(phase="detecting", pairs=len(data.ids))
        from curation.detectors import detectors_run

        # The out-of-fold heads are of the active version's kind (no model may score a
        # pair it trained on, so the active model itself cannot judge its own labels).
        config = run.model_version.config if run.model_version else {}
        options = {
            "members": int(config.get("members") or run.project.ensemble_members),
            **run.options,
        }
        results = detectors_run(
            data, head=config.get("head") or "mlp", progress=progress, **options
        )
        with transaction.atomic():
            row = CurationRun.objects.select_for_update().get(pk=run_id)
            if row.status != CurationRun.Status.RUNNING:  # cancelled at the last moment
                return
            summary = _flags_write(row, data.ids, labels, results)
            policy = CurationPolicy.objects.filter(project=row.project, enabled=True).first()
            if policy is not None:
                summary["policy"] = {
                    "name": policy.name,
                    "applied": len(curation_policy_apply(policy=policy, run=row)),
                }
            row.summary = summary
            row.status = CurationRun.Status.SUCCEEDED
            row.phase = ""
            row.progress_done = row.progress_total = max(row.progress_total, 1)
            row.finished_at = timezone.now()
            row.save()
    except Cancelled:
        logger.info("curation run %s was cancelled", run_id)
    except Exception as exc:
        logger.exception("curation run %s failed", run_id)
        message = (
            exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
        )
        running.update(
            status=CurationRun.Status.FAILED, error=message[:2000], finished_at=timezone.now()
        )


def _curation_input(project: Project):
    """The project's labelled pairs as the detectors' CurationInput, and their labels."""
    from curation.detectors import CurationInput
    from scoring.selectors import embeddings_load
    from scoring.services import embeddings_compute_project, encoder_current

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
    encoder = encoder_current()
    embeddings_compute_project(project=project, encoder=encoder)
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
        prompt=embeddings_load(content_hashes=p_hash, encoder=encoder),
        a=embeddings_load(content_hashes=a_hash, encoder=encoder),
        b=embeddings_load(content_hashes=b_hash, encoder=encoder),
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


# ---------------------------------------------------------------- actions


def _state(comparison: Comparison) -> dict:
    return {field: getattr(comparison, field) for field in STATE_FIELDS}


def _refuse_reason(comparison: Comparison, action: str) -> str | None:
    """Why `action` cannot apply to `comparison` (None: it can)."""
    if action == Action.FLIP and comparison.label not in (Choice.A, Choice.B):
        return "only an A or B label can be flipped"
    if action == Action.REQUEUE:
        if comparison.is_gold:
            return "a gold pair's label is set on the gold page, not by annotators"
        if comparison.has_resolution:
            return "a reviewer set its final label; change it on the review page"
    if action == Action.DROP and comparison.excluded:
        return "it is dropped already"
    return None


def _act(
    comparison: Comparison,
    action: str,
    *,
    actor: AbstractBaseUser | None,
    policy: CurationPolicy | None,
    batch: uuid.UUID,
    requeue_priority: int,
) -> CurationAction:
    """Apply `action` to a row locked by the caller; write its audit row."""
    before = _state(comparison)
    extra_after: dict = {}
    open_flags = NoiseFlag.objects.filter(comparison=comparison, state=NoiseFlag.State.OPEN)
    if action == Action.DROP:
        comparison.excluded = True
    elif action == Action.FLIP:
        new = Choice.B if comparison.label == Choice.A else Choice.A
        top = open_flags.aggregate(top=Max("score"))["top"]
        why = f"{top:.2f} likely mislabelled" if top is not None else "by hand"
        resolution = LabelResolution.objects.create(
            comparison=comparison,
            reviewer=actor or policy.updated_by,
            previous_label=comparison.label,
            label=new,
            note=f"Curation: flipped {comparison.label.upper()} → {new.upper()} "
            f"({policy.name if policy else 'by hand'}; {why}).",
        )
        extra_after["resolution"] = resolution.pk
        comparison.label = new
        # The flipped label is as sure as the detectors were that the old one was wrong.
        comparison.label_confidence = top
        comparison.status = Comparison.Status.LABELLED
    elif action == Action.REQUEUE:
        comparison.status = Comparison.Status.PENDING
        comparison.label = comparison.label_confidence = comparison.label_margin = None
        comparison.priority = max(comparison.priority, requeue_priority)
        comparison.excluded = False
        if comparison.route == Comparison.Route.AI:
            comparison.route = Comparison.Route.HUMAN
    Comparison.objects.filter(pk=comparison.pk).update(**_state(comparison))
    flag_ids = list(open_flags.values_list("id", flat=True))
    record = CurationAction.objects.create(
        comparison=comparison,
        action=action,
        actor=actor,
        policy_name=policy.name if policy else "",
        before={**before, "flags": []},
        after={**_state(comparison), **extra_after, "flags": flag_ids},
        batch=batch,
    )
    NoiseFlag.objects.filter(pk__in=flag_ids).update(state=NoiseFlag.State.REVIEWED, action=record)
    return record


def _labels_changed(project_id: int) -> None:
    """Tell the scoring app (automatic training) once the transaction commits: a flip, a
    re-queue or a drop changes the labels it trains on."""
    transaction.on_commit(lambda: labels_changed.send(sender=Comparison, project_ids={project_id}))


def _locked(project: Project, comparison_ids: Iterable[int]) -> list[Comparison]:
    """The project's comparisons `comparison_ids`, row-locked in id order (no deadlocks
    between two bulk actions), each with `has_resolution`."""
    return list(
        Comparison.objects.select_for_update(of=("self",))
        .filter(project=project, pk__in=list(comparison_ids))
        .annotate(has_resolution=Exists(LabelResolution.objects.filter(comparison=OuterRef("pk"))))
        .order_by("pk")
    )


def _requeue_priority(project: Project) -> int:
    """Above everything the routing put in the queue: re-queued pairs come first."""
    top = Comparison.objects.filter(project=project).aggregate(top=Max("priority"))["top"]
    return max(top or 0, 0) + 1


def curation_action_apply(
    *,
    project: Project,
    comparison_ids: Iterable[int],
    action: str,
    actor: AbstractBaseUser,
) -> list[CurationAction]:
    """Apply `action` (drop, flip, requeue, keep) to each of the project's comparisons
    `comparison_ids`, all in one transaction: if any of them cannot take it, nothing
    changes and the error names them. Returns the audit rows."""
    if action not in (Action.DROP, Action.FLIP, Action.REQUEUE, Action.KEEP):
        raise ApplicationError(f"Unknown action '{action}': use drop, flip, requeue or keep.")
    wanted = {int(i) for i in comparison_ids}
    if not wanted:
        raise ApplicationError("Select at least one pair.")
    batch = uuid.uuid4()
    with transaction.atomic():
        rows = _locked(project, wanted)
        missing = wanted - {c.pk for c in rows}
        if missing:
            raise ApplicationError(
                f"No such pair in this project: #{', #'.join(map(str, sorted(missing)))}."
            )
        refused = [(c.pk, why) for c in rows if (why := _refuse_reason(c, action))]
        if refused:
            listed = "; ".join(f"#{cid}: {why}" for cid, why in refused)
            raise ApplicationError(f"Nothing was changed. Cannot {action} {listed}.")
        priority = _requeue_priority(project)
        done = [
            _act(c, action, actor=actor, policy=None, batch=batch, requeue_priority=priority)
            for c in rows
        ]
        if action != Action.KEEP:
            _labels_changed(project.pk)
    return done


def curation_action_undo(*, action: CurationAction, actor: AbstractBaseUser) -> CurationAction:
    """Put the comparison back exactly as it was before `action`: its curated fields, the
    LabelResolution a flip wrote (deleted), and its flags (open again). Refused when the
    pair changed since (a later action, new judgements): undo those first."""
    with transaction.atomic():
        action = CurationAction.objects.select_for_update().get(pk=action.pk)
        if action.action == Action.UNDO:
            raise ApplicationError("An undo cannot be undone; apply the action again instead.")
        if action.undone_by_id is not None:
            raise ApplicationError(f"Action #{action.pk} was undone already.")
        comparison = Comparison.objects.select_for_update().get(pk=action.comparison_id)
        current = _state(comparison)
        expected = {field: action.after.get(field) for field in STATE_FIELDS}
        if current != expected:
            changed = ", ".join(f for f in STATE_FIELDS if current[f] != expected[f])
            raise ApplicationError(
                f"Pair #{comparison.pk} changed since action #{action.pk} ({changed}); "
                "undo the later change first."
            )
        resolution_id = action.after.get("resolution")
        if resolution_id is not None:
            later = LabelResolution.objects.filter(
                comparison=comparison, pk__gt=resolution_id
            ).exists()
            if later:
                raise ApplicationError(
                    f"A reviewer set pair #{comparison.pk}'s label after this flip; "
                    "undo is refused so that their decision stands."
                )
            LabelResolution.objects.filter(pk=resolution_id).delete()
        restored = {field: action.before[field] for field in STATE_FIELDS}
        Comparison.objects.filter(pk=comparison.pk).update(**restored)
        if action.action != Action.KEEP:
            _labels_changed(comparison.project_id)
        undo = CurationAction.objects.create(
            comparison=comparison,
            action=Action.UNDO,
            actor=actor,
            before={**current, "flags": action.after.get("flags", [])},
            after={**restored, "flags": []},
        )
        NoiseFlag.objects.filter(action=action).update(state=NoiseFlag.State.OPEN, action=None)
        action.undone_by = undo
        action.save(update_fields=["undone_by"])
    return undo


# ---------------------------------------------------------------- policy


def curation_policy_set(
    *,
    project: Project,
    actor: AbstractBaseUser,
    enabled: bool,
    detector: str,
    threshold: float,
    action: str,
) -> CurationPolicy:
    """Set the project's automatic policy (applied at the end of each run)."""
    if detector not in Detector.values:
        raise ApplicationError(f"Unknown detector '{detector}'.")
    if action not in CurationPolicy.AUTO_ACTIONS:
        raise ApplicationError("A policy can drop, flip or send back to humans.")
    if not (isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0) or math.isnan(
        threshold
    ):
        raise ApplicationError("The threshold is a score between 0 and 1.")
    policy, _ = CurationPolicy.objects.update_or_create(
        project=project,
        defaults={
            "enabled": enabled,
            "detector": detector,
            "threshold": float(threshold),
            "action": action,
            "updated_by": actor,
        },
    )
    return policy


def curation_policy_apply(*, policy: CurationPolicy, run: CurationRun) -> list[CurationAction]:
    """Apply the policy's action to the run's open flags of its detector at or above its
    threshold. A pair the action cannot apply to is left for a person. Idempotent: a
    reviewed flag is not acted on again."""
    flags = NoiseFlag.objects.filter(
        run=run,
        detector=policy.detector,
        score__gte=policy.threshold,
        state=NoiseFlag.State.OPEN,
    ).values_list("comparison_id", flat=True)
    batch = uuid.uuid4()
    done = []
    with transaction.atomic():
        priority = _requeue_priority(run.project)
        for comparison in _locked(run.project, set(flags)):
            if _refuse_reason(comparison, policy.action) is None:
                done.append(
                    _act(
                        comparison,
                        policy.action,
                        actor=None,
                        policy=policy,
                        batch=batch,
                        requeue_priority=priority,
                    )
                )
        if done:
            _labels_changed(run.project_id)
    return done


# ---------------------------------------------------------------- annotator reliability

# Reliability replaces plain majority only with at least this many comparisons that two or
# more people judged A or B: below it, Dawid-Skene's estimates are mostly its prior.
MIN_OVERLAP_COMPARISONS = 50
# Weights are the log-odds of an annotator's estimated accuracy, clipped: a coin-flipper
# counts (almost) nothing, an adversarial annotator is not inverted, only ignored, and
# nobody counts more than a 99 %-accurate one.
WEIGHT_MIN, WEIGHT_MAX = 0.05, math.log(0.99 / 0.01)


@dataclass(frozen=True)
class ReliabilityResult:
    applied: bool  # whether weights were written (enough overlap)
    overlap_comparisons: int
    annotators: int
    relabelled: int  # comparisons whose label changed


def reliability_weight(accuracy: float) -> float:
    p = min(max(accuracy, 1e-6), 1 - 1e-6)
    return float(min(max(math.log(p / (1 - p)), WEIGHT_MIN), WEIGHT_MAX))


def human_judgements_for_reliability(project: Project):
    """(comparison ids, user ids, judgements as (row, "user:<id>", chose A)) of the
    project's human A/B judgements."""
    rows = list(
        Judgement.objects.filter(
            comparison__project=project,
            source_kind=Judgement.SourceKind.HUMAN,
            choice__in=[Choice.A, Choice.B],
            comparison__is_gold=False,
        ).values_list("comparison_id", "user_id", "choice")
    )
    comparison_ids = sorted({cid for cid, _, _ in rows})
    index = {cid: i for i, cid in enumerate(comparison_ids)}
    judgements = [(index[cid], f"user:{uid}", choice == Choice.A) for cid, uid, choice in rows]
    return comparison_ids, judgements


def annotator_reliability_refresh(*, project: Project) -> ReliabilityResult:
    """Estimate each annotator's reliability over the project's human A/B judgements
    (Dawid-Skene and MACE, stored for the annotators page), write the Dawid-Skene
    estimate to Membership.reliability as an aggregation weight, and aggregate again the
    labels of finished comparisons with two or more human judgements (labels.py
    multiplies each judgement's weight by its author's reliability). With fewer than
    MIN_OVERLAP_COMPARISONS such comparisons every weight is cleared: plain majority."""
    from curation.reliability import reliability_estimate

    comparison_ids, judgements = human_judgements_for_reliability(project)
    rows = np.asarray([row for row, _, _ in judgements], dtype=np.int64)
    per_item = np.bincount(rows, minlength=len(comparison_ids))
    overlap_ids = [cid for cid, n in zip(comparison_ids, per_item, strict=True) if n >= 2]
    # Open ones wait for their k-th judgement, which aggregates them (queue.py).
    refresh_ids = list(
        Comparison.objects.filter(pk__in=overlap_ids)
        .exclude(status=Comparison.Status.PENDING)
        .values_list("pk", flat=True)
    )
    applied = len(overlap_ids) >= MIN_OVERLAP_COMPARISONS
    ds: dict[str, float] = {}
    mace: dict[str, float] = {}
    if overlap_ids:
        ds = reliability_estimate(judgements, len(comparison_ids), method="dawid_skene")
        mace = reliability_estimate(judgements, len(comparison_ids), method="mace")
    counts: dict[int, list[int]] = {}
    for (_row, worker, _), n in zip(judgements, per_item[rows], strict=True):
        c = counts.setdefault(int(worker.split(":", 1)[1]), [0, 0])
        c[0] += 1
        c[1] += int(n >= 2)
    weights = (
        {int(w.split(":", 1)[1]): reliability_weight(acc) for w, acc in ds.items()}
        if applied
        else {}
    )
    now = timezone.now()
    with transaction.atomic():
        AnnotatorReliability.objects.filter(project=project).delete()
        AnnotatorReliability.objects.bulk_create(
            AnnotatorReliability(
                project=project,
                user_id=uid,
                judgements=judged,
                overlapping=overlapping,
                dawid_skene=ds.get(f"user:{uid}"),
                mace=mace.get(f"user:{uid}"),
                computed_at=now,
            )
            for uid, (judged, overlapping) in counts.items()
        )
        before = dict(Comparison.objects.filter(pk__in=refresh_ids).values_list("pk", "label"))
        changed = []
        for membership in Membership.objects.filter(project=project).select_for_update():
            weight = weights.get(membership.user_id)
            if membership.reliability != weight:
                membership.reliability = weight
                changed.append(membership)
        Membership.objects.bulk_update(changed, ["reliability"])
        comparison_labels_refresh(comparison_ids=refresh_ids)
        after = dict(Comparison.objects.filter(pk__in=refresh_ids).values_list("pk", "label"))
    relabelled = sum(1 for cid, label in after.items() if before.get(cid) != label)
    return ReliabilityResult(
        applied=applied,
        overlap_comparisons=len(overlap_ids),
        annotators=len(weights),
        relabelled=relabelled,
    )


def annotator_reliability_refresh_start(*, project: Project) -> None:
    """Estimate reliability on a worker (Dawid-Skene and MACE take a while on big
    projects), once this transaction commits."""
    from curation.tasks import annotator_reliability_refresh_task

    transaction.on_commit(lambda: annotator_reliability_refresh_task.delay(project.pk))
