"""Held-out metrics for pairwise reward models. Plain numpy, no Django.

Every value is a float, or ``None`` where it is undefined (an empty subset, a constant input),
so the dict can be stored as JSON as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ECE_BINS = 10
# Sources the dashboard always shows, present or not.
KNOWN_SOURCES = ("human", "import", "ai")
_EPS = 1e-7


def _float(value: float | np.floating) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _accuracy(correct: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    if mask is not None:
        correct = correct[mask]
    return _float(correct.mean()) if correct.size else None


def expected_calibration_error(p_chosen: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """ECE over equal-width bins of confidence ``max(p, 1 - p)`` (Guo et al. 2017).

    The predicted side is A when p > 0.5; a bin's accuracy is how often that side was the chosen
    one, its confidence the mean ``max(p, 1 - p)``; ECE = sum over bins of
    ``|bin| / n * |accuracy - confidence|``. Bins are (lo, hi], the first one [0, 0.1].
    """
    p = np.asarray(p_chosen, dtype=np.float64)
    if p.size == 0:
        return None
    confidence = np.maximum(p, 1 - p)
    correct = (p > 0.5).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(confidence, edges[1:-1], right=True)
    ece = 0.0
    for b in np.unique(index):
        in_bin = index == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return _float(np.corrcoef(x, y)[0, 1])


def _member_mean(reward: np.ndarray | None) -> np.ndarray | None:
    """Rewards may come per member (M, N); the metrics use the ensemble mean."""
    if reward is None:
        return None
    reward = np.asarray(reward, dtype=np.float64)
    return reward.mean(axis=0) if reward.ndim == 2 else reward


def pairwise_metrics(
    p_chosen: np.ndarray,
    *,
    chosen_len: np.ndarray | None = None,
    rejected_len: np.ndarray | None = None,
    sources: Sequence[str] | None = None,
    reward_chosen: np.ndarray | None = None,
    reward_rejected: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Metrics of P(chosen > rejected) on held-out pairs, named ``eval_*``.

    - ``eval_accuracy``: share of pairs with p > 0.5.
    - ``eval_log_loss``: mean ``-log p`` (p clipped to [1e-7, 1 - 1e-7]).
    - ``eval_ece``: expected calibration error, see ``expected_calibration_error``.
    - ``eval_margin``: mean ``reward_chosen - reward_rejected`` (needs the rewards).
    - ``eval_accuracy_<source>``: accuracy per label source (human, import, ai, and any other).
    - ``eval_accuracy_chosen_longer`` / ``_chosen_shorter``: accuracy on pairs whose chosen
      response is longer / shorter than the rejected one. A large gap is a length bias.
    - ``eval_length_corr``: Pearson correlation of reward and length over all responses (needs
      rewards and lengths); strongly positive means "longer scores higher".
    """
    p = np.asarray(p_chosen, dtype=np.float64).reshape(-1)
    n = p.size
    correct = (p > 0.5).astype(np.float64)
    metrics: dict[str, float | None] = {
        "eval_pairs": float(n),
        "eval_accuracy": _accuracy(correct),
        "eval_log_loss": _float(-np.log(np.clip(p, _EPS, 1 - _EPS)).mean()) if n else None,
        "eval_ece": expected_calibration_error(p),
        "eval_margin": None,
    }

    rc, rr = _member_mean(reward_chosen), _member_mean(reward_rejected)
    if rc is not None and rr is not None:
        metrics["eval_margin"] = _float((rc - rr).mean()) if n else None

    if sources is not None:
        labels = np.asarray(list(sources), dtype=object)
        if labels.size != n:
            raise ValueError(f"{labels.size} sources for {n} pairs")
        for source in sorted(set(KNOWN_SOURCES) | set(labels.tolist())):
            metrics[f"eval_accuracy_{source}"] = _accuracy(correct, labels == source)

    if chosen_len is not None and rejected_len is not None:
        cl = np.asarray(chosen_len, dtype=np.float64).reshape(-1)
        rl = np.asarray(rejected_len, dtype=np.float64).reshape(-1)
        if cl.size != n or rl.size != n:
            raise ValueError(f"{cl.size}/{rl.size} lengths for {n} pairs")
        metrics["eval_accuracy_chosen_longer"] = _accuracy(correct, cl > rl)
        metrics["eval_accuracy_chosen_shorter"] = _accuracy(correct, cl < rl)
        metrics["eval_length_corr"] = None
        if rc is not None and rr is not None:
            metrics["eval_length_corr"] = _pearson(
                np.concatenate([rc, rr]), np.concatenate([cl, rl])
            )
    return metrics
