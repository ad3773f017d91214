"""The networks, by name: FCN, the diagonal linear network, CNN, ResNet without BatchNorm, ViT.

Each builder in :data:`BUILDERS` is ``(spec, input_shape, output_dim, generator) -> nn.Module``; the
CNN, ResNet and ViT take image inputs ``input_shape = (C, H, W)``. Every weight is a scaled layer of
:mod:`normsharp.layers` (``m·W``, ``W ~ N(0, σ²)``, (σ, m) from :func:`normsharp.layers.layer_scaling`), so
'standard', 'ntk' and 'mup' mean the same thing for every net. Everything is a smooth-enough composition of
conv2d / linear / softmax / layer_norm / average pooling: float32 and float64 both work, and
double backward (Hessian-vector products) is supported and deterministic on CPU.

Spec keys (defaults in brackets), besides ``arch``, ``init_scale`` (handled by build_model):

- fcn:    width [100], depth [2] hidden layers, activation ['tanh'], bias [true], parametrization
          ['standard'].
- diagonal_linear: depth [2], variant ['shared' | 'uv']; init_scale is its α (w₀ = α·1).

- cnn:    width [32], depth [2] conv layers, activation ['relu'], bias [true], parametrization
          ['standard']. conv3×3 (padding 1) → activation → 2×2 average pool per layer (the pool is
          skipped once the side is < 2), flatten, linear head.
- resnet: width [16], depth [2] residual blocks, activation ['relu'], bias [true], parametrization
          ['standard'], norm ['none' | 'batchnorm'], pool_every [1] (2×2 average pool after every
          k-th block except the last; 0 = never). Stem conv3×3 → blocks x + conv(σ(conv(σ(x)))) →
          σ → global average pool → linear head.
- vit:    width [32] (embedding dim), depth [2] blocks, heads [4] (must divide width), patch_size
          [4 for sides ≥ 16, else 2] (must divide H and W), mlp_ratio [2], activation ['gelu'],
          bias [true], parametrization ['standard'], pool ['mean' | 'cls'].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError
from .layers import (
    ACTIVATIONS,
    PARAMETRIZATIONS,
    AvgPool2,
    GlobalAvgPool,
    ScaledConv2d,
    ScaledLinear,
    ScaledTable,
    bias_multiplier,
    layer_scaling,
    scaled_linear,
)

# ---- FCN and the diagonal linear network -----------------------------------------------------------

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
        uv = variant == "uv"
        self.v = nn.Parameter(torch.full((in_dim,), float(init_scale), dtype=torch.float64)) if uv else None

    def beta(self) -> torch.Tensor:
        return self.u**self.depth - self.v**self.depth if self.v is not None else self.u**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.beta()).unsqueeze(1)


def build_fcn(spec: dict, input_shape, output_dim: int, generator) -> nn.Module:
    return FCN(math.prod(input_shape), output_dim, int(spec.get("width", 100)), int(spec.get("depth", 2)),
               spec.get("activation", "tanh"), bool(spec.get("bias", True)),
               spec.get("parametrization", "standard"), generator)


def build_diagonal_linear(spec: dict, input_shape, output_dim: int, generator=None) -> nn.Module:
    """Deterministic (w₀ = α·1, α = init_scale): ``generator`` is not used."""
    if output_dim != 1:
        raise ConfigError(f"model.arch 'diagonal_linear' has one output; the dataset has {output_dim}")
    return DiagonalLinear(math.prod(input_shape), int(spec.get("depth", 2)), spec.get("variant", "shared"),
                          float(spec.get("init_scale", 1.0)))


# ---- spec handling -------------------------------------------------------------------------------

def _choice(spec: dict, key: str, default: str, allowed) -> str:
    value = spec.get(key, default)
    if value not in allowed:
        raise ConfigError(f"model.{key} is {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
    return value


def _positive_int(spec: dict, key: str, default: int, minimum: int = 1) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ConfigError(f"model.{key} is {value!r}; must be an integer ≥ {minimum}")
    return int(value)


def _common(spec: dict, input_shape, width: int, depth: int, activation: str):
    """(C, H, W), width, depth, activation class, bias, parametrization — validated."""
    arch = spec.get("arch")
    if len(input_shape) != 3:
        raise ConfigError(f"model.arch {arch!r} needs image inputs of shape (C, H, W); the dataset gives "
                          f"{tuple(input_shape)}: use arch 'fcn' for vector inputs")
    width = _positive_int(spec, "width", width)
    depth = _positive_int(spec, "depth", depth)
    act = _choice(spec, "activation", activation, sorted(ACTIVATIONS))
    param = _choice(spec, "parametrization", "standard", PARAMETRIZATIONS)
    return tuple(int(s) for s in input_shape), width, depth, ACTIVATIONS[act], bool(spec.get("bias", True)), param


# ---- CNN -----------------------------------------------------------------------------------------

class CNN(nn.Module):
    """[conv3×3 → σ → avgpool 2×2] × depth (pool skipped once the side is < 2), flatten, linear head."""

    def __init__(self, input_shape, output_dim: int, width: int, depth: int, activation, bias: bool,
                 parametrization: str, generator):
        super().__init__()
        c, h, w = self.input_shape = tuple(input_shape)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [ScaledConv2d(c if i == 0 else width, width, 3, bias, parametrization,
                                    "input" if i == 0 else "hidden", width, generator), activation()]
            if min(h, w) >= 2:
                layers.append(AvgPool2())
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.head = scaled_linear(width * h * w, output_dim, bias, parametrization, "output", width, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build_cnn(spec: dict, input_shape, output_dim: int, generator) -> nn.Module:
    shape, width, depth, act, bias, param = _common(spec, input_shape, 32, 2, "relu")
    return CNN(shape, output_dim, width, depth, act, bias, param, generator)


# ---- ResNet --------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """x + conv(σ(N(conv(σ(N(x)))))) with N = identity or BatchNorm (pre-activation, no projection)."""

    def __init__(self, width: int, activation, bias: bool, parametrization: str, norm: str, generator):
        super().__init__()

        def norm_layer() -> nn.Module:
            if norm == "batchnorm":
                return nn.BatchNorm2d(width, track_running_stats=False, dtype=torch.float64)
            return nn.Identity()

        self.branch = nn.Sequential(
            norm_layer(), activation(),
            ScaledConv2d(width, width, 3, bias, parametrization, "hidden", width, generator),
            norm_layer(), activation(),
            ScaledConv2d(width, width, 3, bias, parametrization, "hidden", width, generator),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResNet(nn.Module):
    """Stem conv3×3 → `depth` residual blocks at `width` channels (avg-pool 2×2 after every
    `pool_every`-th block but the last) → σ → global average pool → linear head.

    ``norm='none'`` (default) keeps the loss a sum over examples. With ``norm='batchnorm'`` each
    BatchNorm normalises with the statistics of the batch it is given (no running statistics), so
    the loss is *not* a sum of per-example terms: full-batch and chunked gradients (``chunk_size``)
    differ, and the test loss depends on how the test set is batched.
    """

    def __init__(self, input_shape, output_dim: int, width: int, depth: int, activation, bias: bool,
                 parametrization: str, norm: str, pool_every: int, generator):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = [ScaledConv2d(c, width, 3, bias, parametrization, "input", width, generator)]
        for i in range(depth):
            layers.append(ResidualBlock(width, activation, bias, parametrization, norm, generator))
            if pool_every and (i + 1) % pool_every == 0 and i < depth - 1 and min(h, w) >= 2:
                layers.append(AvgPool2())
                h, w = h // 2, w // 2
        if norm == "batchnorm":
            layers.append(nn.BatchNorm2d(width, track_running_stats=False, dtype=torch.float64))
        layers += [activation(), GlobalAvgPool()]
        self.features = nn.Sequential(*layers)
        self.head = scaled_linear(width, output_dim, bias, parametrization, "output", width, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_resnet(spec: dict, input_shape, output_dim: int, generator) -> nn.Module:
    shape, width, depth, act, bias, param = _common(spec, input_shape, 16, 2, "relu")
    norm = _choice(spec, "norm", "none", ("none", "batchnorm"))
    pool_every = _positive_int(spec, "pool_every", 1, minimum=0)
    return ResNet(shape, output_dim, width, depth, act, bias, param, norm, pool_every, generator)


# ---- ViT -----------------------------------------------------------------------------------------

def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-token LayerNorm without gain/bias (the next linear layer absorbs them); per example, no batch statistics."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class Attention(nn.Module):
    """Multi-head self-attention from plain linear layers: softmax(q kᵀ·s) v, s = 1/√d_head (1/d_head for μP)."""

    def __init__(self, width: int, heads: int, bias: bool, parametrization: str, generator):
        super().__init__()
        self.heads, self.d_head = heads, width // heads
        self.scale = 1.0 / self.d_head if parametrization == "mup" else 1.0 / math.sqrt(self.d_head)
        self.qkv = scaled_linear(width, 3 * width, bias, parametrization, "hidden", width, generator)
        self.proj = scaled_linear(width, width, bias, parametrization, "hidden", width, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)) with MLP = linear → σ → linear."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, activation, bias: bool, parametrization: str, generator):
        super().__init__()
        self.attn = Attention(width, heads, bias, parametrization, generator)
        hidden = mlp_ratio * width
        self.mlp = nn.Sequential(
            scaled_linear(width, hidden, bias, parametrization, "hidden", width, generator), activation(),
            scaled_linear(hidden, width, bias, parametrization, "hidden", width, generator),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(_layer_norm(x))
        return x + self.mlp(_layer_norm(x))


class ViT(nn.Module):
    """Vision Transformer: p×p patches → linear embedding + learned positions (+ cls token) →
    `depth` pre-LN blocks → LN → mean over tokens (or the cls token) → linear head."""

    def __init__(self, input_shape, output_dim: int, width: int, depth: int, heads: int, patch: int,
                 mlp_ratio: int, activation, bias: bool, parametrization: str, pool: str, generator):
        super().__init__()
        c, h, w = input_shape
        self.patch = patch
        tokens = (h // patch) * (w // patch)
        self.embed = scaled_linear(c * patch * patch, width, bias, parametrization, "input", width, generator)
        self.pos = ScaledTable((tokens, width), parametrization, width, generator)
        self.cls = ScaledTable((1, 1, width), parametrization, width, generator) if pool == "cls" else None
        self.blocks = nn.Sequential(*[TransformerBlock(width, heads, mlp_ratio, activation, bias, parametrization,
                                                       generator) for _ in range(depth)])
        self.head = scaled_linear(width, output_dim, bias, parametrization, "output", width, generator)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, H/p · W/p, C·p·p), row-major over patches."""
        n, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return patches.reshape(n, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(self.patches(x)) + self.pos()
        if self.cls is not None:
            z = torch.cat([self.cls().expand(z.shape[0], 1, -1), z], dim=1)
        z = _layer_norm(self.blocks(z))
        return self.head(z[:, 0] if self.cls is not None else z.mean(dim=1))


def build_vit(spec: dict, input_shape, output_dim: int, generator) -> nn.Module:
    shape, width, depth, act, bias, param = _common(spec, input_shape, 32, 2, "gelu")
    _, h, w = shape
    heads = _positive_int(spec, "heads", 4)
    if width % heads:
        raise ConfigError(f"model.heads ({heads}) must divide model.width ({width})")
    patch = _positive_int(spec, "patch_size", 4 if min(h, w) >= 16 else 2)
    if h % patch or w % patch:
        divisors = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]
        raise ConfigError(f"model.patch_size ({patch}) must divide the image side ({h}×{w}); allowed: {divisors}")
    mlp_ratio = _positive_int(spec, "mlp_ratio", 2)
    pool = _choice(spec, "pool", "mean", ("mean", "cls"))
    return ViT(shape, output_dim, width, depth, heads, patch, mlp_ratio, act, bias, param, pool, generator)


# Every registry architecture but 'custom' (the user's factory, normsharp.custom), by name.
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fcn": build_fcn, "cnn": build_cnn, "resnet": build_resnet, "vit": build_vit,
    "diagonal_linear": build_diagonal_linear,
}
