"""Inter-annotator agreement of a project's human judgements: Krippendorff's alpha.

A preference choice is nominal data: a, b, tie and both_bad are four unordered categories
(a tie is a category of its own, not "half way between a and b"). Each comparison is a unit,
each human annotator a coder. Judgements that came from a ranking were expanded into
pairwise judgements when they were stored, so the pairwise alpha covers rankings too.

Only human judgements count: AI and imported judgements are not annotators of the project.

The reliability data are held as value counts (one row per comparison, one column per
choice) rather than as a coders x comparisons matrix: with hundreds of annotators who each
saw a small share of the comparisons the latter is almost all NaN, while the counts are
four integers per comparison and are exactly what alpha is computed from.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, replace

import krippendorff
import numpy as np
from django.contrib.auth import get_user_model

from annotation.models import Choice, Judgement, Project

# Column order of the value counts; nominal, so the order means nothing.
CHOICES: tuple[str, ...] = tuple(Choice.values)
_CODE = {choice: i for i, choice in enumerate(CHOICES)}


@dataclass(frozen=True)
class AnnotatorAgreement:
    user_id: int
    username: str
    judgements: int
    # Judgements on comparisons that at least one other annotator judged too: the ones
    # that say anything about agreement.
    overlapping: int
    alpha: float | None
    gold_judged: int
    gold_correct: int

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_judged if self.gold_judged else None


@dataclass(frozen=True)
class Agreement:
    alpha: float | None
    # Comparisons with two or more human judgements, and the judgements on them.
    units: int
    overlapping: int
    judgements: int
    annotators: list[AnnotatorAgreement]


def value_counts_build(*, units: np.ndarray, codes: np.ndarray, n_units: int) -> np.ndarray:
    """(n_units, len(CHOICES)) matrix: how many judgements of each unit chose each value."""
    flat = np.bincount(units * len(CHOICES) + codes, minlength=n_units * len(CHOICES))
    return flat.reshape(n_units, len(CHOICES))


def _expected_disagreement(value_counts: np.ndarray) -> float:
    """Nominal D_e: the chance that two pairable values drawn without replacement differ."""
    n_v = value_counts[value_counts.sum(axis=1) >= 2].sum(axis=0).astype(float)
    n = n_v.sum()
    if n < 2:
        return 0.0
    return float((n * n - (n_v * n_v).sum()) / (n * (n - 1)))


def alpha_nominal(value_counts: np.ndarray) -> float | None:
    """Krippendorff's alpha for nominal data, or None where it is undefined: no comparison
    has two judgements, or every paired judgement made the same choice (then there is no
    variation to agree about, and alpha is 0/0)."""
    if _expected_disagreement(value_counts) == 0.0:
        return None
    value = krippendorff.alpha(
        value_counts=value_counts,
        value_domain=list(range(len(CHOICES))),
        level_of_measurement="nominal",
    )
    return float(value) if np.isfinite(value) else None


def agreement_compute(*, judgements: Iterable[tuple[int, int, str, str | None]]) -> Agreement:
    """Agreement from (comparison_id, user_id, choice, gold_label) rows, gold_label None
    for a comparison that is not gold.

    Per annotator, alpha is Krippendorff's alpha of that annotator's judgements against the
    others' on the same comparisons: 1 - D_o(annotator) / D_e, where D_o(annotator) is the
    mean, over the annotator's overlapping judgements, of the share of the other judgements
    on that comparison that chose differently, and D_e is the project's expected
    disagreement (the same as in the overall alpha). This is Krippendorff's own observed
    disagreement split by coder, so the overall alpha is exactly the mean of the
    per-annotator alphas weighted by their overlapping judgements; an annotator below the
    project's alpha pulls it down. It is None where the annotator has no overlapping
    judgement or the project's alpha is undefined.
    """
    # One pass into packed arrays: a project can have millions of judgements.
    comparison_ids, user_ids = array("q"), array("q")
    codes, gold_codes = array("b"), array("b")
    for comparison_id, user_id, choice, gold_label in judgements:
        comparison_ids.append(comparison_id)
        user_ids.append(user_id)
        codes.append(_CODE[choice])
        gold_codes.append(-1 if gold_label is None else _CODE[gold_label])
    if not codes:
        return Agreement(alpha=None, units=0, overlapping=0, judgements=0, annotators=[])
    code = np.frombuffer(codes, dtype=np.int8).astype(np.int64)
    gold_code = np.frombuffer(gold_codes, dtype=np.int8)
    gold = gold_code >= 0
    correct = gold & (code == gold_code)

    unit_ids, units = np.unique(np.frombuffer(comparison_ids, dtype=np.int64), return_inverse=True)
    counts = value_counts_build(units=units, codes=code, n_units=len(unit_ids))
    per_unit = counts.sum(axis=1)
    overall = alpha_nominal(counts[per_unit >= 2])
    d_e = _expected_disagreement(counts)

    # Per judgement: how many judged its comparison, and how many of the others disagree.
    m = per_unit[units]
    overlapping = m >= 2
    differing = np.zeros(len(code))
    differing[overlapping] = (m - counts[units, code])[overlapping] / (m - 1)[overlapping]

    coder_ids, coders = np.unique(np.frombuffer(user_ids, dtype=np.int64), return_inverse=True)
    n_coders = len(coder_ids)
    n_all = np.bincount(coders, minlength=n_coders)
    n_overlap = np.bincount(coders[overlapping], minlength=n_coders)
    d_o = np.bincount(coders, weights=differing, minlength=n_coders)
    n_gold = np.bincount(coders[gold], minlength=n_coders)
    n_correct = np.bincount(coders[correct], minlength=n_coders)

    annotators = [
        AnnotatorAgreement(
            user_id=int(coder_ids[i]),
            username="",
            judgements=int(n_all[i]),
            overlapping=int(n_overlap[i]),
            alpha=(
                float(1 - (d_o[i] / n_overlap[i]) / d_e)
                if overall is not None and n_overlap[i]
                else None
            ),
            gold_judged=int(n_gold[i]),
            gold_correct=int(n_correct[i]),
        )
        for i in range(n_coders)
    ]
    return Agreement(
        alpha=overall,
        units=int((per_unit >= 2).sum()),
        overlapping=int(overlapping.sum()),
        judgements=len(code),
        annotators=annotators,
    )


def project_agreement(*, project: Project) -> Agreement:
    """The agreement of `project`'s human judgements, annotators sorted by username.

    One query for the judgements (with their comparison's gold label) and one for the
    annotators' names."""
    rows = Judgement.objects.filter(
        comparison__project=project, source_kind=Judgement.SourceKind.HUMAN
    ).values_list(
        "comparison_id", "user_id", "choice", "comparison__is_gold", "comparison__gold_label"
    )
    agreement = agreement_compute(
        judgements=(
            (cid, uid, choice, gold_label if is_gold else None)
            for cid, uid, choice, is_gold, gold_label in rows.iterator(chunk_size=10_000)
        )
    )
    names = dict(
        get_user_model()
        .objects.filter(id__in=[a.user_id for a in agreement.annotators])
        .values_list("id", get_user_model().USERNAME_FIELD)
    )
    annotators = sorted(
        (replace(a, username=names.get(a.user_id, "")) for a in agreement.annotators),
        key=lambda a: a.username,
    )
    return replace(agreement, annotators=annotators)
