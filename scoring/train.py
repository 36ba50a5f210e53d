"""Training, saving and scoring of reward-head ensembles on frozen embeddings.

Plain torch, no Django: ``scoring/services.py`` and ``scoring/tasks.py`` wrap these functions.
The caller sets ``torch.set_num_threads``; nothing here touches global settings at import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Self

import numpy as np
import torch

from scoring.heads import (
    FEATURE_SETS,
    FEATURES,
    HEAD_KINDS,
    RewardEnsemble,
    feature_dim,
    features_for,
    pair_features,
)
from scoring.losses import bradley_terry_loss
from scoring.metrics import pairwise_metrics

ARTIFACT_FORMAT = "scoring.reward_ensemble/1"

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")

ArrayLike = np.ndarray | torch.Tensor
ProgressFn = Callable[[int, int, float], None]


class ConfigFields:
    """Dict round trip and help texts for a training-options dataclass (heads, transformer)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def help_texts(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}


@dataclass
class TrainConfig(ConfigFields):
    """Options of one ensemble training run; ``help`` metadata is shown in forms and docs."""

    head: str = field(
        default="mlp",
        metadata={
            "help": "Head kind: 'linear' (logistic on features) or 'mlp' (one hidden layer)."
        },
    )
    members: int = field(
        default=5,
        metadata={"help": "Ensemble size M; the spread across members measures uncertainty."},
    )
    epochs: int = field(default=4, metadata={"help": "Passes over the training pairs."})
    batch_size: int = field(default=1024, metadata={"help": "Pairs per optimiser step."})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(
        default=1e-2, metadata={"help": "AdamW decoupled weight decay (regularises the heads)."}
    )
    hidden: int = field(
        default=256,
        metadata={"help": "Hidden units per member of the MLP head (ignored by linear)."},
    )
    dropout: float = field(
        default=0.1, metadata={"help": "Dropout on the MLP hidden layer (ignored by linear)."}
    )
    bootstrap: bool = field(
        default=True,
        metadata={
            "help": "Give each member its own bootstrap resample (Poisson(1) weight per pair) "
            "so members disagree where the data is thin."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed for initialisation, shuffling, bootstrap and dropout."}
    )
    margin_scale: float = field(
        default=0.0,
        metadata={
            "help": "Multiplier on the per-pair margin in -logsigmoid(r_c - r_r - margin); "
            "0 ignores margins (plain Bradley-Terry)."
        },
    )
    device: str = field(default="cpu", metadata={"help": "Where to train: 'cpu' or 'cuda'."})
    precision: str = field(
        default="auto",
        metadata={
            "help": "Matrix products in 'float32', 'bfloat16' (mixed precision: weights, "
            "loss and optimiser stay float32), or 'auto': bfloat16 where the hardware has "
            "it natively, about 2-3 times faster on such CPUs, float32 elsewhere."
        },
    )
    progress_every: int = field(
        default=20,
        metadata={"help": "Call progress() every this many steps (and at the end of each epoch)."},
    )

    def __post_init__(self) -> None:
        problems = []
        if self.head not in HEAD_KINDS:
            problems.append(f"head must be one of {', '.join(HEAD_KINDS)}, not {self.head!r}")
        if self.device not in ("cpu", "cuda"):
            problems.append(f"device must be 'cpu' or 'cuda', not {self.device!r}")
        if self.precision not in PRECISIONS:
            problems.append(
                f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        for name in ("members", "epochs", "batch_size", "hidden", "progress_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.lr <= 0:
            problems.append("lr must be positive")
        if self.weight_decay < 0 or self.margin_scale < 0:
            problems.append("weight_decay and margin_scale must not be negative")
        if problems:
            raise ValueError("; ".join(problems))


def _as_float_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    # as_tensor shares memory with a float32 numpy array instead of copying it.
    tensor = torch.as_tensor(value, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return tensor


@dataclass
class PairArrays:
    """Embeddings of N comparisons: prompt (N, d_p), chosen and rejected (N, d) float32
    (d_p = d for text; a media project's responses have their own encoder's size).

    ``margin`` (N,): optional label strength used by ``margin_scale``; ``chosen_len`` /
    ``rejected_len`` (N,): optional text lengths for the length-bias metrics; ``sources``: optional
    label source per pair ('human', 'import', 'ai') for per-source accuracy.
    """

    prompt: ArrayLike
    chosen: ArrayLike
    rejected: ArrayLike
    margin: ArrayLike | None = None
    chosen_len: ArrayLike | None = None
    rejected_len: ArrayLike | None = None
    sources: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.prompt = _as_float_tensor(self.prompt, "prompt")
        self.chosen = _as_float_tensor(self.chosen, "chosen")
        self.rejected = _as_float_tensor(self.rejected, "rejected")
        shape = tuple(self.prompt.shape)
        if len(shape) != 2:
            raise ValueError(f"prompt must be (N, d), got {shape}")
        response = (shape[0], tuple(self.chosen.shape)[-1] if self.chosen.dim() == 2 else -1)
        for name in ("chosen", "rejected"):
            if tuple(getattr(self, name).shape) != response:
                raise ValueError(
                    f"{name} is {tuple(getattr(self, name).shape)}, expected {response} "
                    f"(prompt is {shape})"
                )
        n = shape[0]
        if self.margin is not None:
            self.margin = _as_float_tensor(self.margin, "margin").reshape(-1)
        for name in ("margin", "chosen_len", "rejected_len", "sources"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} pairs")

    def __len__(self) -> int:
        return int(self.prompt.shape[0])

    @property
    def dim(self) -> int:
        """The responses' embedding size."""
        return int(self.chosen.shape[1])

    @property
    def prompt_dim(self) -> int:
        return int(self.prompt.shape[1])

    def subset(self, index: Sequence[int] | np.ndarray) -> PairArrays:
        idx = np.asarray(index, dtype=np.int64)
        tidx = torch.from_numpy(idx)

        def pick(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, torch.Tensor):
                return value[tidx]
            if isinstance(value, np.ndarray):
                return value[idx]
            return [value[i] for i in idx]

        return PairArrays(
            **{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(PairArrays)}
        )


@dataclass
class TrainResult:
    """What a run produced. ``state_dict`` and the plain-data fields are what gets saved."""

    state_dict: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    config: dict[str, Any]
    loss_history: list[float]
    metrics: dict[str, float | None]
    ensemble: RewardEnsemble = field(repr=False, compare=False)


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def train_ensemble(
    config: TrainConfig,
    train: PairArrays,
    eval: PairArrays | None = None,  # noqa: A002 (the name the callers use)
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit M reward heads at once with the Bradley-Terry loss; metrics on ``eval`` if given.

    ``progress(done_steps, total_steps, loss)`` is called every ``config.progress_every``
    steps and at the end of every epoch (not every step: the caller may write it to a
    database). To stop training, let it raise: the exception ends the run and propagates.
    """
    n = len(train)
    if n == 0:
        raise ValueError("there are no training pairs")
    if eval is not None and (eval.dim, eval.prompt_dim) != (train.dim, train.prompt_dim):
        raise ValueError(
            f"eval embeddings have d={eval.dim} (prompt {eval.prompt_dim}), training ones "
            f"d={train.dim} (prompt {train.prompt_dim})"
        )
    device = _device(config.device)
    started = time.perf_counter()

    # fork_rng: seed dropout without changing the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        ensemble = RewardEnsemble(
            in_dim=feature_dim(train.dim, train.prompt_dim),
            kind=config.head,  # type: ignore[arg-type]
            members=config.members,
            hidden=config.hidden,
            dropout=config.dropout,
            seed=config.seed,
            features=features_for(train.prompt_dim, train.dim),
        ).to(device)
        gen = torch.Generator().manual_seed(config.seed)
        # Bootstrap as weights: Poisson(1) counts approximate drawing n pairs with replacement,
        # one resample per member, fixed for the whole run; all members still see the same batch.
        weights = None
        if config.bootstrap and config.members > 1:
            weights = torch.poisson(torch.ones(config.members, n), generator=gen).to(device)
        prompt, chosen, rejected = (
            t.to(device) for t in (train.prompt, train.chosen, train.rejected)
        )
        margin = None
        if config.margin_scale > 0 and train.margin is not None:
            margin = (train.margin * config.margin_scale).to(device)

        # fused: one kernel for the whole update instead of ~10 passes over every weight.
        optimiser = torch.optim.AdamW(
            ensemble.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        steps_per_epoch = math.ceil(n / config.batch_size)
        total = config.epochs * steps_per_epoch
        history: list[float] = []
        step = 0

        def report(loss: float) -> None:
            if progress is not None:
                progress(step, total, loss)

        amp = precision_dtype(config.precision, device)
        autocast = torch.autocast(device.type, dtype=amp, enabled=amp != torch.float32)
        ensemble.train()
        for _epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                p = prompt[idx]
                # Chosen and rejected go through the heads as one batch of 2B rows.
                with autocast:
                    rewards = ensemble.reward(
                        pair_features(
                            torch.cat([p, p]),
                            torch.cat([chosen[idx], rejected[idx]]),
                            ensemble.features,
                        )
                    )
                r_chosen, r_rejected = rewards.float().split(len(idx), dim=1)
                loss = bradley_terry_loss(
                    r_chosen,
                    r_rejected,
                    margin=None if margin is None else margin[idx],
                    weight=None if weights is None else weights[:, idx],
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                history.append(loss.item())
                if step % config.progress_every == 0 and step % steps_per_epoch != 0:
                    report(history[-1])
            report(float(np.mean(history[-steps_per_epoch:])))

    ensemble.eval()
    metrics: dict[str, float | None] = {
        "train_pairs": float(n),
        "train_loss": float(np.mean(history[-steps_per_epoch:])),
        "train_seconds": time.perf_counter() - started,
    }
    if eval is not None and len(eval) > 0:
        metrics.update(evaluate(ensemble, eval))
    ensemble.config = config.to_dict()
    ensemble.metrics = metrics
    return TrainResult(
        state_dict={k: v.detach().cpu().clone() for k, v in ensemble.state_dict().items()},
        hparams=ensemble.hparams(),
        config=config.to_dict(),
        loss_history=history,
        metrics=metrics,
        ensemble=ensemble,
    )


def fast_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype scoring's matrix products run fastest in on ``device`` without changing an
    answer by more than about 0.01 in P(A > B): bfloat16 where the hardware computes it
    natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs that support it), float32 elsewhere,
    where bfloat16 is emulated and slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else torch.float32


def precision_dtype(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype of matrix products for a ``TrainConfig.precision`` on ``device``."""
    if precision == "auto":
        return fast_dtype(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


@torch.inference_mode()
def ensemble_rewards(
    ensemble: RewardEnsemble,
    prompt: ArrayLike,
    response: ArrayLike,
    *,
    batch_size: int = 16384,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Every member's reward for (prompt, response) rows: (M, N) float32 on the CPU.

    ``dtype=torch.bfloat16`` runs the matrix products in bfloat16 (autocast; rewards are
    still returned as float32): about 3 times faster on CPUs with native bfloat16, rewards
    within about 1 % (see ``fast_dtype``).
    """
    prompt = torch.as_tensor(prompt, dtype=torch.float32)
    response = torch.as_tensor(response, dtype=torch.float32)
    device = next(ensemble.parameters()).device
    was_training = ensemble.training
    ensemble.eval()
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = [
                ensemble.reward_pairs(
                    prompt[s : s + batch_size].to(device), response[s : s + batch_size].to(device)
                )
                .float()
                .cpu()
                for s in range(0, len(prompt), batch_size)
            ]
    finally:
        ensemble.train(was_training)
    if not out:
        return torch.zeros(ensemble.members, 0)
    return torch.cat(out, dim=1)


def ensemble_score(
    ensemble: RewardEnsemble,
    prompt: ArrayLike,
    a: ArrayLike,
    b: ArrayLike,
    *,
    batch_size: int = 16384,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """P(A better than B) per pair: ensemble mean of ``sigmoid(r_a - r_b)`` and its spread.

    The spread is the standard deviation across members (population form, so 0 for M = 1).
    Returns two float32 arrays of shape (N,). ``dtype``: see ``ensemble_rewards``.
    """
    diff = ensemble_rewards(
        ensemble, prompt, a, batch_size=batch_size, dtype=dtype
    ) - ensemble_rewards(ensemble, prompt, b, batch_size=batch_size, dtype=dtype)
    return _probabilities(diff)


def ensemble_score_indexed(
    ensemble: RewardEnsemble,
    prompt: ArrayLike,
    response: ArrayLike,
    index_a: np.ndarray,
    index_b: np.ndarray,
    *,
    batch_size: int = 16384,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``ensemble_score`` for pairs given as indexes into unique (prompt, response) rows:
    pair i compares row ``index_a[i]`` with row ``index_b[i]`` (rows that share a prompt).
    A response that appears in several comparisons goes through the heads once."""
    rewards = ensemble_rewards(ensemble, prompt, response, batch_size=batch_size, dtype=dtype)
    index_a = torch.as_tensor(np.asarray(index_a, dtype=np.int64))
    index_b = torch.as_tensor(np.asarray(index_b, dtype=np.int64))
    return _probabilities(rewards[:, index_a] - rewards[:, index_b])


def _probabilities(diff: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    p = torch.sigmoid(diff)
    return p.mean(dim=0).numpy(), p.std(dim=0, correction=0).numpy()


def ensemble_preference_strength(
    ensemble: RewardEnsemble, prompt: ArrayLike, chosen: ArrayLike, rejected: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread over members of ``r_chosen - r_rejected`` (Secrets of RLHF II).

    Strongly negative mean with a small spread: the label is likely wrong.
    """
    diff = ensemble_rewards(ensemble, prompt, chosen) - ensemble_rewards(ensemble, prompt, rejected)
    return diff.mean(dim=0).numpy(), diff.std(dim=0, correction=0).numpy()


def evaluate(ensemble: RewardEnsemble, pairs: PairArrays) -> dict[str, float | None]:
    """``pairwise_metrics`` of the ensemble on held-out pairs (chosen is side A)."""
    r_chosen = ensemble_rewards(ensemble, pairs.prompt, pairs.chosen)
    r_rejected = ensemble_rewards(ensemble, pairs.prompt, pairs.rejected)
    p_chosen = torch.sigmoid(r_chosen - r_rejected).mean(dim=0).numpy()
    return pairwise_metrics(
        p_chosen,
        chosen_len=None if pairs.chosen_len is None else np.asarray(pairs.chosen_len),
        rejected_len=None if pairs.rejected_len is None else np.asarray(pairs.rejected_len),
        sources=pairs.sources,
        reward_chosen=r_chosen.mean(dim=0).numpy(),
        reward_rejected=r_rejected.mean(dim=0).numpy(),
    )


def ensemble_save(result: TrainResult, path_or_file: str | IO[bytes] | Any) -> None:
    """Write a trained ensemble (weights, shape, config, metrics) with ``torch.save``."""
    torch.save(
        {
            "format": ARTIFACT_FORMAT,
            "features": result.hparams.get("features", FEATURES),
            "hparams": result.hparams,
            "config": result.config,
            "metrics": result.metrics,
            "state_dict": result.state_dict,
        },
        path_or_file,
    )


def ensemble_load(path_or_file: str | IO[bytes] | Any, *, device: str = "cpu") -> RewardEnsemble:
    """Read what ``ensemble_save`` wrote: a ``RewardEnsemble`` in eval mode on ``device``.

    ``weights_only=True``: an artifact is data, never code, even if someone swapped the file.
    """
    blob = torch.load(path_or_file, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"not a reward-ensemble artifact (expected format {ARTIFACT_FORMAT})")
    features = blob.get("features")
    if features not in FEATURE_SETS:
        raise ValueError(f"artifact uses features {features!r}, this code {FEATURE_SETS!r}")
    ensemble = RewardEnsemble(**{"features": features, **blob["hparams"]})
    ensemble.load_state_dict(blob["state_dict"])
    ensemble.config = blob["config"]
    ensemble.metrics = blob["metrics"]
    return ensemble.to(_device(device)).eval()


def stable_split(keys: Sequence[str], eval_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Split by a hash of each pair's stable key (e.g. its pair hash), not by position.

    A pair lands on the same side in every run, however the set grows or is reordered, so a
    model is never evaluated on pairs an earlier version trained on.
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError("eval_fraction must be in [0, 1]")
    threshold = eval_fraction * 2**64
    is_eval = np.fromiter(
        (
            int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") < threshold
            for key in keys
        ),
        dtype=bool,
        count=len(keys),
    )
    return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)
