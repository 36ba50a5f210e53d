from __future__ import annotations

import numpy as np
import pytest

from scoring.metrics import expected_calibration_error, pairwise_metrics


def test_accuracy_log_loss_and_ece_on_hand_made_inputs():
    p = np.array([0.9, 0.9, 0.3, 0.6])

    metrics = pairwise_metrics(p)

    assert metrics["eval_accuracy"] == pytest.approx(0.75)
    assert metrics["eval_log_loss"] == pytest.approx(-np.log(p).mean())
    # Bins of confidence max(p, 1-p): (0.8, 0.9] holds 0.9, 0.9 (both right: |1 - 0.9|);
    # (0.6, 0.7] holds 0.7 from p=0.3 (wrong: |0 - 0.7|); (0.5, 0.6] holds 0.6 (right: |1 - 0.6|).
    expected = 0.5 * 0.1 + 0.25 * 0.7 + 0.25 * 0.4
    assert metrics["eval_ece"] == pytest.approx(expected)


def test_perfectly_calibrated_bin_has_zero_ece():
    p = np.array([0.8] * 4 + [0.2])  # 4 of 5 predicted right at confidence 0.8

    assert expected_calibration_error(p) == pytest.approx(0.0, abs=1e-12)


def test_margin_sources_and_length_subsets():
    p = np.array([0.9, 0.2, 0.7])
    metrics = pairwise_metrics(
        p,
        sources=["human", "human", "ai"],
        chosen_len=np.array([10, 5, 3]),
        rejected_len=np.array([5, 5, 9]),
        reward_chosen=np.array([1.0, 0.0, 2.0]),
        reward_rejected=np.array([0.0, 1.0, 0.0]),
    )

    assert metrics["eval_margin"] == pytest.approx(2.0 / 3)
    assert metrics["eval_accuracy_human"] == pytest.approx(0.5)
    assert metrics["eval_accuracy_ai"] == pytest.approx(1.0)
    assert metrics["eval_accuracy_import"] is None
    assert metrics["eval_accuracy_chosen_longer"] == pytest.approx(1.0)
    assert metrics["eval_accuracy_chosen_shorter"] == pytest.approx(1.0)


def test_empty_inputs_give_none_not_nan():
    metrics = pairwise_metrics(
        np.array([]),
        chosen_len=np.array([]),
        rejected_len=np.array([]),
        sources=[],
        reward_chosen=np.array([]),
        reward_rejected=np.array([]),
    )

    for key in ("eval_accuracy", "eval_log_loss", "eval_ece", "eval_margin", "eval_length_corr"):
        assert metrics[key] is None, key
    assert metrics["eval_accuracy_human"] is None
    assert metrics["eval_accuracy_chosen_longer"] is None


def test_length_correlation_sign_follows_the_rewards():
    rng = np.random.default_rng(0)
    chosen_len, rejected_len = rng.integers(1, 100, 50), rng.integers(1, 100, 50)
    p = np.full(50, 0.6)

    longer_wins = pairwise_metrics(
        p,
        chosen_len=chosen_len,
        rejected_len=rejected_len,
        reward_chosen=chosen_len / 10,
        reward_rejected=rejected_len / 10,
    )
    shorter_wins = pairwise_metrics(
        p,
        chosen_len=chosen_len,
        rejected_len=rejected_len,
        reward_chosen=-chosen_len / 10,
        reward_rejected=-rejected_len / 10,
    )

    assert longer_wins["eval_length_corr"] == pytest.approx(1.0)
    assert shorter_wins["eval_length_corr"] == pytest.approx(-1.0)


def test_member_rewards_are_averaged():
    metrics = pairwise_metrics(
        np.array([0.7]),
        reward_chosen=np.array([[1.0], [3.0]]),
        reward_rejected=np.array([[0.0], [0.0]]),
    )

    assert metrics["eval_margin"] == pytest.approx(2.0)
