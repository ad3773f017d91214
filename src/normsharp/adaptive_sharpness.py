"""Adaptive (elementwise scale-invariant) sharpness of an end point, worst case and average case.

Andriushchenko, Croce, Müller, Hein & Flammarion 2023, "A modern look at the relationship between sharpness and
generalization" (ICML), after Kwon et al. 2021 (ASAM): with the elementwise scaling T_θ = diag(|θ|),

    worst case   S^ρ_max(θ) = max_{‖T_θ⁻¹ δ‖_p ≤ ρ} L(θ + δ) − L(θ),          p ∈ {2, ∞},
    average case S^ρ_avg(θ) = E_{δ ∼ N(0, ρ² diag(θ²))} L(θ + δ) − L(θ).

Both are invariant under rescalings θ ↦ αθ of a layer that the function ignores (ReLU nets, for instance),
unlike max|λ(H)|. Here L is the full-batch training loss (their m-sharpness with m = n, one batch). Near a
minimum (∇L = 0), S^ρ_avg ≈ ½ρ² Σ_i H_ii θ_i² = ½ρ² tr(T H T) and the ℓ2 worst case ≈ ½ρ² λ_max(T H T).

Worst case by projected gradient ascent in u = T_θ⁻¹ δ (so the constraint is the plain ball ‖u‖_p ≤ ρ;
coordinates with θ_i = 0 cannot move): from a random u₀ on the sphere of radius ρ, ``steps`` ascent steps of
length α = ``step_size``·ρ along the steepest direction of f(u) = L(θ + T u), g = T ∇L(θ + Tu):
ℓ2: u ← Π(u + α g/‖g‖₂) (Π: rescale onto the ball), ℓ∞: u ← clip(u + α sign(g), −ρ, ρ); the best value seen
is kept (a lower bound on S^ρ_max; the paper uses Auto-PGD, the same ascent with step-size schedule and momentum).
Average case by Monte Carlo over ``samples`` draws δ = ρ |θ| ⊙ z, z ∼ N(0, I), with the standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import ConfigError

NORMS = (2, "inf")


@dataclass
class WorstCase:
    """S^ρ_max ≥ ``value`` (best ascent value), the perturbation u = T⁻¹δ reaching it, the gradient evaluations."""

    value: float
    u: torch.Tensor
    n_grad: int


@dataclass
class AverageCase:
    """Monte-Carlo S^ρ_avg with its standard error over ``n_loss`` loss evaluations."""

    value: float
    stderr: float
    n_loss: int


def _project(u: torch.Tensor, rho: float, p) -> torch.Tensor:
    if p == "inf":
        return u.clamp(-rho, rho)
    norm = float(u.norm())
    return u if norm <= rho else u * (rho / norm)


def check_norm(p) -> None:
    if p not in NORMS and str(p) not in ("2", "inf"):
        raise ConfigError(f"geometry.adaptive_sharpness.p is {p!r}; allowed: 2, inf")


def worst_case(objective, theta: torch.Tensor, *, rho: float, p=2, steps: int = 20, step_size: float = 1.0,
               seed: int = 0) -> WorstCase:
    """S^ρ_max by projected gradient ascent (module docstring); ``objective`` has ``loss`` and ``loss_and_grad``."""
    check_norm(p)
    p = "inf" if str(p) == "inf" else 2
    scale = theta.abs()
    base = float(objective.loss(theta))
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(theta.numel(), generator=gen, dtype=torch.float64).to(theta)
    u = u.sign() * rho if p == "inf" else u * (rho / float(u.norm()))
    best_value, best_u, alpha = -math.inf, u.clone(), step_size * rho
    for _ in range(steps):
        loss, grad = objective.loss_and_grad(theta + scale * u)
        if float(loss) - base > best_value:
            best_value, best_u = float(loss) - base, u.clone()
        g = scale * grad
        if p == "inf":
            u = _project(u + alpha * g.sign(), rho, p)
        else:
            norm = float(g.norm())
            u = _project(u + alpha * g / norm, rho, p) if norm > 0 else u
    last = float(objective.loss(theta + scale * u)) - base
    if last > best_value:
        best_value, best_u = last, u
    return WorstCase(best_value, best_u, steps)


def average_case(objective, theta: torch.Tensor, *, rho: float, samples: int = 20, seed: int = 0) -> AverageCase:
    """S^ρ_avg = E L(θ + ρ|θ|⊙z) − L(θ), z ∼ N(0, I), by Monte Carlo over ``samples`` draws from ``seed``."""
    base = float(objective.loss(theta))
    gen = torch.Generator().manual_seed(seed)
    scale = rho * theta.abs()
    diffs = torch.tensor([float(objective.loss(theta + scale * torch.randn(theta.numel(), generator=gen,
                                                                            dtype=torch.float64).to(theta))) - base
                          for _ in range(samples)], dtype=torch.float64)
    stderr = float(diffs.std() / math.sqrt(samples)) if samples > 1 else math.nan
    return AverageCase(float(diffs.mean()), stderr, samples + 1)
