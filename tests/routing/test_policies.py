"""The routing policies as pure functions: budgets, uncertainty, the gain predictor, the
queue order."""

from __future__ import annotations

import numpy as np
import pytest

from curation.routing import policies
from curation.routing.policies import GainInputs, budget_slots, queue_order, route


def test_budget_slots_takes_the_smaller_limit_and_subtracts_what_is_spent():
    assert budget_slots(total=100, spent=0, budget=None, fraction=None) is None
    assert budget_slots(total=100, spent=0, budget=40, fraction=None) == 40
    assert budget_slots(total=100, spent=0, budget=40, fraction=0.3) == 30
    assert budget_slots(total=100, spent=0, budget=20, fraction=0.3) == 20
    assert budget_slots(total=100, spent=25, budget=None, fraction=0.3) == 5
    assert budget_slots(total=100, spent=35, budget=None, fraction=0.3) == 0  # never negative
    assert budget_slots(total=7, spent=0, budget=None, fraction=0.5) == 3  # floor, not round
    with pytest.raises(ValueError, match="fraction"):
        budget_slots(total=10, spent=0, budget=None, fraction=1.5)


@pytest.mark.parametrize("policy", policies.POLICIES)
@pytest.mark.parametrize("slots", [0, 1, 7, 50, 200, None])
def test_every_policy_sends_exactly_the_budget_to_humans(policy, slots):
    rng = np.random.default_rng(0)
    n = 50
    inputs = GainInputs(
        spread=rng.random(n), ai_confidence=rng.random(n), length_a=rng.random(n) * 100,
        length_b=rng.random(n) * 100,
    )  # fmt: skip
    plan = route(policy=policy, n=n, slots=slots, inputs=inputs, seed=1)
    expected = 0 if policy == "all_ai" else (n if slots is None else min(slots, n))
    assert plan.to_human.dtype == bool
    assert plan.human_count == expected


def test_uncertainty_picks_the_high_spread_pairs():
    spread = np.array([0.01, 0.30, 0.02, 0.25, 0.03, 0.40, 0.00, 0.05])
    plan = route(policy="uncertainty", n=8, slots=3, inputs=GainInputs(spread=spread))
    assert plan.policy == "uncertainty"
    assert set(np.flatnonzero(plan.to_human)) == {1, 3, 5}


def test_uncertainty_combines_spread_and_ai_confidence():
    # Pair 0: spread high but the AI is sure; pair 2: both unsure.
    spread = np.array([0.9, 0.1, 0.8, 0.2])
    confidence = np.array([0.99, 0.9, 0.05, 0.95])
    plan = route(
        policy="uncertainty",
        n=4,
        slots=1,
        inputs=GainInputs(spread=spread, ai_confidence=confidence),
    )
    assert list(np.flatnonzero(plan.to_human)) == [2]


def _planted(n: int, seed: int):
    """Pairs where the AI is wrong exactly when the two answers differ a lot in length
    and the judge's confidence says nothing."""
    rng = np.random.default_rng(seed)
    len_a = rng.integers(10, 1000, n).astype(float)
    len_b = len_a * np.exp(rng.normal(0, 1.0, n))
    inputs = GainInputs(
        spread=rng.random(n) * 0.1,
        ai_confidence=rng.random(n),
        length_a=len_a,
        length_b=len_b,
    )
    gap = np.abs(np.log1p(len_a) - np.log1p(len_b))
    disagree = gap > np.quantile(gap, 0.7)
    return inputs, disagree


def test_gain_predictor_ranks_a_planted_signal():
    train_inputs, train_disagree = _planted(200, seed=0)
    inputs, truth = _planted(100, seed=1)
    plan = route(
        policy="gain",
        n=100,
        slots=30,
        inputs=inputs,
        train_inputs=train_inputs,
        train_disagree=train_disagree,
    )
    assert plan.policy == "gain"
    assert not plan.fallback
    # The 30 routed pairs are (nearly) the 30 where the AI is wrong.
    hit = (plan.to_human & truth).sum() / truth.sum()
    assert hit >= 0.8
    # And the uncertainty policy, blind to the planted signal, does no better than chance.
    blind = route(policy="uncertainty", n=100, slots=30, inputs=inputs)
    assert (blind.to_human & truth).sum() / truth.sum() < 0.6


def test_gain_falls_back_to_uncertainty_with_too_few_pairs_and_says_so():
    inputs, _ = _planted(40, seed=2)
    train_inputs, train_disagree = _planted(10, seed=3)
    plan = route(
        policy="gain",
        n=40,
        slots=5,
        inputs=inputs,
        train_inputs=train_inputs,
        train_disagree=train_disagree,
    )
    assert plan.policy == "uncertainty"
    assert "only 10 pairs have both a human and an AI label" in plan.fallback
    assert plan.human_count == 5
    assert set(np.flatnonzero(plan.to_human)) == set(
        np.flatnonzero(route(policy="uncertainty", n=40, slots=5, inputs=inputs).to_human)
    )


def test_without_any_signal_uncertainty_routes_at_random_and_says_so():
    plan = route(policy="uncertainty", n=10, slots=4, inputs=GainInputs())
    assert plan.policy == "random"
    assert "no model scores" in plan.fallback
    assert plan.human_count == 4


def test_embedding_density_is_high_in_clusters_and_low_for_outliers():
    rng = np.random.default_rng(0)
    cluster = np.array([1.0, 0, 0, 0]) + rng.normal(0, 0.05, (20, 4))
    outlier = np.array([[0, 0, 0, 1.0]])
    density = policies.embedding_density(np.vstack([cluster, outlier]), k=5)
    assert density[:20].min() > 0.9
    assert density[20] < 0.3


def test_queue_order_d_optimal_spreads_over_directions():
    # Ten copies of one direction and one pair in a new direction: the second pick is the
    # new direction, not another copy (a copy adds little information once one is known).
    x = np.vstack([np.tile([1.0, 0.0], (10, 1)), [[0.0, 0.9]]])
    order = queue_order(features=x)
    assert sorted(order.tolist()) == list(range(11))
    assert 10 in order[:2].tolist()


def test_queue_order_without_features_follows_spread():
    order = queue_order(spread=np.array([0.1, 0.5, 0.3]))
    assert order.tolist() == [1, 2, 0]
    assert policies.priorities_from_order(order).tolist() == [1, 3, 2]
