"""The largest eigenvalue of each layer's diagonal block of the Hessian.

A *layer* is one module's own parameter tensors together (a linear or convolutional layer's weight and bias, a
LayerNorm's scale and shift, a position table): block l is H_ll = ∇²_{θ_l θ_l} L, the rows and columns of H of
that module's contiguous slice θ_l of θ (:class:`normsharp.models.FlatModel` lays each module's tensors out
together). Its sharpness is the signed eigenvalue of largest magnitude, by Lanczos
(:func:`normsharp.eigen.lanczos`) on the block operator

    v_l ↦ (H [0, …, v_l, …, 0])_l,

one full Hessian-vector product per step. By Cauchy interlacing λ_min(H) ≤ λ(H_ll) ≤ λ_max(H), so every
block's value is at most the sharpness S in magnitude when H is positive semidefinite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .eigen import MatVec, lanczos


@dataclass
class LayerSharpness:
    """Per block: its name, its slice (start, stop) of θ and its signed top-|λ|; the HVPs spent in all."""

    names: list[str]
    slices: list[tuple[int, int]]
    values: list[float]
    n_matvec: int


def layer_blocks(names: list[str], numels: list[int]) -> list[tuple[str, int, int]]:
    """(module name, start, stop) of each module's parameters, from a FlatModel's tensor ``names`` ('0.weight')
    and sizes in θ order; a module's tensors are contiguous, the name is the module's ('0'; '' → 'θ')."""
    blocks: list[list] = []
    start = 0
    for name, numel in zip(names, numels):
        module = name.rpartition(".")[0] or "θ"
        if blocks and blocks[-1][0] == module and blocks[-1][2] == start:
            blocks[-1][2] += numel
        else:
            blocks.append([module, start, start + numel])
        start += numel
    return [tuple(b) for b in blocks]


def block_operator(matvec: MatVec, dim: int, start: int, stop: int) -> MatVec:
    """v_l ↦ (H e(v_l))_{start:stop}, e(v_l) = v_l placed in a zero vector of length ``dim``."""

    def apply(v: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(dim, dtype=v.dtype, device=v.device)
        full[start:stop] = v
        return matvec(full)[start:stop]

    return apply


def layer_sharpness(matvec: MatVec, dim: int, blocks: list[tuple[str, int, int]], *, tol: float = 1e-6,
                    max_iter: int = 200, seed: int = 0, dtype=torch.float64, device="cpu") -> LayerSharpness:
    """The signed top-|λ| of each block H_ll of the operator (module docstring), Lanczos to relative ``tol``."""
    values, n = [], 0
    for _, start, stop in blocks:
        eig = lanczos(block_operator(matvec, dim, start, stop), stop - start, k=1, tol=tol, max_iter=max_iter,
                      seed=seed, dtype=dtype, device=device)
        values.append(eig.value)
        n += eig.n_matvec
    return LayerSharpness([b[0] for b in blocks], [(b[1], b[2]) for b in blocks], values, n)
