"""Routing policies: which comparisons go to humans, within a budget, and in what order.

Plain numpy and scikit-learn, no Django: ``curation/routing/services.py`` reads the inputs
from the database and writes the decisions; ``curation/routing/simulation.py`` calls the same
functions on a file. Every policy returns a boolean mask "to humans" with exactly
``min(slots, n)`` True values, so the budget arithmetic lives in one place (the caller
computes ``slots``; nothing here can exceed it).

Policies (Hybrid Preferences / HyPER for the gain predictor; Uncertainty-aware RLHF and
Optimal Design for reward modelling for the uncertainty score and the queue order):

- all_human: every pair to humans, in queue order, until the budget is spent; any surplus
  takes the AI label (the budget always wins).
- all_ai: no pair to humans.
- random: a uniformly random ``slots`` pairs to humans.
- uncertainty: the pairs where the reward-model ensemble disagrees most (spread) and the AI
  judge is least sure (confidence), ranks averaged.
- gain: a small classifier trained on the project's pairs that carry both a human and an AI
  label predicts, from instance features, how likely the human label differs from the AI's;
  the highest predicted gain goes to humans. With too few such pairs it falls back to
  uncertainty and says so (``RoutingPlan.fallback``).

Active selection (``queue_order``) orders the human-routed pairs by expected information
for the reward model: greedy D-optimal design on the linear head's pair features, weighted
by the Bradley-Terry Fisher weight p(1-p), or plain ensemble disagreement without features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

POLICIES = ("all_human", "all_ai", "random", "uncertainty", "gain")

# The gain predictor needs at least this many pairs with both a human and an AI label, with
# at least MIN_GAIN_CLASS of them disagreeing and as many agreeing; otherwise uncertainty.
MIN_GAIN_PAIRS = 30
MIN_GAIN_CLASS = 5

GAIN_FEATURES = (
    "spread",
    "ai_uncertainty",
    "orders_disagree",
    "abs_length_diff_log",
    "density",
    "p_margin",
)


# ---------------------------------------------------------------- budget


def budget_slots(
    *,
    total: int,
    spent: int,
    budget: int | None,
    fraction: float | None,
) -> int | None:
    """How many more comparisons may go to humans: the smaller of the count budget and
    ``fraction`` of ``total`` comparisons, less what is already ``spent``; never negative.
    None: no limit."""
    limits = []
    if budget is not None:
        limits.append(int(budget))
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("the budget fraction must be in [0, 1]")
        # floor: a fraction never buys a part of a comparison more than it allows.
        limits.append(int(np.floor(fraction * total + 1e-9)))
    if not limits:
        return None
    return max(0, min(limits) - int(spent))


def budget_limit(*, total: int, budget: int | None, fraction: float | None) -> int | None:
    """The whole budget in comparisons (the smaller of count and fraction); None: no limit."""
    return budget_slots(total=total, spent=0, budget=budget, fraction=fraction)


# ---------------------------------------------------------------- helpers


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """True for the k highest scores (ties broken by position, so results are stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    k = max(0, min(int(k), n))
    mask = np.zeros(n, dtype=bool)
    if k:
        # lexsort: last key is primary; -scores descending, then index ascending.
        order = np.lexsort((np.arange(n), -np.nan_to_num(scores, nan=-np.inf)))
        mask[order[:k]] = True
    return mask


def _rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (average ranks for ties); a constant gives 0.5 everywhere."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= 1 or np.allclose(values, values[0]):
        return np.full(n, 0.5)
    order = values.argsort(kind="stable")
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(n, dtype=np.float64)
    # Average the ranks of equal values so that ties do not depend on position.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return ranks / (n - 1)


def uncertainty_score(
    *, spread: np.ndarray | None = None, ai_confidence: np.ndarray | None = None
) -> np.ndarray:
    """Higher = less certain: the mean of the rank of the ensemble spread and the rank of
    (1 - AI confidence). Either may be missing (None, or NaN per pair: that pair then uses
    the other signal only)."""
    parts = []
    if spread is not None:
        parts.append(np.asarray(spread, dtype=np.float64))
    if ai_confidence is not None:
        parts.append(1.0 - np.asarray(ai_confidence, dtype=np.float64))
    if not parts:
        raise ValueError("uncertainty needs the ensemble spread or the AI confidence")
    ranked = []
    for values in parts:
        r = np.full(len(values), np.nan)
        ok = np.isfinite(values)
        if ok.any():
            r[ok] = _rank01(values[ok])
        ranked.append(r)
    stacked = np.vstack(ranked)
    counts = np.isfinite(stacked).sum(axis=0)
    total = np.nansum(stacked, axis=0)
    # A pair with no signal at all sits in the middle.
    return np.where(counts > 0, total / np.maximum(counts, 1), 0.5)


def embedding_density(
    vectors: np.ndarray, *, k: int = 10, reference: int = 5000, seed: int = 0
) -> np.ndarray:
    """Mean cosine similarity of each row to its k nearest neighbours among (a sample of
    ``reference``) rows: high in dense regions of embedding space, low for outliers.
    Rows are L2-normalised here; a row of NaN (no embedding) gives NaN."""
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    out = np.full(n, np.nan, dtype=np.float64)
    ok = np.isfinite(x).all(axis=1)
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return out
    x = x[idx] / np.maximum(np.linalg.norm(x[idx], axis=1, keepdims=True), 1e-12)
    ref_idx = np.arange(len(x))
    if len(x) > reference:
        ref_idx = np.sort(np.random.default_rng(seed).choice(len(x), reference, replace=False))
    ref = x[ref_idx]
    kk = max(1, min(k, len(ref) - 1))
    is_ref = np.full(len(x), -1)
    is_ref[ref_idx] = np.arange(len(ref_idx))
    for start in range(0, len(x), 2048):
        sims = x[start : start + 2048] @ ref.T
        rows = np.arange(start, min(start + 2048, len(x)))
        self_col = is_ref[rows]
        has_self = self_col >= 0
        sims[np.flatnonzero(has_self), self_col[has_self]] = -np.inf  # not its own neighbour
        top = -np.partition(-sims, kk - 1, axis=1)[:, :kk]
        out[idx[rows]] = top.mean(axis=1)
    return out


# ---------------------------------------------------------------- gain predictor


@dataclass
class GainInputs:
    """Per-pair instance features; any may be None (not known), arrays may hold NaN."""

    spread: np.ndarray | None = None
    ai_confidence: np.ndarray | None = None
    orders_agree: np.ndarray | None = None
    p_a: np.ndarray | None = None
    length_a: np.ndarray | None = None
    length_b: np.ndarray | None = None
    density: np.ndarray | None = None
    category: Sequence[str] | None = None


def gain_features(inputs: GainInputs, n: int, *, categories: Sequence[str] = ()) -> np.ndarray:
    """(n, len(GAIN_FEATURES) + len(categories)) float64; NaN where a value is unknown
    (the predictor imputes with the training median). ``categories``: the one-hot columns
    (the training set's categories, so that prediction uses the same columns)."""

    def col(values, fn=lambda v: v) -> np.ndarray:
        if values is None:
            return np.full(n, np.nan)
        return fn(np.asarray(values, dtype=np.float64))

    length_diff = np.full(n, np.nan)
    if inputs.length_a is not None and inputs.length_b is not None:
        la = np.asarray(inputs.length_a, dtype=np.float64)
        lb = np.asarray(inputs.length_b, dtype=np.float64)
        length_diff = np.abs(np.log1p(la) - np.log1p(lb))
    columns = [
        col(inputs.spread),
        col(inputs.ai_confidence, lambda c: 1.0 - c),
        col(inputs.orders_agree, lambda a: 1.0 - a),
        length_diff,
        col(inputs.density),
        col(inputs.p_a, lambda p: np.abs(p - 0.5)),
    ]
    cats = list(inputs.category) if inputs.category is not None else [""] * n
    for name in categories:
        columns.append(np.array([1.0 if c == name else 0.0 for c in cats]))
    return np.column_stack(columns) if columns else np.zeros((n, 0))


@dataclass
class GainPredictor:
    """Logistic regression on standardised instance features (median-imputed) that
    predicts P(the human label differs from the AI label). Small on purpose: it trains
    on the few hundred pairs a project has with both labels."""

    categories: list[str] = field(default_factory=list)
    model: object | None = None
    n_train: int = 0
    positive_rate: float = 0.0

    @classmethod
    def fit(cls, inputs: GainInputs, disagree: np.ndarray, *, seed: int = 0) -> GainPredictor:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(disagree, dtype=bool)
        n = len(y)
        cats: list[str] = []
        if inputs.category is not None:
            counts: dict[str, int] = {}
            for c in inputs.category:
                if c:
                    counts[c] = counts.get(c, 0) + 1
            # A category seen a handful of times is noise, not signal.
            cats = sorted(c for c, k in counts.items() if k >= 5)[:20]
        x = gain_features(inputs, n, categories=cats)
        # Columns never observed carry nothing; SimpleImputer would drop them and shift
        # the layout, so they are set to 0 instead.
        empty = ~np.isfinite(x).any(axis=0)
        x[:, empty] = 0.0
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
        )
        model.fit(x, y)
        return cls(categories=cats, model=model, n_train=n, positive_rate=float(y.mean()))

    def predict(self, inputs: GainInputs, n: int) -> np.ndarray:
        """P(human differs from AI) per pair, (n,) float64."""
        if n == 0:
            return np.zeros(0)
        x = gain_features(inputs, n, categories=self.categories)
        return self.model.predict_proba(x)[:, 1]  # type: ignore[union-attr]


def gain_trainable(disagree: np.ndarray) -> tuple[bool, str]:
    """Whether there are enough pairs with both labels to fit the gain predictor, and if
    not, why (shown to the user as the reason for the fallback)."""
    y = np.asarray(disagree, dtype=bool)
    n, pos = len(y), int(y.sum())
    if n < MIN_GAIN_PAIRS:
        return False, (
            f"only {n} pairs have both a human and an AI label; the gain predictor needs "
            f"{MIN_GAIN_PAIRS}"
        )
    if pos < MIN_GAIN_CLASS or n - pos < MIN_GAIN_CLASS:
        return False, (
            f"humans and AI disagree on {pos} of {n} pairs with both labels; the gain "
            f"predictor needs at least {MIN_GAIN_CLASS} of each outcome"
        )
    return True, ""


# ---------------------------------------------------------------- routing


@dataclass
class RoutingPlan:
    """What a policy decided: ``to_human`` mask, the per-pair score that ranked them
    (predicted gain, uncertainty, or NaN), the policy actually used and why it differs."""

    to_human: np.ndarray
    score: np.ndarray
    policy: str
    fallback: str = ""

    @property
    def human_count(self) -> int:
        return int(self.to_human.sum())


def route(
    *,
    policy: str,
    n: int,
    slots: int | None,
    inputs: GainInputs | None = None,
    train_inputs: GainInputs | None = None,
    train_disagree: np.ndarray | None = None,
    seed: int = 0,
) -> RoutingPlan:
    """Decide which of ``n`` pairs go to humans under ``policy`` with ``slots`` human places
    (None: unlimited). ``inputs``: features of the n pairs; ``train_inputs`` /
    ``train_disagree``: the pairs with both labels, for the gain predictor."""
    if policy not in POLICIES:
        raise ValueError(f"unknown routing policy '{policy}': use {', '.join(POLICIES)}")
    k = n if slots is None else max(0, min(int(slots), n))
    inputs = inputs or GainInputs()
    nan = np.full(n, np.nan)
    if policy == "all_ai":
        return RoutingPlan(np.zeros(n, dtype=bool), nan, policy)
    if policy == "all_human":
        # Queue order (position) decides who is left out when the budget is short.
        return RoutingPlan(np.arange(n) < k, nan, policy)
    if policy == "random":
        rng = np.random.default_rng(seed)
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=k, replace=False)] = True
        return RoutingPlan(mask, nan, policy)
    fallback = ""
    if policy == "gain":
        ok, why = (
            gain_trainable(train_disagree)
            if train_inputs is not None and train_disagree is not None
            else (False, "no pairs have both a human and an AI label")
        )
        if ok:
            predictor = GainPredictor.fit(train_inputs, train_disagree, seed=seed)
            score = predictor.predict(inputs, n)
            return RoutingPlan(top_k_mask(score, k), score, "gain")
        fallback = f"fell back to uncertainty: {why}"
    if inputs.spread is None and inputs.ai_confidence is None:
        # Nothing to be uncertain about yet (no model, no AI verdicts): random, and say so.
        rng = np.random.default_rng(seed)
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=k, replace=False)] = True
        why = "no model scores or AI verdicts yet"
        fallback = f"{fallback}; {why}, so random" if fallback else f"{why}, so random"
        return RoutingPlan(mask, nan, "random", fallback)
    score = uncertainty_score(spread=inputs.spread, ai_confidence=inputs.ai_confidence)
    return RoutingPlan(top_k_mask(score, k), score, "uncertainty", fallback)


# ---------------------------------------------------------------- active selection


def queue_order(
    *,
    features: np.ndarray | None = None,
    p_a: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    greedy_limit: int = 500,
    ridge: float = 1.0,
) -> np.ndarray:
    """An order (indices, most informative first) for the human-routed pairs.

    With ``features`` (n, d): the linear head's pair features phi(A) - phi(B); greedy
    D-optimal design: repeatedly take the pair with the largest w x^T M^-1 x (the log-det
    gain of adding it), w = p(1-p) the Bradley-Terry Fisher weight (p_a from the ensemble,
    0.25 without), M = ridge * I + the information of the pairs taken so far (Sherman-Morrison
    updates). After ``greedy_limit`` picks the rest follow by their score under the final M.
    Without features: by ensemble spread, highest first. Without either: as given."""
    if features is None:
        if spread is None:
            n = 0 if p_a is None else len(p_a)
            return np.arange(n)
        s = np.nan_to_num(np.asarray(spread, dtype=np.float64), nan=-1.0)
        return np.lexsort((np.arange(len(s)), -s))
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ok = np.isfinite(x).all(axis=1)
    x = np.where(ok[:, None], x, 0.0)
    w = np.full(n, 0.25)
    if p_a is not None:
        p = np.clip(np.nan_to_num(np.asarray(p_a, dtype=np.float64), nan=0.5), 1e-3, 1 - 1e-3)
        w = p * (1 - p)
    xs = x * np.sqrt(w)[:, None]
    m_inv = np.eye(d) / ridge
    taken = np.zeros(n, dtype=bool)
    order: list[int] = []
    # Keep v = xs @ M^-1 for all rows; a rank-one update of M^-1 updates it in O(n d).
    v = xs @ m_inv
    for _ in range(min(greedy_limit, n)):
        gains = np.einsum("ij,ij->i", v, xs)
        gains[taken | ~ok] = -np.inf
        i = int(np.argmax(gains))
        if not np.isfinite(gains[i]):
            break
        taken[i] = True
        order.append(i)
        u = m_inv @ xs[i]
        denom = 1.0 + xs[i] @ u
        m_inv -= np.outer(u, u) / denom
        v -= np.outer(xs @ u, u) / denom
    rest = np.flatnonzero(~taken)
    if len(rest):
        gains = np.einsum("ij,ij->i", v[rest], xs[rest])
        gains[~ok[rest]] = -np.inf
        rest = rest[np.lexsort((rest, -gains))]
    return np.concatenate([np.asarray(order, dtype=np.int64), rest.astype(np.int64)])


def priorities_from_order(order: np.ndarray) -> np.ndarray:
    """Comparison.priority values for pairs in ``order`` (first = highest): n, n-1, ..., 1,
    indexed by pair (so ``priorities[i]`` belongs to pair i)."""
    n = len(order)
    out = np.zeros(n, dtype=np.int64)
    out[np.asarray(order, dtype=np.int64)] = np.arange(n, 0, -1)
    return out
