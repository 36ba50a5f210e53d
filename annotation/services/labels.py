"""Aggregating a comparison's judgements into its label and confidence.

Majority weighted by strength (a judgement of strength s counts 1 + s), times the author's
Membership.reliability where curation has estimated it (NULL counts as 1): curation writes
those weights only once the project has enough overlap to estimate them.

AI judgements label only what people have not: a comparison with a human or imported
judgement takes its label from those alone (its AI judgements stay, for agreement figures),
and one with AI judgements only takes theirs, each weighted by its confidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from annotation.models import Comparison, Judgement, Membership
from annotation.signals import labels_changed


def comparison_labels_refresh(*, comparison_ids: Iterable[int]) -> int:
    """Recompute label, confidence and status of the given comparisons; returns how many."""
    ids = list(comparison_ids)
    weights: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    margins: dict[int, list[float]] = defaultdict(list)
    rows = list(
        Judgement.objects.filter(comparison_id__in=ids).values_list(
            "comparison_id",
            "choice",
            "strength",
            "margin",
            "user_id",
            "comparison__project_id",
            "source_kind",
            "confidence",
        )
    )
    has_people = {row[0] for row in rows if row[6] != Judgement.SourceKind.AI}
    reliability = {
        (project_id, user_id): weight
        for project_id, user_id, weight in Membership.objects.filter(
            project_id__in={row[5] for row in rows}, reliability__isnull=False
        ).values_list("project_id", "user_id", "reliability")
    }
    for cid, choice, strength, margin, user_id, project_id, kind, confidence in rows:
        if kind == Judgement.SourceKind.AI:
            if cid in has_people:
                continue
            weight = 1.0 if confidence is None else confidence
        else:
            weight = reliability.get((project_id, user_id), 1.0) if user_id else 1.0
        weights[cid][choice] += (1 + (strength or 0)) * weight
        if margin is not None:
            margins[cid].append(margin)
    updated = []
    # A reviewer's resolution (LabelResolution) is final: later judgements leave it be.
    for comparison in Comparison.objects.filter(id__in=ids, resolutions__isnull=True).only(
        "id", "project_id"
    ):
        votes = weights.get(comparison.id)
        if votes and sum(votes.values()) > 0:
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
            # Votes that weigh nothing (AI judges with no confidence) leave it to people.
            weighed = bool(votes) and sum(votes.values()) > 0
            comparison.status = Comparison.Status.DISPUTED if weighed else Comparison.Status.PENDING
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
