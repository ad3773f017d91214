"""Models as functions f(θ, x) of one flat parameter vector θ ∈ R^P.

A model is built as an ordinary ``nn.Module`` (so its initialisation is the familiar one), then wrapped
in :class:`FlatModel`, which takes the parameters out of the module and feeds it views of θ on every
call. GD, gradient flow, HVPs and norms all work on θ directly: no copies between a flat vector and
the module's parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


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

    def to(self, dtype: torch.dtype, device: str | torch.device) -> "FlatModel":
        """Move buffers and θ₀ to ``dtype`` and ``device``."""
        self.module.to(dtype=dtype, device=device)
        self.theta0 = self.theta0.to(dtype=dtype, device=device)
        self._bind(self.theta0)
        return self

    def _bind(self, theta: torch.Tensor) -> None:
        for (mod, name), chunk, shape in zip(self._slots, theta.split(self.numels), self.shapes):
            mod.__dict__[name] = chunk.view(shape)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of θ, one per parameter tensor."""
        return {n: c.view(s) for n, c, s in zip(self.names, theta.split(self.numels), self.shapes)}

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self._bind(theta)
        return self.module(x)


class ScaledLinear(nn.Module):
    """y = x (mW)ᵀ + b (one fused addmm) with W ~ N(0, σ²) (or PyTorch's default uniform init when σ is None)."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool, std: float | None, multiplier: float, generator):
        super().__init__()
        self.multiplier = multiplier
        bound = 1.0 / math.sqrt(fan_in)
        if std is None:  # nn.Linear's default: U(±1/√fan_in) for weight and bias
            weight = (torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand(fan_out, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        else:
            weight = torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) * std
            b = torch.zeros(fan_out, dtype=torch.float64)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(b) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.multiplier == 1.0 else self.weight * self.multiplier
        return torch.nn.functional.linear(x, weight, self.bias)


def layer_scaling(parametrization: str, layer: str, fan_in: int, width: int) -> tuple[float | None, float]:
    """(init std, forward multiplier) of a dense layer ('input', 'hidden' or 'output').

    standard: PyTorch default init, multiplier 1.  ntk: W ~ N(0, 1), multiplier 1/√fan_in.
    mup (μP for SGD with one global learning rate, Yang & Hu 2021 abc-form with c = 0, base width 1):
    W ~ N(0, 1/n) everywhere; multipliers √(n/fan_in) (input), 1 (hidden), 1/√n (output), n = width.
    """
    if parametrization == "standard":
        return None, 1.0
    if parametrization == "ntk":
        return 1.0, 1.0 / math.sqrt(fan_in)
    if parametrization == "mup":
        std = 1.0 / math.sqrt(width)
        return std, {"input": math.sqrt(width / fan_in), "hidden": 1.0, "output": 1.0 / math.sqrt(width)}[layer]
    raise ConfigError(f"model.parametrization is {parametrization!r}; allowed: 'standard', 'ntk', 'mup'")


class FCN(nn.Module):
    """Fully connected net: flatten, `depth` hidden layers of `width` units with `activation`, linear output."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, activation: str, bias: bool,
                 parametrization: str, generator):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation is {activation!r}; allowed: {sorted(ACTIVATIONS)}")
        if depth < 1 or width < 1:
            raise ConfigError(f"model.depth ({depth}) and model.width ({width}) must be ≥ 1")
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = in_dim
        for i in range(depth):
            std, mult = layer_scaling(parametrization, "input" if i == 0 else "hidden", fan_in, width)
            layers += [ScaledLinear(fan_in, width, bias, std, mult, generator), ACTIVATIONS[activation]()]
            fan_in = width
        std, mult = layer_scaling(parametrization, "output", fan_in, width)
        layers.append(ScaledLinear(fan_in, out_dim, bias, std, mult, generator))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DiagonalLinear(nn.Module):
    """Diagonal linear network f(x) = ⟨β, x⟩ with β = w^{⊙D} ('shared') or β = u^{⊙D} − v^{⊙D} ('uv').

    Initialised at w = α·1 (resp. u = v = α·1), so β₀ = α^D·1 (resp. 0); α = init_scale.
    """

    def __init__(self, in_dim: int, depth: int, variant: str, init_scale: float):
        super().__init__()
        if variant not in ("shared", "uv"):
            raise ConfigError(f"model.variant is {variant!r}; allowed: 'shared', 'uv'")
        self.depth = depth
        self.variant = variant
        self.u = nn.Parameter(torch.full((in_dim,), float(init_scale), dtype=torch.float64))
        self.v = nn.Parameter(torch.full((in_dim,), float(init_scale), dtype=torch.float64)) if variant == "uv" else None

    def beta(self) -> torch.Tensor:
        return self.u**self.depth - self.v**self.depth if self.v is not None else self.u**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.beta()).unsqueeze(1)


def build_model(spec: dict, input_shape: tuple[int, ...], output_dim: int, seed: int) -> FlatModel:
    """Build the model named by ``spec['arch']`` from ``seed``; θ₀ is scaled by ``spec['init_scale']``.

    For 'diagonal_linear' the init scale is the α of its constant initialisation instead.
    """
    arch = spec.get("arch")
    init_scale = float(spec.get("init_scale", 1.0))
    in_dim = math.prod(input_shape)
    generator = torch.Generator().manual_seed(int(seed))
    if arch == "fcn":
        module = FCN(in_dim, output_dim, int(spec.get("width", 100)), int(spec.get("depth", 2)),
                     spec.get("activation", "tanh"), bool(spec.get("bias", True)),
                     spec.get("parametrization", "standard"), generator)
    elif arch == "diagonal_linear":
        if output_dim != 1:
            raise ConfigError(f"model.arch 'diagonal_linear' has one output; the dataset has {output_dim}")
        return FlatModel(DiagonalLinear(in_dim, int(spec.get("depth", 2)), spec.get("variant", "shared"), init_scale))
    elif arch in ARCHITECTURES:
        module = ARCHITECTURES[arch](spec, input_shape, output_dim, generator)
    else:
        raise ConfigError(f"model.arch is {arch!r}; allowed: {sorted(['fcn', 'diagonal_linear', *ARCHITECTURES])}")
    flat = FlatModel(module)
    flat.theta0 = flat.theta0 * init_scale
    flat._bind(flat.theta0)
    return flat


# Further architectures register a builder (spec, input_shape, output_dim, generator) -> nn.Module here.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
