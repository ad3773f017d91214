"""Eigen-solvers over any symmetric operator v ↦ Hv (algorithms, separate from what H is).

Sharpness is S = max_λ |λ| over the spectrum of H, returned with its sign. Lanczos keeps a full
orthonormal basis Q (each new vector re-orthogonalised against all of Q, a second time only when the
first pass cancelled much of it, so no ghost eigenvalues) and stops on the relative residual of each wanted
Ritz pair (θ, y): ρ = ‖Hy − θy‖ = |β_j s_j| costs no product, and bounds the eigenvalue error by
|λ − θ| ≤ min(ρ, ρ²/δ) (Weyl; Kato–Temple), δ = the gap from θ to the rest of the spectrum, estimated by the
nearest other Ritz value once there are k + 2 of them (the first Ritz values sit far from λ₂ and would
overstate δ; until then only ρ counts). The solve stops when that bound, relative to |θ|, is ≤ ``tol`` for
every wanted pair: ``tol`` is the relative accuracy of the eigenvalues (benchmarks/RESULTS.md). No Krylov
method sees an eigenvalue its start vector barely touches, so a warm start nearly orthogonal to the top
eigenvector while λ₂ ≈ λ₁ (the Edge of Stability) can still end on λ₂ at a loose tol; cold starts are random.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EigResult:
    """Eigenvalues of largest magnitude (signed, by decreasing |λ|), unit eigenvectors (k, P) and cost."""

    values: torch.Tensor
    vectors: torch.Tensor
    n_matvec: int
    residuals: torch.Tensor  # relative Ritz residuals ρ/|θ| = ‖Hy − θy‖/|θ|
    converged: bool
    error_bounds: torch.Tensor | None = None  # estimated relative eigenvalue errors min(ρ, ρ²/δ)/|θ|

    @property
    def value(self) -> float:
        return float(self.values[0])

    @property
    def vector(self) -> torch.Tensor:
        return self.vectors[0]


def _start_vector(dim: int, like: torch.Tensor | None, seed: int, dtype, device) -> torch.Tensor:
    if like is not None and like.numel() == dim and torch.isfinite(like).all() and like.norm() > 0:
        v = like.to(dtype=dtype, device=device).clone()
    else:
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return v / v.norm()


def _ritz(alphas: list[float], betas: list[float], beta: float, k: int):
    """The k Ritz pairs of largest |θ| of the tridiagonal T_j: (θ, coefficients s, ρ/|θ|, error bound/|θ|)."""
    theta, s = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas))
    order = np.argsort(-np.abs(theta), kind="stable")[:k]
    scale = np.maximum(np.abs(theta[order]), np.finfo(np.float64).tiny)
    rho = beta * np.abs(s[-1, order])
    if theta.size > k + 1:
        others = np.abs(theta[order, None] - theta[None, :])
        others[np.arange(len(order)), order] = np.inf
        gap = np.maximum(others.min(axis=1), np.finfo(np.float64).tiny)
        bound = np.minimum(rho, rho**2 / gap)
    else:  # too few Ritz values to estimate the gap (the first ones sit far from λ₂): residual bound only
        bound = rho
    return theta[order], s[:, order], rho / scale, bound / scale


def lanczos(matvec: MatVec, dim: int, *, k: int = 1, tol: float = 1e-4, max_iter: int = 100,
            v0: torch.Tensor | None = None, seed: int = 0, dtype=torch.float64, device="cpu") -> EigResult:
    """The k eigenpairs of largest |λ| of a symmetric operator by Lanczos with full reorthogonalisation.

    Stops once every wanted eigenvalue's estimated relative error min(ρ, ρ²/δ)/|θ| is ≤ ``tol`` (module
    docstring), after ``max_iter`` products, or on an invariant subspace. ``v0`` warm-starts from a previous
    eigenvector; otherwise the start vector is N(0, I) from ``seed``.
    """
    k = min(k, dim)
    max_iter = min(max_iter, dim)
    q = _start_vector(dim, v0, seed, dtype, device)
    basis = torch.empty(max_iter, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(max_iter):
        basis[j] = q
        w = matvec(q)
        alpha = float(q @ w)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j > 0 else 0)
        norm_before = float(w.norm())
        for _ in range(2):  # full reorthogonalisation; again only if it cancelled much ("twice is enough")
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
            beta = float(w.norm())
            if beta > 0.7071 * norm_before:
                break
            norm_before = beta
        alphas.append(alpha)
        values, s_k, resid, bound = _ritz(alphas, betas, beta, k)
        invariant = beta <= 1e-12 * max(abs(float(values[0])), 1e-300)
        if (j + 1 >= k and bool((bound <= tol).all())) or invariant:
            converged = True
            break
        betas.append(beta)
        q = w / beta
    m = len(alphas)
    vecs = torch.as_tensor(s_k.T, dtype=dtype, device=device) @ basis[:m]
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    return EigResult(torch.as_tensor(values, dtype=dtype), vecs, m, torch.as_tensor(resid), converged,
                     torch.as_tensor(bound))


def sharpness(matvec: MatVec, dim: int, **kwargs) -> EigResult:
    """S = the eigenvalue of largest magnitude (signed) of the operator, by Lanczos."""
    return lanczos(matvec, dim, k=1, **kwargs)


def power_iteration(matvec: MatVec, dim: int, *, tol: float = 1e-4, max_iter: int = 1000,
                    v0: torch.Tensor | None = None, seed: int = 0, dtype=torch.float64, device="cpu") -> EigResult:
    """Plain power iteration for the eigenvalue of largest magnitude (a baseline for Lanczos)."""
    v = _start_vector(dim, v0, seed, dtype, device)
    lam, res, n = 0.0, float("inf"), 0
    while n < max_iter:
        hv = matvec(v)
        n += 1
        lam = float(v @ hv)
        res = float((hv - lam * v).norm()) / max(abs(lam), 1e-300)
        if res <= tol:
            break
        v = hv / hv.norm()
    return EigResult(torch.tensor([lam], dtype=dtype), v[None], n, torch.tensor([res]), res <= tol)


@dataclass
class TraceEstimate:
    """Hutchinson estimate of tr(H) = E[zᵀHz] over Rademacher z, with its standard error."""

    value: float
    stderr: float
    n_matvec: int


def hutchinson_trace(matvec: MatVec, dim: int, *, n_samples: int = 20, seed: int = 0,
                     dtype=torch.float64, device="cpu") -> TraceEstimate:
    """tr(H) ≈ (1/m) Σ zᵢᵀHzᵢ with zᵢ ∈ {±1}^P drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n_samples):
        z = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(dtype=dtype, device=device)
        samples.append(float(z @ matvec(z)))
    t = torch.tensor(samples, dtype=torch.float64)
    stderr = float(t.std() / n_samples**0.5) if n_samples > 1 else float("nan")
    return TraceEstimate(float(t.mean()), stderr, n_samples)
