"""Building blocks of every architecture: activations, parametrisations and scaled layers m·W, W ~ N(0, σ²).

A weight is stored in θ as W and used as m·W; (σ, m) come from :func:`layer_scaling` with the layer kind
'input' (reads the data or a fixed-size table), 'hidden' (fan_in ∝ width) or 'output' (the linear head), so
'standard', 'ntk' and 'mup' mean the same thing for every architecture built from these layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


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


def _init(shape: tuple[int, ...], fan_in: int, std: float | None, generator) -> torch.Tensor:
    """N(0, σ²) in float64, or PyTorch's default U(±1/√fan_in) when σ is None."""
    if std is None:
        return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * std


class ScaledConv2d(nn.Module):
    """y = conv2d(x, m_W W) + m_b b, k×k kernel, 'same' padding; init and multipliers as ScaledLinear."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool, parametrization: str, layer: str,
                 width: int, generator, stride: int = 1):
        super().__init__()
        fan_in = c_in * kernel * kernel
        std, self.multiplier = layer_scaling(parametrization, layer, fan_in, width)
        self.bias_multiplier = bias_multiplier(parametrization, layer, width)
        self.stride, self.padding = stride, kernel // 2
        self.weight = nn.Parameter(_init((c_out, c_in, kernel, kernel), fan_in, std, generator))
        if not bias:
            self.bias = None
        else:
            b = _init((c_out,), fan_in, None, generator) if std is None else torch.zeros(c_out, dtype=torch.float64)
            self.bias = nn.Parameter(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.multiplier == 1.0 else self.weight * self.multiplier
        bias = self.bias if self.bias is None or self.bias_multiplier == 1.0 else self.bias * self.bias_multiplier
        return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)


def scaled_linear(fan_in: int, fan_out: int, bias: bool, parametrization: str, layer: str, width: int,
                  generator) -> ScaledLinear:
    """A :class:`ScaledLinear` with the (σ, m, m_b) of ``layer`` under ``parametrization``."""
    std, mult = layer_scaling(parametrization, layer, fan_in, width)
    return ScaledLinear(fan_in, fan_out, bias, std, mult, generator, bias_multiplier(parametrization, layer, width))


class ScaledTable(nn.Module):
    """A learned table (position embeddings, cls token) as an 'input' layer with fan_in 1: m·T."""

    def __init__(self, shape: tuple[int, ...], parametrization: str, width: int, generator):
        super().__init__()
        std, self.multiplier = layer_scaling(parametrization, "input", 1, width)
        self.table = nn.Parameter(_init(shape, 1, std, generator))

    def forward(self) -> torch.Tensor:
        return self.table if self.multiplier == 1.0 else self.table * self.multiplier


class AvgPool2(nn.Module):
    """2×2 average pooling (odd sides are cropped) as reshape + mean: deterministic on every device."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x[:, :, : h - h % 2, : w - w % 2]
        return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) → (N, C), the mean over positions (no adaptive pooling: its CUDA backward is nondeterministic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
