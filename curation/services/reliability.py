"""Annotator reliability: Dawid-Skene and MACE estimates per annotator, and the weights
label aggregation uses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from annotation.models import Choice, Comparison, Judgement, Membership, Project
from annotation.services.labels import comparison_labels_refresh
from curation.models import AnnotatorReliability

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

    annotator_reliability_refresh_task.delay_on_commit(project.pk)
