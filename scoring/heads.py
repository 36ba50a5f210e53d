"""Reward heads on frozen embeddings, and an ensemble of them trained as one module.

Plain torch, no Django. A pair's reward is read from a prompt embedding ``p`` and a response
embedding ``r`` (both L2-normalised sentence embeddings, MiniLM: d = 384).

Features are ``[r, p * r]`` (2d values):

- ``r`` says how good the response is on its own (fluency, politeness, refusals...).
- ``p * r`` is the per-dimension agreement of response and prompt, so a linear head can weigh
  "on topic" differently per direction; its sum is the cosine similarity.

For image and audio responses the prompt's text embedding and the response's media embedding
live in different spaces (MiniLM 384-d; EfficientNet-Lite0 1280-d, aisfx 512-d), so there is
no ``p * r``: features are ``[r, p]`` (``"r,p"``). A linear head then reads the response
alone (the ``p`` term cancels, see below); the MLP's hidden layer conditions on the prompt.

``p`` on its own is left out on purpose: under Bradley-Terry only ``r_a - r_b`` for the same
prompt is ever observed, so any term that depends on ``p`` alone cancels for a linear head and
only costs time in the MLP. For the same reason the heads have no output bias.

The ensemble keeps every member's weights with a leading member dimension, so M heads cost one
forward pass: the first layer of all members is one ``(N, D) @ (D, M*H)`` matrix product (the
input is the same for all members; diversity comes from initialisation, bootstrap weights and
dropout), the rest is an ``einsum`` over the member dimension.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

HeadKind = Literal["linear", "mlp"]
HEAD_KINDS: tuple[str, ...] = ("linear", "mlp")
FEATURES = "r,p*r"  # prompt and response in one embedding space (text)
FEATURES_MIXED = "r,p"  # a text prompt and an image or audio response
FEATURE_SETS: tuple[str, ...] = (FEATURES, FEATURES_MIXED)


def features_for(prompt_dim: int, response_dim: int) -> str:
    """The feature set of (prompt, response) embeddings of these sizes."""
    return FEATURES if prompt_dim == response_dim else FEATURES_MIXED


def pair_features(
    prompt: torch.Tensor, response: torch.Tensor, features: str | None = None
) -> torch.Tensor:
    """Features of (prompt, response) rows: ``[r, p * r]``, shape (N, 2d), or for
    ``features="r,p"`` ``[r, p]``, shape (N, d_r + d_p). By default the set that fits the
    shapes (``features_for``)."""
    features = features or features_for(prompt.shape[-1], response.shape[-1])
    if features == FEATURES:
        if prompt.shape != response.shape:
            raise ValueError(
                f"prompt {tuple(prompt.shape)} and response {tuple(response.shape)} differ"
            )
        return torch.cat([response, prompt * response], dim=-1)
    if features != FEATURES_MIXED:
        raise ValueError(f"unknown feature set {features!r}; expected one of {FEATURE_SETS}")
    if prompt.shape[:-1] != response.shape[:-1]:
        raise ValueError(
            f"prompt {tuple(prompt.shape)} and response {tuple(response.shape)} rows differ"
        )
    return torch.cat([response, prompt], dim=-1)


def feature_dim(embedding_dim: int, prompt_dim: int | None = None) -> int:
    """Feature width for responses of `embedding_dim` (and prompts of `prompt_dim`, if
    another size: the ``"r,p"`` set)."""
    if prompt_dim is None or prompt_dim == embedding_dim:
        return 2 * embedding_dim
    return embedding_dim + prompt_dim


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class RewardEnsemble(nn.Module):
    """M reward heads with stacked weights; ``reward(features) -> (M, N)``.

    ``kind="linear"``: r = w_m . x
    ``kind="mlp"``:    r = w2_m . dropout(relu(x W1_m + b1_m))
    """

    def __init__(
        self,
        *,
        in_dim: int,
        kind: HeadKind = "mlp",
        members: int = 5,
        hidden: int = 256,
        dropout: float = 0.1,
        seed: int = 0,
        features: str = FEATURES,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")
        if features not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {features!r}; expected one of {FEATURE_SETS}")
        self.features = features
        if members < 1:
            raise ValueError("an ensemble needs at least one member")
        self.kind = kind
        self.in_dim = in_dim
        self.members = members
        self.hidden = hidden
        self.dropout_p = dropout
        # Bookkeeping filled in by training / loading; not part of the weights.
        self.config: dict = {}
        self.metrics: dict = {}
        # Each member is initialised from its own seed so that members differ even without
        # bootstrap, and a member's start does not depend on how many members there are.
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + m) for m in range(members)]
        if kind == "linear":
            # Start at zero-ish: a linear BT head is convex, the init only breaks symmetry.
            bound = 1 / math.sqrt(in_dim)
            self.weight = nn.Parameter(torch.stack([_uniform((in_dim,), bound, g) for g in gens]))
        else:
            b1 = 1 / math.sqrt(in_dim)
            b2 = 1 / math.sqrt(hidden)
            self.w1 = nn.Parameter(torch.stack([_uniform((in_dim, hidden), b1, g) for g in gens]))
            self.b1 = nn.Parameter(torch.stack([_uniform((hidden,), b1, g) for g in gens]))
            self.w2 = nn.Parameter(torch.stack([_uniform((hidden,), b2, g) for g in gens]))
            self.drop = nn.Dropout(dropout)

    def hparams(self) -> dict:
        """What ``__init__`` needs to rebuild this module (seed aside: weights are loaded)."""
        return {
            "in_dim": self.in_dim,
            "kind": self.kind,
            "members": self.members,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "features": self.features,
        }

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.reward(features)

    def reward(self, features: torch.Tensor) -> torch.Tensor:
        """Rewards of every member for every row: (N, D) -> (M, N)."""
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"expected features (N, {self.in_dim}), got {tuple(features.shape)}")
        if self.kind == "linear":
            return self.weight @ features.T
        m, d, h = self.w1.shape
        # One matmul for all members' first layers, bias included: (N, D) @ (D, M*H) ...
        w1 = self.w1.permute(1, 0, 2).reshape(d, m * h)
        hid = torch.addmm(self.b1.reshape(m * h), features, w1)
        # In place where no gradient needs the pre-activation (inference): one pass less.
        hid = torch.relu_(hid) if not torch.is_grad_enabled() else torch.relu(hid)
        hid = self.drop(hid)
        # ... and one for the second: (N, M*H) @ block-diagonal (M*H, M). The zeros cost
        # M times the FLOPs of this small layer but avoid a strided per-member bmm.
        w2 = torch.block_diag(*self.w2.unsqueeze(-1))
        return (hid @ w2).T

    def reward_pairs(self, prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """Rewards of (prompt, response) embedding rows: (N, d_p), (N, d_r) -> (M, N)."""
        return self.reward(pair_features(prompt, response, self.features))
