"""Norms of an end point beyond ℓ1, ℓ2 and ‖θ − θ₀‖₂ (always computed by the evaluation job): per layer, the
product of the layers' spectral norms, and the ℓ2 path norm.

- Per layer: ℓ1 = Σ|θ_i| and ℓ2 = ‖θ_l‖₂ of each layer block θ_l, a layer being one module's own parameter
  tensors together (its weight and bias), the blocks of :func:`normsharp.layer_sharpness.layer_blocks`.
- ``spectral_norm_product`` = Π_l σ_max(m_l W_l) over the weight matrices of a layered network, m_l W_l the map
  the layer applies (m_l = 1 in the standard parametrisation; biases are not part of it). FCN: its linear
  layers. Diagonal linear network: its D diagonal layers diag(w) (variant 'uv': diag(u, v) on the copied input
  (x, x)), so (max_i |w_i|)^D, resp. max(‖u‖∞, ‖v‖∞)^D. CNN: each convolution's operator norm on the input it
  is applied to, σ_max of the linear map x ↦ conv2d(x, m·W) on R^{C×H×W} (zero padding and stride included;
  not the norm of the reshaped kernel, which neither bounds nor equals it), as √λ_max(AᵀA) by Lanczos to a
  relative 1e-12 (float32: 100 ε), times σ_max of the linear head. The pools (operator norm 1/2) and the
  activations are left out, as an FCN's activations are: an upper bound on the net's Lipschitz constant in x
  for 1-Lipschitz activations, not that constant. NaN for ResNet, ViT and custom models: residual and
  attention blocks are no composition of the layers' linear maps.
- ``path_norm``: the ℓ2 path norm of Neyshabur, Tomioka & Srebro 2015 ("Norm-based capacity control in neural
  networks", COLT), φ₂(θ) = (Σ_{paths p} Π_{e ∈ p} w_e²)^{1/2}, the sum over every path from an input unit to
  an output unit of the network's DAG. Convention here: a bias b_j of unit j is an edge of weight m_b·b_j from
  a constant unit 1 of the layer below, so paths also start at those bias units; weights are the applied m·W.
  For a layered net the sum is one forward pass of the squared network, h₀ = 1, h_l = (m_l W_l)^{⊙2} h_{l−1} +
  (m_{b,l} b_l)^{⊙2} with identity activations, φ₂ = (Σ_j h_L,j)^{1/2}. FCN: as written. Diagonal linear
  network (f = Σ_i w_i^D x_i as the chain x_i → w_i → … → w_i → output, read-out weight 1, 'uv': ±1):
  φ₂ = (Σ_i w_i^{2D})^{1/2}, resp. (Σ_i u_i^{2D} + v_i^{2D})^{1/2}. NaN for CNN, ResNet, ViT and custom models
  (weight sharing and skip connections make "a path" a different object there).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: analysis reads the columns without it
    import torch

SCALAR_COLUMNS = {"spectral_norm_product": "float64", "path_norm": "float64"}
LIST_COLUMNS = ["layer_names", "layer_l1_norms", "layer_l2_norms"]


def layer_norms(model, theta: torch.Tensor) -> dict:
    """``layer_names``, ``layer_l1_norms``, ``layer_l2_norms``: ℓ1 and ℓ2 of each layer block of θ, in θ order."""
    from .layer_sharpness import layer_blocks

    blocks = layer_blocks(model.names, model.numels)
    return {"layer_names": [b[0] for b in blocks],
            "layer_l1_norms": [float(theta[a:b].abs().sum()) for _, a, b in blocks],
            "layer_l2_norms": [float(theta[a:b].norm()) for _, a, b in blocks]}


def _linear_layers(model, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(m·W, m_b·b or None) of each linear layer of an FCN (or a CNN's head) at θ, input to output."""
    from .layers import ScaledLinear

    tensors = model.unflatten(theta)
    out = []
    for name, layer in model.module.named_modules():
        if isinstance(layer, ScaledLinear):
            bias = tensors.get(f"{name}.bias")
            out.append((tensors[f"{name}.weight"] * layer.multiplier,
                        None if bias is None else bias * layer.bias_multiplier))
    return out


def _diagonal_factors(model, theta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The diagonal linear network's layer diagonal (w, or (u, v) concatenated) and its depth D at θ."""
    import torch

    tensors = model.unflatten(theta)
    diag = torch.cat([tensors["u"], tensors["v"]]) if "v" in tensors else tensors["u"]
    return diag, model.module.depth


def _conv_operator_norms(model, theta: torch.Tensor) -> list[float]:
    """σ_max of each convolution of a CNN at θ as the map on its input shape (module docstring), input to
    output: the shapes are read by hooks on one forward pass of a zero image."""
    import torch
    from torch.nn import functional as F

    from .eigen import lanczos
    from .layers import ScaledConv2d

    convs = [(name, layer) for name, layer in model.module.named_modules() if isinstance(layer, ScaledConv2d)]
    shapes: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(layer, args, out) -> None:
            shapes[name] = args[0].shape[1:]
        return hook

    hooks = [layer.register_forward_hook(record(name)) for name, layer in convs]
    try:
        with torch.no_grad():
            model(theta, torch.zeros(1, *model.module.input_shape, dtype=theta.dtype, device=theta.device))
    finally:
        for hook in hooks:
            hook.remove()
    tensors, tol = model.unflatten(theta), max(1e-12, 100 * torch.finfo(theta.dtype).eps)
    norms = []
    for name, layer in convs:
        weight, shape = tensors[f"{name}.weight"].detach() * layer.multiplier, shapes[name]

        def gram(v: torch.Tensor, weight=weight, shape=shape, layer=layer) -> torch.Tensor:
            """AᵀA v, Aᵀ as the gradient of ⟨A x, A v⟩ in x (A is linear)."""
            with torch.enable_grad():
                x = v.view(1, *shape).detach().requires_grad_(True)
                y = F.conv2d(x, weight, stride=layer.stride, padding=layer.padding)
                (back,) = torch.autograd.grad(y, x, y.detach())
            return back.reshape(-1)

        dim = math.prod(shape)
        top = lanczos(gram, dim, tol=tol, max_iter=min(dim, 1000), dtype=theta.dtype, device=theta.device)
        norms.append(math.sqrt(max(top.value, 0.0)))
    return norms


def spectral_norm_product(model, theta: torch.Tensor) -> float:
    """Π_l σ_max(m_l W_l) over the weight matrices (module docstring); NaN where it is not defined or θ is not
    finite (a diverged run)."""
    import torch

    from .architectures import CNN, FCN, DiagonalLinear

    if not torch.isfinite(theta).all():
        return math.nan
    if isinstance(model.module, (FCN, CNN)):  # a CNN's only linear layer is its head
        dense = math.prod(float(torch.linalg.matrix_norm(w, ord=2)) for w, _ in _linear_layers(model, theta))
        return dense * (math.prod(_conv_operator_norms(model, theta)) if isinstance(model.module, CNN) else 1.0)
    if isinstance(model.module, DiagonalLinear):
        diag, depth = _diagonal_factors(model, theta)
        return float(diag.abs().max()) ** depth
    return math.nan


def path_norm(model, theta: torch.Tensor) -> float:
    """The ℓ2 path norm φ₂ (Neyshabur et al. 2015, module docstring: biases as edges from a constant unit),
    by one forward pass of the squared network on an all-ones input; NaN where it is not defined."""
    import torch

    from .architectures import FCN, DiagonalLinear

    if isinstance(model.module, FCN):
        layers = _linear_layers(model, theta)
        h = torch.ones(layers[0][0].shape[1], dtype=theta.dtype, device=theta.device)
        for w, b in layers:
            h = w.square() @ h + (0 if b is None else b.square())
        return float(h.sum().sqrt())
    if isinstance(model.module, DiagonalLinear):
        diag, depth = _diagonal_factors(model, theta)
        return float(diag.square().pow(depth).sum().sqrt())
    return math.nan


def measure(model, theta: torch.Tensor) -> dict:
    """The geometry.json entries of these norms at θ (computed for every run, a diverged one included)."""
    return {**layer_norms(model, theta), "spectral_norm_product": spectral_norm_product(model, theta),
            "path_norm": path_norm(model, theta)}
