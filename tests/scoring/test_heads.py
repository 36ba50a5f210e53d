from __future__ import annotations

import pytest
import torch

from scoring.heads import RewardEnsemble, feature_dim, pair_features


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_reward_is_members_by_rows(kind):
    ensemble = RewardEnsemble(in_dim=feature_dim(8), kind=kind, members=3, hidden=16).eval()
    prompt, response = torch.randn(7, 8), torch.randn(7, 8)

    features = pair_features(prompt, response)
    rewards = ensemble.reward(features)

    assert features.shape == (7, 16)
    assert rewards.shape == (3, 7)
    assert torch.equal(ensemble.reward_pairs(prompt, response), rewards)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_members_differ_and_seeds_reproduce(kind):
    features = torch.randn(20, 16)
    ensemble = RewardEnsemble(in_dim=16, kind=kind, members=4, hidden=8, seed=1).eval()
    again = RewardEnsemble(in_dim=16, kind=kind, members=4, hidden=8, seed=1).eval()

    rewards = ensemble.reward(features)

    assert not torch.allclose(rewards[0], rewards[1])
    assert torch.equal(rewards, again.reward(features))


def test_batched_mlp_matches_each_member_computed_alone():
    ensemble = RewardEnsemble(in_dim=6, kind="mlp", members=3, hidden=5, dropout=0.0)
    features = torch.randn(4, 6)

    rewards = ensemble.reward(features)

    for m in range(3):
        hidden = torch.relu(features @ ensemble.w1[m] + ensemble.b1[m])
        assert torch.allclose(rewards[m], hidden @ ensemble.w2[m], atol=1e-6)


def test_unknown_kind_and_wrong_width_are_refused():
    with pytest.raises(ValueError, match="unknown head kind"):
        RewardEnsemble(in_dim=4, kind="transformer")
    with pytest.raises(ValueError, match="expected features"):
        RewardEnsemble(in_dim=4, kind="linear").reward(torch.randn(2, 5))


def test_inference_and_bfloat16_paths_match_the_training_path():
    ensemble = RewardEnsemble(in_dim=6, kind="mlp", members=3, hidden=5, dropout=0.0).eval()
    features = torch.randn(40, 6)
    reference = ensemble.reward(features)  # gradients on: relu out of place

    with torch.inference_mode():  # relu in place
        assert torch.allclose(ensemble.reward(features), reference, atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ensemble.reward(features)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.05, rtol=0.02)
