"""The noise detectors on small constructed data where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from curation.detectors import (
    DETECTOR_NAMES,
    CurationInput,
    detectors_run,
    fold_assign,
    top_k_expected_f1,
)


def _planted(n: int = 240, d: int = 8, rate: float = 0.15, seed: int = 0, judgements=False):
    """A learnable linear reward; ``rate`` of the labels flipped. Returns (input, flipped)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    prompt = rng.normal(size=(4 * n, d)).astype(np.float32)
    a = rng.normal(size=(4 * n, d)).astype(np.float32)
    b = rng.normal(size=(4 * n, d)).astype(np.float32)
    # The heads see [r, p * r]; a reward of w . r is learnable by them exactly. Only clear
    # pairs are kept (|reward difference| > 0.75 sd), so a clean model is nearly always right and
    # every disagreement it finds is a planted flip.
    gap = (a - b) @ w
    keep = np.flatnonzero(np.abs(gap) > 0.75 * gap.std())[:n]
    prompt, a, b, gap = prompt[keep], a[keep], b[keep], gap[keep]
    true_a = gap > 0
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=int(rate * n), replace=False)] = True
    votes = []
    if judgements:
        for i in range(n):
            for worker, accuracy in (("good-1", 0.9), ("good-2", 0.85), ("adversary", 0.1)):
                right = rng.random() < accuracy
                votes.append((i, worker, bool(true_a[i] if right else not true_a[i])))
    data = CurationInput(
        ids=np.arange(1000, 1000 + n, dtype=np.int64),
        prompt=prompt,
        a=a,
        b=b,
        label_a=true_a ^ flipped,
        len_a=rng.integers(50, 500, size=n).astype(np.float32),
        len_b=rng.integers(50, 500, size=n).astype(np.float32),
        judgements=votes,
    )
    return data, flipped


def _precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = (flagged & truth).sum()
    return tp / max(flagged.sum(), 1), tp / truth.sum()


@pytest.fixture(scope="module")
def planted_run():
    data, flipped = _planted(n=200)
    calls = []
    results = detectors_run(
        data, folds=4, members=3, seed=0, progress=lambda d, t: calls.append((d, t))
    )
    return data, flipped, results, calls


def test_every_detector_returns_aligned_scores_flags_and_reasons(planted_run):
    data, _, results, calls = planted_run
    n = len(data)
    assert [r.name for r in results] == list(DETECTOR_NAMES)
    for r in results:
        assert r.score.shape == (n,)
        assert r.flagged.shape == (n,)
        assert r.flagged.dtype == bool
        assert np.all((r.score >= 0) & (r.score <= 1))
        assert len(r.reasons) == n
        assert all(isinstance(s, str) and s for s in r.reasons)
    # Progress counts trained models up to the total, in order.
    assert calls
    assert calls[-1][0] == calls[-1][1]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_planted_flips_are_found_with_high_precision(planted_run):
    _, flipped, results, _ = planted_run
    by_name = {r.name: r for r in results}
    for name in ("ensemble_strength", "combined", "cleanlab"):
        precision, recall = _precision_recall(by_name[name].flagged, flipped)
        assert precision >= 0.8, (name, precision, recall)
        assert recall >= 0.5, (name, precision, recall)
    # Peer review rejects mostly flipped pairs as well.
    precision, _ = _precision_recall(by_name["peer_review"].flagged, flipped)
    assert precision >= 0.7
    # Scores rank the flipped pairs first: most of the top 15 % are flips.
    top = np.argsort(-by_name["combined"].score)[: flipped.sum()]
    assert flipped[top].mean() >= 0.75
    # Without judgements the annotator detector flags nothing and says so.
    ann = by_name["annotator_reliability"]
    assert not ann.flagged.any()
    assert ann.reasons[0] == "no individual judgements"
    # A reason names how many members side against the label.
    i = int(np.flatnonzero(flipped & by_name["ensemble_strength"].flagged)[0])
    assert "3 of 3 models prefer" in by_name["ensemble_strength"].reasons[i]


def test_annotator_evidence_finds_flips_and_lifts_the_combined_detector():
    data, flipped = _planted(n=160, seed=1, judgements=True)
    results = {r.name: r for r in detectors_run(data, folds=4, members=3, seed=0)}
    ann = results["annotator_reliability"]
    precision, recall = _precision_recall(ann.flagged, flipped)
    # Dawid-Skene reads the adversary's votes inverted: two good plus one inverted vote.
    assert precision >= 0.8
    assert recall >= 0.9
    assert "annotators" in ann.reasons[0]
    assert "for A" in ann.reasons[0]
    precision, recall = _precision_recall(results["combined"].flagged, flipped)
    assert precision >= 0.8
    assert recall >= 0.8
    assert "annotators" in results["combined"].reasons[int(np.flatnonzero(flipped)[0])]


def test_the_same_seed_gives_the_same_scores():
    data, _ = _planted(n=60, seed=2)
    first = detectors_run(data, folds=3, members=2, seed=5, epochs=2, peer_steps=1, rounds=1)
    second = detectors_run(data, folds=3, members=2, seed=5, epochs=2, peer_steps=1, rounds=1)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_allclose(x.score, y.score, atol=1e-6)
        assert (x.flagged == y.flagged).all()


def test_bad_input_is_refused():
    data, _ = _planted(n=40)
    data.a = data.a[:-1]
    with pytest.raises(ValueError, match="a is"):
        detectors_run(data, folds=3)
    data, _ = _planted(n=40)
    data.judgements = [(40, "w", True)]
    with pytest.raises(ValueError, match="outside"):
        detectors_run(data, folds=3)
    data, _ = _planted(n=5)
    with pytest.raises(ValueError, match="too few"):
        detectors_run(data, folds=3)
    data, _ = _planted(n=40)
    data.prompt[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detectors_run(data, folds=3)


def test_folds_are_balanced_and_top_k_maximises_expected_f1():
    fold = fold_assign(103, 5, seed=3)
    assert sorted(np.bincount(fold).tolist()) == [20, 20, 21, 21, 21]
    # Two near-certain errors among many near-certain clean rows: flag exactly those two.
    p = np.array([0.99, 0.98] + [0.01] * 20)
    assert top_k_expected_f1(p).tolist() == [True, True] + [False] * 20
    assert not top_k_expected_f1(np.zeros(5)).any()
    # Rows that are almost surely right are never flagged, however many there are.
    assert not top_k_expected_f1(np.full(50, 1e-4)).any()
