"""The sharpness each optimiser's edge is measured with (normsharp.optimizers), as functions of callables.

* Preconditioned sharpness λ_max(P⁻¹H) for RMSProp/Adam (Cohen et al. 2022, arXiv 2207.14484): P⁻¹H is similar
  to the symmetric P^{-1/2}HP^{-1/2} (P diagonal, > 0), so its eigenvalues are real and Lanczos applies.
* Batch sharpness for SGD (Andreyev & Beneventano 2024, "Edge of stochastic stability", arXiv 2412.20553):
  the expected directional curvature of the mini-batch loss along its own gradient,
  BS = E_B[ g_Bᵀ H_B g_B / ‖g_B‖² ],  g_B = ∇L_B(θ), H_B = ∇²L_B(θ),
  the expectation over batches B of the run's batch size (their estimator: the mean of the ratio over sampled
  batches; E_B[g_BᵀH_Bg_B]/E_B[‖g_B‖²] is their "expectation inside" variant, returned beside it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch

from normsharp.eigen import EigResult, MatVec, sharpness

Batch = TypeVar("Batch")


def preconditioned_sharpness(hvp: MatVec, precond_diag: torch.Tensor, dim: int, *, shift: float = 0.0,
                             **lanczos_kwargs) -> EigResult:
    """λ of largest |λ| (signed) of P⁻¹(H + shift·I), P = diag(precond_diag), by Lanczos on the symmetric
    u ↦ P^{-1/2}(H + shift·I)P^{-1/2}u (same eigenvalues; an eigenvector y of it gives P^{-1/2}y of P⁻¹H).

    ``shift`` is an optimiser's coupled l2 (the Hessian of L + ½λ‖θ‖² is H + λI). ``lanczos_kwargs`` go to
    normsharp.eigen.sharpness (tol, max_iter, v0, seed, dtype, device).
    """
    if not bool((precond_diag > 0).all()):
        raise ValueError("the preconditioner's diagonal must be > 0")
    inv_sqrt = precond_diag.rsqrt()

    def matvec(u: torch.Tensor) -> torch.Tensor:
        w = inv_sqrt * u
        hw = hvp(w)
        if shift:
            hw = hw + shift * w
        return inv_sqrt * hw

    lanczos_kwargs.setdefault("dtype", precond_diag.dtype)
    lanczos_kwargs.setdefault("device", precond_diag.device)
    return sharpness(matvec, dim, **lanczos_kwargs)


@dataclass
class BatchSharpness:
    """Batch sharpness over the given batches: ``value`` = mean of the ratios g_BᵀH_Bg_B/‖g_B‖² (the paper's
    definition), ``stderr`` its standard error, ``ratio_of_means`` = Σ g_BᵀH_Bg_B / Σ ‖g_B‖²."""

    value: float
    stderr: float
    ratio_of_means: float
    n_batches: int
    n_hvp: int


def batch_sharpness(batches: Iterable[Batch], batch_gradient: Callable[[Batch], torch.Tensor],
                    batch_hvp: Callable[[Batch, torch.Tensor], torch.Tensor]) -> BatchSharpness:
    """E_B[g_BᵀH_Bg_B/‖g_B‖²] estimated over ``batches`` (each one gradient and one HVP at the current θ).

    ``batch_gradient(B)`` = ∇L_B(θ) and ``batch_hvp(B, v)`` = ∇²L_B(θ)v for the mean loss L_B over batch B.
    Batches whose gradient is exactly 0 have no direction and are skipped.
    """
    ratios, curvatures, norms = [], [], []
    for batch in batches:
        g = batch_gradient(batch)
        gg = float(g @ g)
        if gg == 0.0:
            continue
        ghg = float(g @ batch_hvp(batch, g))
        ratios.append(ghg / gg)
        curvatures.append(ghg)
        norms.append(gg)
    n = len(ratios)
    if n == 0:
        nan = math.nan
        return BatchSharpness(nan, nan, nan, 0, 0)
    r = torch.tensor(ratios, dtype=torch.float64)
    stderr = float(r.std() / math.sqrt(n)) if n > 1 else math.nan
    return BatchSharpness(float(r.mean()), stderr, math.fsum(curvatures) / math.fsum(norms), n, n)
