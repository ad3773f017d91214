"""Models as functions f(θ, x) of one flat parameter vector θ ∈ R^P.

A model is built as an ordinary ``nn.Module`` (so its initialisation is the familiar one), then wrapped
in :class:`FlatModel`, which takes the parameters out of the module and feeds it views of θ on every
call. GD, gradient flow, HVPs and norms all work on θ directly: no copies between a flat vector and
the module's parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .architectures import BUILDERS
from .errors import ConfigError
from .registry import ARCHITECTURES


class FlatModel:
    """f(θ, x): a module whose parameters are views into the flat vector θ (order of named_parameters)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self._slots: list[tuple[nn.Module, str]] = []
        initial = []
        for mod_name, mod in module.named_modules():
            for p_name, p in list(mod._parameters.items()):
                if p is None:
                    continue
                self.names.append(f"{mod_name}.{p_name}" if mod_name else p_name)
                self.shapes.append(p.shape)
                self._slots.append((mod, p_name))
                initial.append(p.detach().reshape(-1))
                del mod._parameters[p_name]
        self.numels = [math.prod(s) for s in self.shapes]
        self.theta0 = torch.cat(initial).clone() if initial else torch.zeros(0)
        self._bind(self.theta0)

    @property
    def num_params(self) -> int:
        return sum(self.numels)

    def to(self, dtype: torch.dtype, device: str | torch.device) -> FlatModel:
        """Move buffers and θ₀ to ``dtype`` and ``device``."""
        self.module.to(dtype=dtype, device=device)
        self.theta0 = self.theta0.to(dtype=dtype, device=device)
        self._bind(self.theta0)
        return self

    def _bind(self, theta: torch.Tensor) -> None:
        self.bind_tensors([chunk.view(shape) for chunk, shape in zip(theta.split(self.numels), self.shapes)])

    def bind_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Make ``tensors`` (one per parameter, in order) the module's parameters until the next bind."""
        for (mod, name), tensor in zip(self._slots, tensors):
            mod.__dict__[name] = tensor

    def is_bound_to(self, tensors: list[torch.Tensor]) -> bool:
        """Whether the module's parameters are currently ``tensors`` (by identity)."""
        return all(mod.__dict__.get(name) is t for (mod, name), t in zip(self._slots, tensors))

    def leaf_views(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """One leaf tensor per parameter that shares θ's storage: in-place updates of θ show through."""
        return [c.view(s).detach().requires_grad_(True) for c, s in zip(theta.split(self.numels), self.shapes)]

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of θ, one per parameter tensor."""
        return {n: c.view(s) for n, c, s in zip(self.names, theta.split(self.numels), self.shapes)}

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self._bind(theta)
        return self.module(x)


def build_model(spec: dict, input_shape: tuple[int, ...], output_dim: int, seed: int) -> FlatModel:
    """Build the model named by ``spec['arch']`` from ``seed``; θ₀ is scaled by ``spec['init_scale']``.

    For 'diagonal_linear' the init scale is the α of its constant initialisation instead.
    """
    arch = spec.get("arch")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch is {arch!r}; allowed: {sorted(ARCHITECTURES)}")
    if arch == "diagonal_linear":
        return FlatModel(BUILDERS[arch](spec, input_shape, output_dim))
    if arch == "custom":  # the user's factory (normsharp.custom); checked for full-batch use in init_model
        from .custom import build_custom

        module = build_custom(spec, input_shape, output_dim, seed)
    else:
        module = BUILDERS[arch](spec, input_shape, output_dim, torch.Generator().manual_seed(int(seed)))
    flat = FlatModel(module)
    flat.theta0 = flat.theta0 * float(spec.get("init_scale", 1.0))
    flat._bind(flat.theta0)
    return flat
