"""CNN, ResNet and ViT: shapes, float32/float64, exact HVPs and sharpness, chunking; μP width test on the FCN."""

import math

import pytest
import torch

from normsharp.eigen import sharpness
from normsharp.errors import ConfigError
from normsharp.layers import layer_scaling
from normsharp.models import build_model
from normsharp.objective import NetObjective

ARCHS = ("cnn", "resnet", "vit")
PARAMS = ("standard", "ntk", "mup")
SHAPE, K, N = (1, 8, 8), 3, 6

# tiny instances (≈ 250–800 parameters) with smooth activations, so the Hessian is a genuine second derivative
TINY = {
    "cnn": {"arch": "cnn", "width": 4, "depth": 2, "activation": "tanh"},
    "resnet": {"arch": "resnet", "width": 4, "depth": 2, "activation": "tanh"},
    "vit": {"arch": "vit", "width": 8, "depth": 1, "heads": 2, "patch_size": 4, "activation": "gelu"},
}


def problem(arch, par, loss="mse", seed=0, n=N, **extra):
    model = build_model({**TINY[arch], "parametrization": par, **extra}, SHAPE, K, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, *SHAPE, generator=gen, dtype=torch.float64)
    labels = torch.arange(n) % K
    y = torch.nn.functional.one_hot(labels, K).double() if loss == "mse" else labels
    return model, x, y


def dense_hessian(obj: NetObjective, theta: torch.Tensor) -> torch.Tensor:
    """The full Hessian by torch.autograd.functional.hessian of θ ↦ L(θ), independent of the HVP code."""
    return torch.autograd.functional.hessian(lambda t: obj.loss_sum(obj.model(t, obj.x), obj.y) / obj.n, theta)


@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_float64_and_float32(arch, par):
    model, x, y = problem(arch, par)
    assert 100 < model.num_params < 1500
    out = model(model.theta0, x)
    assert out.shape == (N, K) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert 0 < out.std() < 10  # a sane output scale at init
    loss, grad = NetObjective(model, x, y, "mse").loss_and_grad(model.theta0)
    assert grad.shape == model.theta0.shape and torch.isfinite(grad).all() and grad.norm() > 0

    model.to(torch.float32, "cpu")
    obj32 = NetObjective(model, x.float(), y.float(), "mse")
    loss32, grad32 = obj32.loss_and_grad(model.theta0)
    assert grad32.dtype == torch.float32
    assert abs(float(loss32) - float(loss)) < 1e-4 * max(1.0, abs(float(loss)))
    assert torch.allclose(grad32.double(), grad, rtol=1e-3, atol=1e-5)
    hv = obj32.hessian_at(model.theta0)(torch.ones_like(model.theta0))
    assert hv.dtype == torch.float32 and torch.isfinite(hv).all()


@pytest.mark.parametrize("par", PARAMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_sharpness_matches_dense_hessian(arch, par):
    loss = "ce" if arch == "resnet" else "mse"
    model, x, y = problem(arch, par, loss=loss)
    theta = model.theta0 + 0.1 * torch.randn(model.num_params, generator=torch.Generator().manual_seed(5),
                                             dtype=torch.float64)  # off init, so the residual term matters too
    obj = NetObjective(model, x, y, loss)
    h = dense_hessian(obj, theta)
    assert torch.allclose(h, h.T, atol=1e-12)
    ev = torch.linalg.eigvalsh(h)
    expected = float(ev[ev.abs().argmax()])
    res = sharpness(obj.hessian_at(theta), model.num_params, tol=1e-10, max_iter=model.num_params)
    assert res.converged
    assert abs(res.value - expected) / abs(expected) < 1e-8
    v = torch.randn(model.num_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(obj.hessian_at(theta)(v), h @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_hvp_matches_finite_difference_of_gradient(arch):
    """Checks the double-backward formulas themselves (conv, softmax, layer_norm, gelu), not just consistency."""
    model, x, y = problem(arch, "standard")
    obj = NetObjective(model, x, y, "mse")
    theta = model.theta0
    v = torch.randn(model.num_params, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    v /= v.norm()
    h = 1e-5
    fd = (obj.loss_and_grad(theta + h * v)[1] - obj.loss_and_grad(theta - h * v)[1]) / (2 * h)
    hv = obj.hessian_at(theta)(v)
    assert (fd - hv).norm() / hv.norm() < 1e-7


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_gradient_and_hvp_equal_full_batch(arch):
    model, x, y = problem(arch, "mup", n=7)
    full = NetObjective(model, x, y, "mse")
    chunked = NetObjective(model, x, y, "mse", chunk_size=3)
    (l1, g1), (l2, g2) = full.loss_and_grad(model.theta0), chunked.loss_and_grad(model.theta0)
    assert torch.allclose(l1, l2, rtol=1e-13) and torch.allclose(g1, g2, rtol=1e-12, atol=1e-15)
    v = torch.ones_like(model.theta0)
    assert torch.allclose(full.hessian_at(model.theta0)(v), chunked.hessian_at(model.theta0)(v), rtol=1e-11, atol=1e-14)


def test_batchnorm_makes_the_loss_depend_on_the_batch_split():
    model, x, y = problem("resnet", "standard", n=8, norm="batchnorm")
    g_full = NetObjective(model, x, y, "mse").loss_and_grad(model.theta0)[1]
    g_chunk = NetObjective(model, x, y, "mse", chunk_size=4).loss_and_grad(model.theta0)[1]
    assert (g_full - g_chunk).norm() > 1e-3 * g_full.norm()


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
@pytest.mark.parametrize("spec", [
    {"arch": "cnn", "width": 4, "depth": 3},
    {"arch": "resnet", "width": 4, "depth": 2, "pool_every": 1},
    {"arch": "resnet", "width": 4, "depth": 1, "pool_every": 0, "bias": False},
    {"arch": "vit", "width": 8, "depth": 1, "heads": 2},
    {"arch": "vit", "width": 8, "depth": 1, "heads": 1, "pool": "cls", "parametrization": "mup"},
])
def test_image_sizes(spec, shape):
    model = build_model(spec, shape, 10, seed=0)
    out = model(model.theta0, torch.randn(2, *shape, dtype=torch.float64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_seeded_and_init_scale():
    a = build_model({**TINY["vit"], "init_scale": 2.0}, SHAPE, K, seed=3)
    b = build_model(TINY["vit"], SHAPE, K, seed=3)
    c = build_model(TINY["vit"], SHAPE, K, seed=4)
    assert torch.equal(a.theta0, 2 * b.theta0) and not torch.equal(b.theta0, c.theta0)


@pytest.mark.parametrize("spec, shape, match", [
    ({"arch": "vit", "patch_size": 3}, (1, 28, 28), r"model.patch_size \(3\) must divide the image side \(28×28\)"),
    ({"arch": "vit", "width": 10, "heads": 4}, (1, 8, 8), "model.heads"),
    ({"arch": "cnn", "parametrization": "muP"}, (1, 8, 8),
     "model.parametrization is 'muP'; allowed: 'standard', 'ntk', 'mup'"),
    ({"arch": "resnet", "parametrization": "sp"}, (1, 8, 8), "model.parametrization"),
    ({"arch": "resnet", "norm": "layernorm"}, (1, 8, 8), "model.norm is 'layernorm'; allowed: 'none', 'batchnorm'"),
    ({"arch": "vit", "pool": "max"}, (1, 8, 8), "model.pool"),
    ({"arch": "cnn", "activation": "swish"}, (1, 8, 8), "model.activation"),
    ({"arch": "cnn", "width": 0}, (1, 8, 8), "model.width"),
    ({"arch": "cnn"}, (20,), r"needs image inputs of shape \(C, H, W\)"),
    ({"arch": "fcn", "parametrization": "mu"}, (20,), "model.parametrization"),
])
def test_config_errors(spec, shape, match):
    with pytest.raises(ConfigError, match=match):
        build_model(spec, shape, 10, seed=0)


# ---- μP: what is width-independent at init ----------------------------------------------------------

def width_probe(par, width, seeds=(0, 1)):
    """Mean over seeds of (RMS f(θ₀), S(θ₀), RMS of f(θ₁) − f(θ₀) after one GD step with η = 0.1)."""
    n, d, k = 96, 32, 10
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, k, (n,), generator=gen), k).double()
    rows = []
    for seed in seeds:
        model = build_model({"arch": "fcn", "width": width, "depth": 2, "activation": "tanh",
                             "parametrization": par}, (d,), k, seed=seed)
        obj = NetObjective(model, x, y, "mse")
        theta = model.theta0
        f0 = model(theta, x)
        grad = obj.loss_and_grad(theta)[1]
        s = sharpness(obj.hessian_at(theta), model.num_params, tol=1e-5, max_iter=100).value
        df = model(theta - 0.1 * grad, x) - f0
        rows.append([f0.pow(2).mean().sqrt().item(), s, df.pow(2).mean().sqrt().item()])
    return torch.tensor(rows).mean(0).tolist()


def test_mup_sharpness_and_one_step_change_are_width_independent():
    """Genuine μP (see layer_scaling): S(θ₀) and the one-step change Δf agree within 20% for widths 64 and
    256, while the standard parametrisation's grow with width; f(θ₀) itself shrinks as 1/√width under μP."""
    (f64, s64, d64), (f256, s256, d256) = width_probe("mup", 64), width_probe("mup", 256)
    assert abs(s256 / s64 - 1) < 0.2
    assert abs(d256 / d64 - 1) < 0.2
    assert abs((f64 / f256) / math.sqrt(256 / 64) - 1) < 0.2  # f₀ = Θ(width^{-1/2}): part of μP

    (_, s64_sp, d64_sp), (_, s256_sp, d256_sp) = width_probe("standard", 64), width_probe("standard", 256)
    assert s256_sp / s64_sp > 1.3 and d256_sp / d64_sp > 1.3


def test_layer_scaling_formulas():
    n = 64
    assert layer_scaling("standard", "hidden", n, n) == (None, 1.0)
    assert layer_scaling("ntk", "input", 16, n) == (1.0, 0.25)
    std, m = layer_scaling("mup", "input", 16, n)
    assert math.isclose(std * m, 1 / 4)  # effective N(0, 1/fan_in)
    assert layer_scaling("mup", "hidden", n, n) == (1 / 8, 1.0)
    std, m = layer_scaling("mup", "output", n, n)
    assert math.isclose(std * m, 1 / n)  # effective variance 1/n²
