"""Eigen-solvers over any symmetric operator v ↦ Hv (algorithms, separate from what H is).

Sharpness is S = max_λ |λ| over the spectrum of H, returned with its sign. Lanczos keeps a full
orthonormal basis Q (re-orthogonalised twice per step, so no ghost eigenvalues) and stops when every
wanted Ritz pair (θ, y) has relative residual ‖Hy − θy‖/|θ| ≤ tol; the residual is |β_j s_j| without
another product. The eigenvalue error is then ≤ residual²/gap, far below tol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EigResult:
    """Eigenvalues of largest magnitude (signed, by decreasing |λ|), unit eigenvectors (k, P) and cost."""

    values: torch.Tensor
    vectors: torch.Tensor
    n_matvec: int
    residuals: torch.Tensor  # relative Ritz residuals ‖Hy − θy‖/|θ|
    converged: bool

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


def lanczos(matvec: MatVec, dim: int, *, k: int = 1, tol: float = 1e-4, max_iter: int = 100,
            v0: torch.Tensor | None = None, seed: int = 0, dtype=torch.float64, device="cpu") -> EigResult:
    """The k eigenpairs of largest |λ| of a symmetric operator by Lanczos with full reorthogonalisation.

    ``v0`` warm-starts from a previous eigenvector; otherwise the start vector is N(0, I) from ``seed``.
    """
    k = min(k, dim)
    max_iter = min(max_iter, dim)
    q = _start_vector(dim, v0, seed, dtype, device)
    basis = torch.empty(max_iter, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    values = vecs = resid = None
    converged = False
    for j in range(max_iter):
        basis[j] = q
        w = matvec(q)
        alpha = float(q @ w)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j > 0 else 0)
        for _ in range(2):  # full reorthogonalisation against the whole basis
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(w.norm())
        alphas.append(alpha)
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        order = torch.argsort(theta.abs(), descending=True)[:k]
        values, s_k = theta[order], s[:, order]
        resid = (beta * s_k[-1, :].abs()) / values.abs().clamp_min(torch.finfo(torch.float64).tiny)
        invariant = beta <= 1e-12 * max(abs(float(values[0])), 1e-300)
        if (j + 1 >= k and bool((resid <= tol).all())) or invariant:
            converged = True
            break
        betas.append(beta)
        q = w / beta
    m = len(alphas)
    vecs = (s_k.to(dtype=dtype, device=device).T @ basis[:m])
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    return EigResult(values.to(dtype), vecs, m, resid, converged)


def sharpness(matvec: MatVec, dim: int, **kwargs) -> EigResult:
    """S = the eigenvalue of largest magnitude (signed) of the operator, by Lanczos."""
    return lanczos(matvec, dim, k=1, **kwargs)


def power_iteration(matvec: MatVec, dim: int, *, tol: float = 1e-4, max_iter: int = 1000,
                    v0: torch.Tensor | None = None, seed: int = 0, dtype=torch.float64, device="cpu") -> EigResult:
    """Plain power iteration for the eigenvalue of largest magnitude (a baseline for Lanczos)."""
    v = _start_vector(dim, v0, seed, dtype, device)
    lam, res = 0.0, float("inf")
    for n in range(1, max_iter + 1):
        hv = matvec(v)
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
