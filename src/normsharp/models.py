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


class ScaledLinear(nn.Module):
    """y = x (m_W W)ᵀ + m_b b with W ~ N(0, σ²), b = 0 (or PyTorch's default uniform init when σ is None).

    m_W = ``multiplier``, m_b = ``bias_multiplier`` (see :func:`layer_scaling`, :func:`bias_multiplier`).
    """

    def __init__(self, fan_in: int, fan_out: int, bias: bool, std: float | None, multiplier: float, generator,
                 bias_multiplier: float = 1.0):
        super().__init__()
        self.multiplier = multiplier
        self.bias_multiplier = bias_multiplier
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
        bias = self.bias if self.bias is None or self.bias_multiplier == 1.0 else self.bias * self.bias_multiplier
        return torch.nn.functional.linear(x, weight, bias)


PARAMETRIZATIONS = ("standard", "ntk", "mup")


def _check_parametrization(parametrization: str) -> None:
    if parametrization not in PARAMETRIZATIONS:
        raise ConfigError(f"model.parametrization is {parametrization!r}; allowed: 'standard', 'ntk', 'mup'")


def layer_scaling(parametrization: str, layer: str, fan_in: int, width: int) -> tuple[float | None, float]:
    """(init std σ, forward multiplier m) of a weight: the layer uses m·W with W ~ N(0, σ²) as stored in θ.

    ``layer`` is 'input' (fan_in finite: pixels, patches, a position table with fan_in 1), 'hidden'
    (fan_in ∝ n) or 'output' (fan_out finite); n = ``width``, the dimension taken to infinity; fan_in
    counts every input of one unit (C·k² for a conv). All parameters share one learning rate η.

    standard: PyTorch's default init U(±1/√fan_in) (σ = None), m = 1. Output Θ(1) at init; the hidden
      layers' NTK contributions, hence the sharpness at init, grow ∝ n, so a fixed η becomes unstable.
    ntk: W ~ N(0, 1), m = 1/√fan_in. Output and NTK Θ(1): width-independent, but lazy (kernel limit).
    mup: μP for GD/SGD with one global η (Yang & Hu 2021, abc-form with c = 0, base width 1):
      input  σ = 1/√n,       m = √(n/fan_in)   (effective m·W ~ N(0, 1/fan_in): pre-activations Θ(1))
      hidden σ = 1/√fan_in,  m = 1             (fan_in = n for a dense layer)
      output σ = 1/√fan_in,  m = 1/√n          (effective variance 1/(fan_in·n) = 1/n² for fan_in = n)
      biases of input/hidden layers are vector-like (fan_in 1): m_b = √n, init 0 (:func:`bias_multiplier`).
      With these, every layer's contribution ‖∂f/∂W_l‖² to the NTK is Θ(1), so the sharpness at init
      and the function change after one GD step, Δf = −η K (f − y) + O(η²), are Θ(1) and width-
      independent, and the features move by Θ(1) (feature learning).
      The output at init is f₀ = m·W h = Θ(n^{-1/2}) → 0 (a sum of n terms of size n^{-1}): this is part
      of μP, not an artefact of the base width. With a base width n₀ (multipliers in n/n₀) f₀ is
      multiplied by √(n₀/n) relative to the n₀ net, so f₀(64)/f₀(256) = 2 for every choice of n₀.
      A parametrisation with a width-independent f₀ *and* NTK is NTK/lazy, not μP (Yang & Hu's
      dichotomy), so the width-independent quantities of μP are S(θ₀) and Δf, not f₀.
    """
    _check_parametrization(parametrization)
    if layer not in ("input", "hidden", "output"):
        raise ValueError(f"layer must be 'input', 'hidden' or 'output', not {layer!r}")
    if parametrization == "standard":
        return None, 1.0
    if parametrization == "ntk":
        return 1.0, 1.0 / math.sqrt(fan_in)
    if layer == "input":
        return 1.0 / math.sqrt(width), math.sqrt(width / fan_in)
    if layer == "hidden":
        return 1.0 / math.sqrt(fan_in), 1.0
    return 1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(width)


def bias_multiplier(parametrization: str, layer: str, width: int) -> float:
    """Forward multiplier of a bias: √n for input/hidden layers under μP (vector-like, fan_in 1), else 1."""
    _check_parametrization(parametrization)
    return math.sqrt(width) if parametrization == "mup" and layer != "output" else 1.0


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
            kind = "input" if i == 0 else "hidden"
            std, mult = layer_scaling(parametrization, kind, fan_in, width)
            layers += [ScaledLinear(fan_in, width, bias, std, mult, generator,
                                    bias_multiplier(parametrization, kind, width)),
                       ACTIVATIONS[activation]()]
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
    elif arch == "custom":  # the user's factory (normsharp.custom); checked for full-batch use in init_model
        from .custom import build_custom

        module = build_custom(spec, input_shape, output_dim, seed)
    elif arch in ARCHITECTURES:
        module = ARCHITECTURES[arch](spec, input_shape, output_dim, generator)
    else:
        raise ConfigError(f"model.arch is {arch!r}; allowed: {sorted(['fcn', 'diagonal_linear', 'custom', *ARCHITECTURES])}")
    flat = FlatModel(module)
    flat.theta0 = flat.theta0 * init_scale
    flat._bind(flat.theta0)
    return flat


# CNN, ResNet, ViT: builders (spec, input_shape, output_dim, generator) -> nn.Module, by name.
from .architectures import ARCHITECTURES  # noqa: E402  (architectures.py uses the layers above)
