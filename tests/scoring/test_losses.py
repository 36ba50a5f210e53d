from __future__ import annotations

import math

import pytest
import torch

from scoring.losses import bradley_terry_loss


def _by_hand(diffs: list[float]) -> float:
    return sum(math.log1p(math.exp(-d)) for d in diffs) / len(diffs)


def test_loss_equals_hand_computed_value():
    chosen = torch.tensor([2.0, 0.0, -1.0])
    rejected = torch.tensor([1.0, 0.5, -1.0])

    loss = bradley_terry_loss(chosen, rejected)

    assert loss.item() == pytest.approx(_by_hand([1.0, -0.5, 0.0]), rel=1e-6)


def test_margin_shifts_the_difference():
    chosen = torch.tensor([2.0, 0.0])
    rejected = torch.tensor([1.0, 0.5])
    margin = torch.tensor([0.5, 1.0])

    loss = bradley_terry_loss(chosen, rejected, margin=margin)

    assert loss.item() == pytest.approx(_by_hand([0.5, -1.5]), rel=1e-6)
    assert loss > bradley_terry_loss(chosen, rejected)


def test_weights_count_pairs_and_broadcast_over_members():
    chosen = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    rejected = torch.zeros(2, 2)
    weight = torch.tensor([[2.0, 0.0], [1.0, 1.0]])

    loss = bradley_terry_loss(chosen, rejected, weight=weight)

    expected = (2 * _by_hand([2.0]) + _by_hand([1.0]) + _by_hand([1.0])) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_all_zero_weights_give_zero_not_nan():
    loss = bradley_terry_loss(torch.ones(3), torch.zeros(3), weight=torch.zeros(3))

    assert loss.item() == 0.0
