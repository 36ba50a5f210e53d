"""Annotator reliability and label aggregation over individual judgements. No Django.

A judgement is a triple ``(item, worker, chose_a)``: ``item`` is a row index in ``0..n_items-1``
(the caller's comparison order), ``worker`` any string id (a user, an AI judge, an import
source), ``chose_a`` True when the worker said A is better. Ties and "both bad" are not
judgements here: leave them out.

API (all functions are pure; nothing is stored):

``reliability_estimate(judgements, n_items, *, method="dawid_skene", gold=None) -> dict[str, float]``
    Per-worker reliability in [0, 1], the estimated probability that the worker's answer is the
    true label:

    - ``"dawid_skene"``: crowd-kit ``DawidSkene`` (a 2x2 confusion matrix per worker, EM);
      reliability = the worker's accuracy under the estimated class balance,
      ``sum_k prior_k * P(answer = k | true = k)``.
    - ``"mace"``: crowd-kit ``MACE`` (each worker is "competent" with probability
      ``1 - spam``, otherwise answers at random by their own habit); reliability =
      ``competence + (1 - competence) * P(a spam answer happens to be right)``.
    - ``"gold"``: plain accuracy on the items of ``gold`` (``{item: true label_a}``); workers
      without a gold item are left out.
    - ``"majority"``: agreement with the majority of the *other* workers on the same item
      (leave-one-out), ties skipped.

    A worker below 0.5 is worse than a coin: the label-aggregation methods invert such
    a worker's answers (an adversarial or confused annotator still carries information).

``worker_stats(judgements, n_items, *, gold=None) -> dict[str, dict[str, float | int | None]]``
    Everything above at once per worker, for display: ``judgements``, ``dawid_skene``,
    ``mace``, ``agreement`` (leave-one-out majority agreement), ``gold_accuracy`` (None without
    gold items), ``gold_items``.

``labels_aggregate(judgements, n_items, *, method, model_p_a=None, gold=None)
        -> tuple[np.ndarray, np.ndarray]``
    ``(label_a, confidence)``: (n_items,) bool "A is better" and (n_items,) float in [0.5, 1],
    the posterior probability of the returned label. Items without judgements get label from
    ``model_p_a`` when given (confidence ``max(p, 1 - p)``), else False with confidence 0.5
    (callers should treat confidence 0.5 as "no information"). Methods:

    - ``"majority"``: plain vote; ties go to ``model_p_a`` when given, else confidence 0.5.
    - ``"dawid_skene"``: crowd-kit ``DawidSkene`` posterior.
    - ``"mace"``: crowd-kit ``MACE`` posterior.
    - ``"combined"``: reliability plus model evidence. Each worker's 2x2 confusion matrix comes
      from Dawid-Skene (shrunk towards a coin-flip by a Beta(2, 2)-like pseudo-count so a worker
      with few judgements cannot dominate); an item's log-odds of "A better" is the sum of its
      judgements' log likelihood ratios plus the model's log-odds ``logit(model_p_a)`` (the
      model must be out-of-fold for the item: it must not have been trained on these labels),
      scaled by ``model_weight`` (default 1.0: a calibrated model is one more witness). With
      ``gold`` items the confusion matrices are also fitted on them. Without ``model_p_a`` it
      is Dawid-Skene with shrinkage.

Errors: a judgement with an item outside ``0..n_items-1`` raises ValueError; an unknown method
raises ValueError.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

Judgement = tuple[int, str, bool]
METHODS = ("majority", "dawid_skene", "mace", "combined")
RELIABILITY_METHODS = ("dawid_skene", "mace", "gold", "majority")
_EPS = 1e-6


def _validate(judgements: Sequence[Judgement], n_items: int) -> list[tuple[int, str, bool]]:
    if n_items < 0:
        raise ValueError("n_items must not be negative")
    clean = []
    for j in judgements:
        item, worker, chose_a = int(j[0]), str(j[1]), bool(j[2])
        if not 0 <= item < n_items:
            raise ValueError(f"judgement on item {item} outside 0..{n_items - 1}")
        clean.append((item, worker, chose_a))
    return clean


def _frame(judgements: list[tuple[int, str, bool]]):
    import pandas as pd

    return pd.DataFrame(
        {
            "task": [j[0] for j in judgements],
            "worker": [j[1] for j in judgements],
            # crowd-kit labels: 1 = A better, 0 = B better.
            "label": [int(j[2]) for j in judgements],
        }
    )


def _ignore_pandas_deprecations() -> None:
    """crowd-kit 1.4.2 calls pandas APIs that pandas 3 deprecates; those warnings are noise."""
    import pandas as pd

    for category in (FutureWarning, DeprecationWarning, getattr(pd.errors, "Pandas4Warning", None)):
        if category is not None:
            warnings.simplefilter("ignore", category)


def _dawid_skene(judgements: list[tuple[int, str, bool]]):
    """Fitted crowd-kit DawidSkene, or None when there are no judgements."""
    from crowdkit.aggregation import DawidSkene

    if not judgements:
        return None
    with warnings.catch_warnings():
        _ignore_pandas_deprecations()
        return DawidSkene(n_iter=100).fit(_frame(judgements))


def _ds_confusions(model, workers: list[str]) -> dict[str, np.ndarray]:
    """worker -> 2x2 matrix M[true, answer] (index 1 = A better) from a fitted DawidSkene."""
    errors = model.errors_  # index (worker, answer), columns true label; P(answer | true)
    out = {}
    for w in workers:
        m = np.full((2, 2), 0.5)
        if w in errors.index.get_level_values(0):
            block = errors.loc[w]
            for true in (0, 1):
                for answer in (0, 1):
                    if answer in block.index and true in block.columns:
                        m[true, answer] = float(block.loc[answer, true])
        out[w] = m
    return out


def _ds_prior(model) -> np.ndarray:
    priors = getattr(model, "priors_", None)
    p = np.array([0.5, 0.5])
    if priors is not None:
        for k in (0, 1):
            if k in priors.index:
                p[k] = float(priors.loc[k])
    return p / p.sum()


def _majority_agreement(judgements: list[tuple[int, str, bool]]) -> dict[str, float]:
    by_item: dict[int, list[tuple[str, bool]]] = defaultdict(list)
    for item, worker, chose_a in judgements:
        by_item[item].append((worker, chose_a))
    agree: dict[str, list[int]] = defaultdict(list)
    for votes in by_item.values():
        total_a = sum(v for _, v in votes)
        for worker, chose_a in votes:
            others_a = total_a - chose_a
            others_b = len(votes) - 1 - others_a
            if others_a == others_b:
                continue
            agree[worker].append(int(chose_a == (others_a > others_b)))
    return {w: float(np.mean(v)) for w, v in agree.items()}


def _gold_accuracy(
    judgements: list[tuple[int, str, bool]], gold: Mapping[int, bool]
) -> tuple[dict[str, float], dict[str, int]]:
    hits: dict[str, list[int]] = defaultdict(list)
    for item, worker, chose_a in judgements:
        if item in gold:
            hits[worker].append(int(chose_a == bool(gold[item])))
    return {w: float(np.mean(v)) for w, v in hits.items()}, {w: len(v) for w, v in hits.items()}


def _mace(judgements: list[tuple[int, str, bool]]):
    from crowdkit.aggregation import MACE

    with warnings.catch_warnings():
        _ignore_pandas_deprecations()
        return MACE(n_restarts=3, n_iter=50, random_state=0).fit(_frame(judgements))


def _mace_reliability(model, frame) -> dict[str, float]:
    import pandas as pd

    worker_names = pd.factorize(frame["worker"])[1]
    label_names = list(pd.factorize(frame["label"])[1])
    out = {}
    for i, w in enumerate(worker_names):
        competent = float(model.spamming_[i, 1])
        # A spamming answer follows the worker's own habit thetas_; it is right as often as
        # its habit matches the truth: for binary labels with the truth near 50/50 that is 0.5.
        habit = model.thetas_[i]
        right_when_spamming = float(np.mean(habit)) if len(label_names) == 2 else 0.5
        out[str(w)] = competent + (1 - competent) * right_when_spamming
    return out


def reliability_estimate(
    judgements: Sequence[Judgement],
    n_items: int,
    *,
    method: str = "dawid_skene",
    gold: Mapping[int, bool] | None = None,
) -> dict[str, float]:
    """Per-worker reliability in [0, 1] (see the module docstring for each method)."""
    if method not in RELIABILITY_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {RELIABILITY_METHODS}")
    clean = _validate(judgements, n_items)
    if not clean:
        return {}
    if method == "gold":
        if not gold:
            raise ValueError("method 'gold' needs gold labels")
        return _gold_accuracy(clean, gold)[0]
    if method == "majority":
        return _majority_agreement(clean)
    if method == "mace":
        return _mace_reliability(_mace(clean), _frame(clean))
    model = _dawid_skene(clean)
    prior = _ds_prior(model)
    workers = sorted({w for _, w, _ in clean})
    return {
        w: float(prior[0] * m[0, 0] + prior[1] * m[1, 1])
        for w, m in _ds_confusions(model, workers).items()
    }


def worker_stats(
    judgements: Sequence[Judgement], n_items: int, *, gold: Mapping[int, bool] | None = None
) -> dict[str, dict[str, float | int | None]]:
    """Per worker: judgements, dawid_skene, mace, agreement, gold_accuracy, gold_items."""
    clean = _validate(judgements, n_items)
    if not clean:
        return {}
    counts: dict[str, int] = defaultdict(int)
    for _, w, _ in clean:
        counts[w] += 1
    ds = reliability_estimate(clean, n_items, method="dawid_skene")
    mace = reliability_estimate(clean, n_items, method="mace")
    agreement = _majority_agreement(clean)
    gold_acc, gold_n = _gold_accuracy(clean, gold) if gold else ({}, {})
    return {
        w: {
            "judgements": counts[w],
            "dawid_skene": ds.get(w),
            "mace": mace.get(w),
            "agreement": agreement.get(w),
            "gold_accuracy": gold_acc.get(w),
            "gold_items": gold_n.get(w, 0),
        }
        for w in sorted(counts)
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _finish(
    log_odds: np.ndarray, has_votes: np.ndarray, model_p_a: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    log_odds = log_odds.copy()
    if model_p_a is not None:
        log_odds[~has_votes] = _logit(model_p_a)[~has_votes]
    p_a = 1.0 / (1.0 + np.exp(-log_odds))
    label_a = p_a > 0.5
    return label_a, np.where(label_a, p_a, 1.0 - p_a)


def labels_aggregate(
    judgements: Sequence[Judgement],
    n_items: int,
    *,
    method: str,
    model_p_a: np.ndarray | None = None,
    gold: Mapping[int, bool] | None = None,
    model_weight: float = 1.0,
    shrinkage: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(label_a bool, confidence in [0.5, 1]) per item; see the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    clean = _validate(judgements, n_items)
    if model_p_a is not None:
        model_p_a = np.asarray(model_p_a, dtype=np.float64).reshape(-1)
        if model_p_a.shape != (n_items,):
            raise ValueError(f"model_p_a has {model_p_a.size} values for {n_items} items")
    has_votes = np.zeros(n_items, dtype=bool)
    for item, _, _ in clean:
        has_votes[item] = True
    log_odds = np.zeros(n_items)
    if not clean:
        return _finish(log_odds, has_votes, model_p_a)

    if method == "majority":
        votes = np.zeros(n_items)
        for item, _, chose_a in clean:
            votes[item] += 1 if chose_a else -1
        # A clear vote is certain for the majority rule; a tie falls to the model if any.
        log_odds = np.sign(votes) * 50.0
        if model_p_a is not None:
            tie = has_votes & (votes == 0)
            log_odds[tie] = _logit(model_p_a)[tie]
        return _finish(log_odds, has_votes, model_p_a)

    if method in ("dawid_skene", "mace"):
        model = _dawid_skene(clean) if method == "dawid_skene" else _mace(clean)
        probas = model.probas_
        for item in probas.index:
            p_a = float(probas.loc[item, 1]) if 1 in probas.columns else 0.0
            log_odds[int(item)] = _logit(np.array([p_a]))[0]
        return _finish(log_odds, has_votes, model_p_a)

    # combined: Dawid-Skene confusions, shrunk, plus the model's out-of-fold log-odds.
    model = _dawid_skene(clean)
    workers = sorted({w for _, w, _ in clean})
    confusions = _ds_confusions(model, workers)
    counts: dict[str, np.ndarray] = {w: np.zeros(2) for w in workers}  # judgements per class
    posterior = model.probas_
    for item, worker, _ in clean:
        if 1 in posterior.columns:
            p_a = float(posterior.loc[item, 1])
            counts[worker] += np.array([1 - p_a, p_a])
    if gold:
        # Gold items pin the truth: refit each worker's matrix with them counted as known.
        hits = {w: np.zeros((2, 2)) for w in workers}
        for item, worker, chose_a in clean:
            if item in gold:
                hits[worker][int(bool(gold[item])), int(chose_a)] += 1
        for w in workers:
            n_gold = hits[w].sum(axis=1)
            for true in (0, 1):
                if n_gold[true] > 0:
                    weight = counts[w][true]
                    row = confusions[w][true] * weight + hits[w][true]
                    confusions[w][true] = row / row.sum()
                    counts[w][true] = weight + n_gold[true]
    llr: dict[str, tuple[float, float]] = {}
    for w in workers:
        m = confusions[w]
        n = counts[w]
        # Shrink each row towards (0.5, 0.5) with `shrinkage` pseudo-judgements.
        rows = (m * n[:, None] + shrinkage * 0.5) / (n[:, None] + shrinkage)
        # Answer A: log P(A | true A) / P(A | true B); answer B likewise.
        llr[w] = (
            float(np.log(rows[1, 1] + _EPS) - np.log(rows[0, 1] + _EPS)),
            float(np.log(rows[1, 0] + _EPS) - np.log(rows[0, 0] + _EPS)),
        )
    prior = _ds_prior(model)
    log_odds[has_votes] = np.log(prior[1] + _EPS) - np.log(prior[0] + _EPS)
    for item, worker, chose_a in clean:
        log_odds[item] += llr[worker][0] if chose_a else llr[worker][1]
    if model_p_a is not None:
        log_odds[has_votes] += model_weight * _logit(model_p_a)[has_votes]
    return _finish(log_odds, has_votes, model_p_a)
