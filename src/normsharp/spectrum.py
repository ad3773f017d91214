"""The spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

The density of H ∈ R^{P×P} is φ(t) = (1/P) Σ_i δ(t − λ_i). For a unit probe v, m Lanczos steps from v give a
tridiagonal T_m with eigenpairs (θ_j, s_j), and the Gauss quadrature of the measure μ_v = Σ_i (vᵀu_i)² δ_{λ_i}
has nodes θ_j and weights τ_j² = (s_j)_1² (the squared first components): Σ_j τ_j² f(θ_j) = vᵀf(H)v exactly for
every polynomial f of degree ≤ 2m − 1 (Golub & Meurant 2010). With v = z/‖z‖, z Rademacher or Gaussian,
E[vᵀf(H)v] = tr f(H)/P, so the average over n_v probes estimates φ (Ubaru, Chen & Saad 2017, "Fast estimation of
tr(f(A)) via stochastic Lanczos quadrature"; Ghorbani, Krishnan & Xiao 2019, "An investigation into neural net
optimization via Hessian eigenvalue density"), smoothed by a Gaussian g_σ for drawing:

    φ_σ(t) = (1/n_v) Σ_{l=1}^{n_v} Σ_{j=1}^{m} τ_{l,j}² g_σ(t − θ_{l,j}),   g_σ(x) = exp(−x²/2σ²)/(σ√(2π)).

Lanczos keeps the full basis and re-orthogonalises each new vector against it (twice when the first pass
cancelled much of it), so there are no ghost copies of converged eigenvalues. A probe that reaches an invariant
subspace (β_j ≈ 0, always once m ≥ P) stops there with fewer nodes: its quadrature is then exact for every f.
Cost: one matvec per step, at most n_v·m in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from .eigen import MatVec
from .errors import ConfigError

PROBES = ("rademacher", "gaussian")


@dataclass
class SpectralQuadrature:
    """Per probe l the Ritz nodes θ_{l,j} and weights τ_{l,j}² (each probe's weights sum to 1), and the cost."""

    nodes: list[list[float]]
    weights: list[list[float]]
    n_matvec: int

    def moment(self, k: int) -> float:
        """(1/n_v) Σ_l Σ_j τ_{l,j}² θ_{l,j}^k, the estimate of tr(H^k)/P."""
        return float(np.mean([np.dot(w, np.asarray(t) ** k) for t, w in zip(self.nodes, self.weights)]))

    def density(self, t, width: float) -> np.ndarray:
        """φ_σ(t) with Gaussian width σ = ``width`` (module docstring) at the points ``t``."""
        return density(t, self.nodes, self.weights, width)


def density(t, nodes, weights, width: float) -> np.ndarray:
    """φ_σ(t) = (1/n_v) Σ_l Σ_j τ_{l,j}² g_σ(t − θ_{l,j}) from per-probe node and weight lists."""
    t = np.asarray(t, dtype=float)
    if width <= 0:
        raise ValueError(f"the Gaussian width must be > 0 (got {width})")
    theta = np.concatenate([np.asarray(n, dtype=float) for n in nodes]) if nodes else np.zeros(0)
    tau2 = np.concatenate([np.asarray(w, dtype=float) for w in weights]) if weights else np.zeros(0)
    gauss = np.exp(-0.5 * ((t[:, None] - theta[None, :]) / width) ** 2) / (width * math.sqrt(2 * math.pi))
    return gauss @ tau2 / max(len(nodes), 1)


def _probe(dim: int, kind: str, gen: torch.Generator, dtype, device) -> torch.Tensor:
    if kind == "rademacher":
        z = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(torch.float64)
    elif kind == "gaussian":
        z = torch.randn(dim, generator=gen, dtype=torch.float64)
    else:
        raise ConfigError(f"geometry.density.distribution is {kind!r}; allowed: {list(PROBES)}")
    z = z.to(dtype=dtype, device=device)
    return z / z.norm()


def lanczos_tridiagonal(matvec: MatVec, v: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of T_m after ``steps`` Lanczos steps from the unit vector v, with full re-orthogonalisation; fewer
    when a β falls to ≈ 0 (an invariant subspace: the quadrature is exact)."""
    dim = v.numel()
    steps = min(steps, dim)
    basis = torch.empty(steps, dim, dtype=v.dtype, device=v.device)
    alphas: list[float] = []
    betas: list[float] = []
    q = v
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        alpha = float(q @ w)
        alphas.append(alpha)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j > 0 else 0)
        before = float(w.norm())
        for _ in range(2):  # "twice is enough"
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
            beta = float(w.norm())
            if beta > 0.7071 * before:
                break
            before = beta
        scale = max(max(abs(a) for a in alphas), max(betas, default=0.0), 1e-300)
        if j + 1 == steps or beta <= 1e-10 * scale:
            break
        betas.append(beta)
        q = w / beta
    return np.asarray(alphas), np.asarray(betas)


def quadrature(matvec: MatVec, v: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The Gauss quadrature of μ_v from the unit vector v: nodes θ_j (eigenvalues of T_m) and weights τ_j² (squared
    first components of its eigenvectors), Σ_j τ_j² θ_j^k = vᵀH^k v for k ≤ 2m − 1; one matvec per node."""
    alphas, betas = lanczos_tridiagonal(matvec, v, steps)
    theta, s = eigh_tridiagonal(alphas, betas)
    return theta, s[0] ** 2


def slq(matvec: MatVec, dim: int, *, probes: int, steps: int, seed: int = 0, distribution: str = "rademacher",
        dtype=torch.float64, device="cpu") -> SpectralQuadrature:
    """Stochastic Lanczos quadrature of the operator: ``probes`` probe vectors (``distribution`` Rademacher or
    Gaussian, drawn from ``seed``, normalised), ``steps`` Lanczos steps each; nodes and weights per probe."""
    if probes < 1 or steps < 1:
        raise ConfigError(f"geometry.density: probes and steps must be ≥ 1 (got {probes}, {steps})")
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for _ in range(probes):
        theta, tau2 = quadrature(matvec, _probe(dim, distribution, gen, dtype, device), steps)
        nodes.append([float(x) for x in theta])
        weights.append([float(x) for x in tau2])
    return SpectralQuadrature(nodes, weights, sum(map(len, nodes)))
