"""Aggregating a comparison's judgements into its label and confidence.

Majority weighted by strength (a judgement of strength s counts 1 + s). Reliability weights
from the curation app replace the plain weights later; the entry point stays this one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from annotation.models import Comparison, Judgement
from annotation.signals import labels_changed


def comparison_labels_refresh(*, comparison_ids: Iterable[int]) -> int:
    """Recompute label, confidence and status of the given comparisons; returns how many."""
    ids = list(comparison_ids)
    weights: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    margins: dict[int, list[float]] = defaultdict(list)
    for cid, choice, strength, margin in Judgement.objects.filter(
        comparison_id__in=ids
    ).values_list("comparison_id", "choice", "strength", "margin"):
        weights[cid][choice] += 1 + (strength or 0)
        if margin is not None:
            margins[cid].append(margin)
    updated = []
    # A reviewer's resolution (LabelResolution) is final: later judgements leave it be.
    for comparison in Comparison.objects.filter(id__in=ids, resolutions__isnull=True).only(
        "id", "project_id"
    ):
        votes = weights.get(comparison.id)
        if votes:
            choice, top = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
            tied = sum(1 for w in votes.values() if w == top) > 1
            comparison.label = None if tied else choice
            comparison.label_confidence = None if tied else top / sum(votes.values())
        else:
            comparison.label = comparison.label_confidence = None
        m = margins.get(comparison.id)
        comparison.label_margin = sum(m) / len(m) if m else None
        if comparison.label:
            comparison.status = Comparison.Status.LABELLED
        else:
            comparison.status = Comparison.Status.DISPUTED if votes else Comparison.Status.PENDING
        updated.append(comparison)
    Comparison.objects.bulk_update(
        updated, ["label", "label_confidence", "label_margin", "status"], batch_size=1000
    )
    if updated:
        project_ids = {c.project_id for c in updated}
        transaction.on_commit(
            lambda: labels_changed.send(sender=Comparison, project_ids=project_ids)
        )
    return len(updated)
