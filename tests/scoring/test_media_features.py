"""Heads on a text prompt and a media response of another size: features [r, p]."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from scoring.heads import FEATURES, FEATURES_MIXED, RewardEnsemble, feature_dim, pair_features
from scoring.train import (
    PairArrays,
    TrainConfig,
    ensemble_load,
    ensemble_save,
    ensemble_score,
    train_ensemble,
)


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mixed_sizes_give_response_then_prompt_features():
    p, r = torch.randn(3, 4), torch.randn(3, 6)
    features = pair_features(p, r)
    assert features.shape == (3, 10)
    assert torch.equal(features, torch.cat([r, p], dim=1))
    assert feature_dim(6, 4) == 10
    assert feature_dim(6) == feature_dim(6, 6) == 12
    with pytest.raises(ValueError, match="rows differ"):
        pair_features(torch.randn(2, 4), r)
    with pytest.raises(ValueError, match="differ"):
        pair_features(p, r, FEATURES)  # "r,p*r" needs one space


def test_heads_learn_a_media_quality_direction_and_round_trip():
    rng = np.random.default_rng(0)
    n, d_p, d_r = 200, 16, 24
    prompt, a, b = _unit(rng, n, d_p), _unit(rng, n, d_r), _unit(rng, n, d_r)
    quality = rng.normal(size=d_r)
    a_wins = a @ quality > b @ quality
    chosen, rejected = np.where(a_wins[:, None], a, b), np.where(a_wins[:, None], b, a)
    config = TrainConfig(head="mlp", members=3, epochs=40, batch_size=32, lr=1e-2, hidden=32)

    result = train_ensemble(config, PairArrays(prompt, chosen, rejected))

    assert result.hparams["features"] == FEATURES_MIXED
    assert result.hparams["in_dim"] == d_r + d_p
    p_chosen, _ = ensemble_score(result.ensemble, prompt, chosen, rejected)
    assert np.mean(p_chosen > 0.5) > 0.9
    buffer = io.BytesIO()
    ensemble_save(result, buffer)
    buffer.seek(0)
    loaded = ensemble_load(buffer)
    assert loaded.features == FEATURES_MIXED
    np.testing.assert_allclose(ensemble_score(loaded, prompt, chosen, rejected)[0], p_chosen)


def test_an_artifact_from_before_media_loads_as_text_features():
    ensemble = RewardEnsemble(in_dim=8, kind="linear", members=2)
    hparams = ensemble.hparams()
    del hparams["features"]  # what artifacts written before media hold
    buffer = io.BytesIO()
    torch.save(
        {
            "format": "scoring.reward_ensemble/1",
            "features": FEATURES,
            "hparams": hparams,
            "config": {},
            "metrics": {},
            "state_dict": ensemble.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    assert ensemble_load(buffer).features == FEATURES
