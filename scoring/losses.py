"""Pairwise losses for reward models. Plain torch, no Django."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bradley-Terry loss ``-logsigmoid(r_chosen - r_rejected - margin)``, mean over pairs.

    ``r_chosen`` / ``r_rejected``: (N,) or (M, N) for an ensemble of M members.
    ``margin``: (N,), how much better the chosen response should be (e.g. from label strength,
    as in Llama 2's margin loss); broadcast over members.
    ``weight``: (N,) or (M, N) per-sample weights (bootstrap counts); the mean is then weighted,
    ``sum(w * loss) / sum(w)``, so a weight of 0 drops a pair and 2 counts it twice.
    """
    if margin is None:
        margin = torch.zeros((), dtype=r_chosen.dtype, device=r_chosen.device)
    losses = -F.logsigmoid(r_chosen - r_rejected - margin)
    if weight is None:
        return losses.mean()
    weight = weight.expand_as(losses)
    # clamp: a batch whose bootstrap weights are all 0 contributes nothing instead of NaN.
    return (losses * weight).sum() / weight.sum().clamp_min(1e-12)
