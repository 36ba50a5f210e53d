"""Annotator reliability and label aggregation over simulated judgements."""

from __future__ import annotations

import numpy as np
import pytest

from curation.reliability import labels_aggregate, reliability_estimate, worker_stats


def _crowd(n: int = 200, seed: int = 0):
    """Three good workers, one careless, one adversarial (mostly inverted); every item 5 votes."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.5
    workers = {"good-1": 0.9, "good-2": 0.85, "good-3": 0.8, "careless": 0.5, "adversary": 0.1}
    judgements = []
    for i in range(n):
        for worker, accuracy in workers.items():
            right = rng.random() < accuracy
            judgements.append((i, worker, bool(truth[i] if right else not truth[i])))
    return truth, judgements


def test_dawid_skene_down_weights_the_adversary():
    truth, judgements = _crowd()
    rel = reliability_estimate(judgements, len(truth), method="dawid_skene")
    assert set(rel) == {"good-1", "good-2", "good-3", "careless", "adversary"}
    assert rel["adversary"] < 0.25
    assert 0.35 < rel["careless"] < 0.65
    assert rel["good-1"] > 0.8
    assert rel["good-1"] > rel["good-3"] - 0.05
    mace = reliability_estimate(judgements, len(truth), method="mace")
    assert mace["adversary"] < mace["good-1"]
    assert mace["careless"] < mace["good-1"]


def test_gold_and_majority_agreement():
    judgements = [(0, "w1", True), (1, "w1", False), (0, "w2", False), (1, "w2", False)]
    gold = {0: True, 1: True}
    assert reliability_estimate(judgements, 2, method="gold", gold=gold) == {"w1": 0.5, "w2": 0.0}
    with pytest.raises(ValueError, match="gold labels"):
        reliability_estimate(judgements, 2, method="gold")
    stats = worker_stats(judgements, 2, gold=gold)
    assert stats["w1"]["judgements"] == 2
    assert stats["w1"]["gold_items"] == 2
    assert stats["w2"]["gold_accuracy"] == 0.0
    assert set(stats["w1"]) == {
        "judgements",
        "dawid_skene",
        "mace",
        "agreement",
        "gold_accuracy",
        "gold_items",
    }
    assert reliability_estimate([], 2) == {}


def test_reliability_weighted_aggregation_beats_majority():
    truth, judgements = _crowd(n=300, seed=1)
    # Three votes per item only (drop two workers per item at random): majority suffers.
    rng = np.random.default_rng(2)
    keep = []
    for i in range(len(truth)):
        mine = [j for j in judgements if j[0] == i]
        keep += [mine[k] for k in rng.choice(5, size=3, replace=False)]
    accuracy = {}
    for method in ("majority", "dawid_skene", "mace", "combined"):
        label, conf = labels_aggregate(keep, len(truth), method=method)
        assert label.dtype == bool
        assert conf.shape == truth.shape
        assert np.all((conf >= 0.5) & (conf <= 1))
        accuracy[method] = (label == truth).mean()
    assert accuracy["dawid_skene"] >= accuracy["majority"] + 0.05
    assert accuracy["combined"] >= accuracy["majority"] + 0.05
    # An informative model (right 80 % of the time) adds to the annotators' evidence.
    model_p_a = np.where(truth ^ (rng.random(len(truth)) < 0.2), 0.8, 0.2)
    label, _ = labels_aggregate(keep, len(truth), method="combined", model_p_a=model_p_a)
    assert (label == truth).mean() >= accuracy["dawid_skene"]


def test_items_without_votes_follow_the_model_and_bad_input_is_refused():
    judgements = [(0, "w1", True), (0, "w2", True), (1, "w1", False), (1, "w2", False)]
    label, conf = labels_aggregate(
        judgements, 3, method="combined", model_p_a=np.array([0.5, 0.5, 0.9])
    )
    assert label.tolist() == [True, False, True]
    assert conf[2] == pytest.approx(0.9)
    label, conf = labels_aggregate(judgements, 3, method="majority")
    assert label.tolist()[:2] == [True, False]
    assert conf[2] == 0.5
    with pytest.raises(ValueError, match="outside"):
        labels_aggregate([(3, "w", True)], 3, method="majority")
    with pytest.raises(ValueError, match="unknown method"):
        labels_aggregate(judgements, 3, method="vote")
    with pytest.raises(ValueError, match="model_p_a"):
        labels_aggregate(judgements, 3, method="combined", model_p_a=np.array([0.5]))
