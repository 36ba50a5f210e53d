from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from scoring.train import (
    PairArrays,
    TrainConfig,
    ensemble_load,
    ensemble_save,
    ensemble_score,
    ensemble_score_indexed,
    fast_dtype,
    precision_dtype,
    stable_split,
    train_ensemble,
)

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _separable_pairs(n: int, seed: int) -> PairArrays:
    """The better response is the one further along a fixed direction."""
    rng = np.random.default_rng(seed)
    direction = _unit(np.ones((1, DIM)))[0]
    prompt = _unit(rng.normal(size=(n, DIM)))
    a, b = _unit(rng.normal(size=(n, DIM))), _unit(rng.normal(size=(n, DIM)))
    a_wins = (a @ direction > b @ direction)[:, None]
    return PairArrays(
        prompt=prompt,
        chosen=np.where(a_wins, a, b),
        rejected=np.where(a_wins, b, a),
        chosen_len=rng.integers(1, 100, n),
        rejected_len=rng.integers(1, 100, n),
        sources=rng.choice(["human", "ai"], n).tolist(),
    )


def _config(**overrides) -> TrainConfig:
    options = {"members": 3, "epochs": 4, "batch_size": 64, "lr": 1e-2, "hidden": 32}
    return TrainConfig(**(options | overrides))


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_training_lowers_the_loss_and_records_metrics(head, tmp_path):
    calls = []
    result = train_ensemble(
        _config(head=head),
        _separable_pairs(1024, seed=0),
        _separable_pairs(256, seed=1),
        progress=lambda done, total, loss: calls.append((done, total, loss)),
    )

    history = result.loss_history
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:5])
    assert result.metrics["eval_accuracy"] > 0.9
    assert result.metrics["eval_ece"] is not None
    assert result.metrics["eval_margin"] > 0
    assert result.metrics["eval_accuracy_human"] > 0.8
    assert "eval_length_corr" in result.metrics
    assert result.config["head"] == head
    assert calls[-1][:2] == (64, 64)  # 4 epochs x 16 steps
    assert [c[0] for c in calls] == sorted({c[0] for c in calls})

    path = tmp_path / "ensemble.pt"
    ensemble_save(result, path)
    assert path.stat().st_size > 0


def test_save_load_round_trip_gives_the_same_scores():
    pairs = _separable_pairs(300, seed=2)
    result = train_ensemble(_config(epochs=1), pairs)
    buffer = io.BytesIO()

    ensemble_save(result, buffer)
    buffer.seek(0)
    loaded = ensemble_load(buffer)

    before = ensemble_score(result.ensemble, pairs.prompt, pairs.chosen, pairs.rejected)
    after = ensemble_score(loaded, pairs.prompt, pairs.chosen, pairs.rejected, batch_size=7)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-6)
    assert loaded.config == result.config
    assert loaded.metrics == result.metrics


def test_scores_are_probabilities_with_spread_and_swap_symmetry():
    pairs = _separable_pairs(200, seed=3)
    ensemble = train_ensemble(_config(epochs=1), pairs).ensemble

    p_ab, std = ensemble_score(ensemble, pairs.prompt, pairs.chosen, pairs.rejected)
    p_ba, _ = ensemble_score(ensemble, pairs.prompt, pairs.rejected, pairs.chosen)

    assert p_ab.shape == std.shape == (200,)
    assert ((p_ab > 0) & (p_ab < 1)).all()
    assert (std > 0).any()
    np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-5)


class Stop(Exception):
    pass


def test_a_progress_callback_that_raises_stops_training():
    """How a run's cancel reaches the trainer: its progress report raises."""
    seen = []

    def progress(done, total, loss):
        seen.append(done)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        train_ensemble(_config(progress_every=2), _separable_pairs(512, seed=4), progress=progress)

    assert seen == [2, 4]


def test_training_leaves_the_global_rng_alone_and_is_reproducible():
    pairs = _separable_pairs(256, seed=5)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)

    first = train_ensemble(_config(epochs=1), pairs)

    assert torch.equal(torch.rand(1), expected_next)
    assert first.loss_history == train_ensemble(_config(epochs=1), pairs).loss_history


def test_config_validates_and_round_trips():
    config = TrainConfig(head="linear", members=2)

    assert TrainConfig.from_dict(config.to_dict()) == config
    assert set(TrainConfig.help_texts()) == set(config.to_dict())
    with pytest.raises(ValueError, match="head must be one of"):
        TrainConfig(head="tree")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"heads": "mlp"})
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="int8")
    # A config saved before `precision` existed still loads, with the default.
    old = {k: v for k, v in config.to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict(old).precision == "auto"


def test_stable_split_keeps_each_key_on_its_side():
    keys = [f"pair-{i}" for i in range(2000)]

    train_idx, eval_idx = stable_split(keys, eval_fraction=0.2)
    shuffled = keys[::-1] + ["pair-new"]
    _, eval_again = stable_split(shuffled, eval_fraction=0.2)

    assert sorted(np.concatenate([train_idx, eval_idx]).tolist()) == list(range(2000))
    assert 0.15 < len(eval_idx) / 2000 < 0.25
    assert {keys[i] for i in eval_idx} == {shuffled[i] for i in eval_again} - {"pair-new"}


def test_precision_picks_the_matmul_dtype():
    assert precision_dtype("float32") == torch.float32
    assert precision_dtype("bfloat16") == torch.bfloat16
    assert precision_dtype("auto") == fast_dtype("cpu")
    assert fast_dtype("cpu") in (torch.float32, torch.bfloat16)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_both_precisions_learn_and_reproduce_for_a_seed(precision):
    pairs, held_out = _separable_pairs(1024, seed=6), _separable_pairs(256, seed=7)

    first = train_ensemble(_config(precision=precision), pairs, held_out)
    again = train_ensemble(_config(precision=precision), pairs, held_out)

    assert first.metrics["eval_accuracy"] > 0.9
    assert first.loss_history == again.loss_history
    for name, tensor in first.state_dict.items():
        assert tensor.dtype == torch.float32  # mixed precision: the weights stay float32
        assert torch.equal(tensor, again.state_dict[name])


def test_bfloat16_scores_stay_close_to_float32():
    pairs = _separable_pairs(500, seed=8)
    ensemble = train_ensemble(_config(precision="float32"), pairs).ensemble

    full = ensemble_score(ensemble, pairs.prompt, pairs.chosen, pairs.rejected)
    low = ensemble_score(ensemble, pairs.prompt, pairs.chosen, pairs.rejected, dtype=torch.bfloat16)

    assert low[0].dtype == np.float32
    np.testing.assert_allclose(low[0], full[0], atol=0.02)
    np.testing.assert_allclose(low[1], full[1], atol=0.02)


def test_indexed_scores_equal_pairwise_scores():
    """Pairs given as indexes into distinct (prompt, response) rows score as the rows do."""
    pairs = _separable_pairs(40, seed=9)
    ensemble = train_ensemble(_config(epochs=1), pairs).ensemble
    # Rows 0..39 are (prompt i, chosen i), 40..79 (prompt i, rejected i); rows are used
    # several times and on both sides.
    prompt = torch.cat([pairs.prompt, pairs.prompt])
    response = torch.cat([pairs.chosen, pairs.rejected])
    index_a = np.array([0, 5, 45, 39, 40])
    index_b = np.array([40, 45, 5, 79, 0])

    p_a, spread = ensemble_score_indexed(ensemble, prompt, response, index_a, index_b)

    expected = ensemble_score(ensemble, prompt[index_a], response[index_a], response[index_b])
    np.testing.assert_allclose(p_a, expected[0], atol=1e-6)
    np.testing.assert_allclose(spread, expected[1], atol=1e-6)
    assert p_a[4] == pytest.approx(1 - p_a[0], abs=1e-6)
    assert p_a[2] == pytest.approx(1 - p_a[1], abs=1e-6)
