"""Norms of the flat parameter vector and test-set evaluation."""

from __future__ import annotations

import math

import torch

from .objective import NetObjective


def norms(theta: torch.Tensor, theta0: torch.Tensor | None = None) -> dict[str, float]:
    """ℓ1 = Σ|θ_i|, ℓ2 = ‖θ‖₂, and ‖θ − θ₀‖₂ when θ₀ is given."""
    out = {"l1_norm": float(theta.abs().sum()), "l2_norm": float(theta.norm())}
    if theta0 is not None:
        out["dist_to_init"] = float((theta - theta0).norm())
    return out


def evaluate(objective: NetObjective, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             num_classes: int | None) -> dict[str, float]:
    """Mean loss of f(θ, ·) on (x, y) with the objective's loss; accuracy for a classification set."""
    out = objective.outputs(theta, x)
    loss = float(objective.loss_sum(out, y)) / x.shape[0]
    accuracy = math.nan
    if num_classes is not None:
        labels = y if y.ndim == 1 else y.argmax(dim=1)
        accuracy = float((out.argmax(dim=1) == labels).double().mean())
    return {"loss": loss, "accuracy": accuracy}
