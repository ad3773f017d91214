"""Training objectives L(θ), their gradients and Hessian-vector products.

An objective is anything with ``loss_and_grad(θ) -> (L, ∇L)``, ``hessian_at(θ) -> v ↦ ∇²L(θ)v`` and
``in_place_gradient(θ)`` (the same gradient for a θ updated in place, GD's inner loop); mini-batch SGD also needs
``n`` (examples) and ``subset(indices)`` (the objective of a batch).
:class:`NetObjective` is the full-batch loss of a :class:`~normsharp.models.FlatModel` on a dataset
(optionally accumulated over chunks, which gives the same value and gradient); :class:`Quadratic` is
L(θ) = ½ θᵀAθ − bᵀθ, used as an exact reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from .errors import ConfigError
from .models import FlatModel

HVP = Callable[[torch.Tensor], torch.Tensor]


def mse_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_i ½‖f(x_i) − y_i‖² (divide by n for the mean)."""
    return 0.5 * (out - y).pow(2).sum()


def ce_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_i −log softmax(f(x_i))_{y_i}."""
    return torch.nn.functional.cross_entropy(out, y, reduction="sum")


LOSSES = {"mse": mse_sum, "ce": ce_sum}


class Objective(Protocol):
    dim: int

    def loss_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def loss(self, theta: torch.Tensor) -> torch.Tensor: ...

    def in_place_gradient(self, theta: torch.Tensor) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]: ...

    def hessian_at(self, theta: torch.Tensor) -> HVP: ...


class NetObjective:
    """L(θ) = (1/n) Σ_i ℓ(f(θ, x_i), y_i) over the full set, evaluated in chunks of ``chunk_size``.

    HVPs use double backward. With one chunk, ``hessian_at`` builds the gradient graph once and every
    product is a single backward pass through it (the Lanczos inner loop at fixed θ); with several
    chunks each product recomputes the per-chunk gradients, so memory stays that of one chunk.
    """

    def __init__(self, model: FlatModel, x: torch.Tensor, y: torch.Tensor, loss: str, chunk_size: int | None = None):
        if loss not in LOSSES:
            raise ConfigError(f"loss is {loss!r}; allowed: {sorted(LOSSES)}")
        self.model, self.x, self.y, self.loss_name, self.chunk_size = model, x, y, loss, chunk_size
        self.loss_sum = LOSSES[loss]
        self.n = x.shape[0]
        self.dim = model.num_params
        size = self.n if chunk_size is None else int(chunk_size)
        if size < 1:
            raise ConfigError(f"chunk_size must be ≥ 1 (got {chunk_size})")
        self.chunks = [(x[i : i + size], y[i : i + size]) for i in range(0, self.n, size)]

    def _chunk_loss(self, theta: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        return self.loss_sum(self.model(theta, xc), yc) / self.n

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """L(θ) without a gradient."""
        with torch.no_grad():
            return sum(self._chunk_loss(theta, xc, yc) for xc, yc in self.chunks)

    def loss_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L(θ), ∇L(θ)) from one forward and one backward pass per chunk."""
        theta = theta.detach().requires_grad_(True)
        if len(self.chunks) == 1:
            lc = self._chunk_loss(theta, *self.chunks[0])
            return lc.detach(), torch.autograd.grad(lc, theta)[0]
        total = theta.new_zeros(())
        grad = torch.zeros_like(theta)
        for xc, yc in self.chunks:
            lc = self._chunk_loss(theta, xc, yc)
            (gc,) = torch.autograd.grad(lc, theta)
            total += lc.detach()
            grad += gc
        return total, grad

    def in_place_gradient(self, theta: torch.Tensor) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        """() ↦ (L(θ), ∇L(θ)) at the current value of a θ that the caller updates in place (GD's loop).

        The module gets leaf views of θ's storage once (again only if something else rebound it), so a
        call is one forward and one backward pass per chunk, with no per-call slicing of θ; ∇L is written
        into one reused flat buffer, valid until the next call. Same values as :meth:`loss_and_grad`.
        """
        leaves = self.model.leaf_views(theta)
        grad = torch.empty_like(theta)

        def loss_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
            if not self.model.is_bound_to(leaves):
                self.model.bind_tensors(leaves)
            total = theta.new_zeros(())
            grad.zero_()
            for xc, yc in self.chunks:
                lc = self.loss_sum(self.model.module(xc), yc) / self.n
                total += lc.detach()
                grad.add_(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lc, leaves)]))
            return total, grad

        return loss_and_grad

    def hessian_at(self, theta: torch.Tensor) -> HVP:
        """v ↦ ∇²L(θ) v = ∇_θ(∇L(θ)·v) by double backward.

        Differentiating the scalar ∇L·v (rather than passing ``grad_outputs=v``) gives the same product without
        the sympy import torch.autograd makes for a tensor ``grad_outputs`` (0.7 s in every job that computes one).
        """
        theta = theta.detach().requires_grad_(True)
        if len(self.chunks) == 1:
            (g,) = torch.autograd.grad(self._chunk_loss(theta, *self.chunks[0]), theta, create_graph=True)

            def hvp(v: torch.Tensor) -> torch.Tensor:
                return torch.autograd.grad(g @ v, theta, retain_graph=True)[0]

            return hvp

        def hvp_chunked(v: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(theta)
            for xc, yc in self.chunks:
                (gc,) = torch.autograd.grad(self._chunk_loss(theta, xc, yc), theta, create_graph=True)
                out += torch.autograd.grad(gc @ v, theta)[0]
            return out

        return hvp_chunked

    def subset(self, indices: torch.Tensor) -> NetObjective:
        """The mean loss over the examples ``indices`` only, L_B(θ) = (1/|B|) Σ_{i∈B} ℓ(f(θ, x_i), y_i) (a
        mini-batch of SGD): an objective of its own, so its gradient and HVPs are those of the full-batch one."""
        indices = indices.to(self.x.device)
        return NetObjective(self.model, self.x[indices], self.y[indices], self.loss_name, self.chunk_size)

    def outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f(θ, x) without a gradient, in chunks."""
        size = self.chunks[0][0].shape[0]
        with torch.no_grad():
            return torch.cat([self.model(theta, x[i : i + size]) for i in range(0, x.shape[0], size)])


class Quadratic:
    """L(θ) = ½ θᵀAθ − bᵀθ with symmetric A: ∇L = Aθ − b, ∇²L = A."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor | None = None):
        self.a = 0.5 * (a + a.T)
        self.b = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device) if b is None else b
        self.dim = a.shape[0]

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * theta @ (self.a @ theta) - self.b @ theta

    def loss_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_theta = self.a @ theta
        return 0.5 * theta @ a_theta - self.b @ theta, a_theta - self.b

    def in_place_gradient(self, theta: torch.Tensor) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        return lambda: self.loss_and_grad(theta)

    def hessian_at(self, theta: torch.Tensor) -> HVP:
        return lambda v: self.a @ v
