"""The norms beyond ℓ1/ℓ2 (per layer, spectral-norm product, path norm) and the averaged and continued end points
(the "is the growth real?" measures), against explicit enumeration and closed forms in float64."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from normsharp import end_points, parameter_norms
from normsharp.flow import run_gradient_flow
from normsharp.models import build_model
from normsharp.objective import Quadratic
from normsharp.stages import end_points_wanted


def fcn(parametrization="standard", bias=True, depth=2, width=3, d=4, k=2, seed=0):
    model = build_model({"arch": "fcn", "width": width, "depth": depth, "activation": "tanh", "bias": bias,
                         "parametrization": parametrization}, (d,), k, seed=seed)
    theta = torch.randn(model.num_params, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    return model, theta


def applied_layers(model, theta):
    """(m·W, m_b·b) of each linear layer, read off the module by hand."""
    tensors = model.unflatten(theta)
    layers = [m for m in model.module.net if hasattr(m, "multiplier")]
    names = [n for n, m in model.module.net.named_children() if hasattr(m, "multiplier")]
    out = []
    for name, layer in zip(names, layers):
        b = tensors.get(f"net.{name}.bias")
        out.append((tensors[f"net.{name}.weight"].numpy() * layer.multiplier,
                    None if b is None else b.numpy() * layer.bias_multiplier))
    return out


def enumerated_path_norm(layers, d):
    """(Σ over every path of Π w_e²)^{1/2} by listing the paths: from input unit i, or from the bias unit of
    layer s (an edge of weight b_s[j] into unit j of layer s), through one unit per later layer to an output."""
    widths = [d] + [w.shape[0] for w, _ in layers]
    total = 0.0
    for units in itertools.product(*map(range, widths)):  # input unit, then one unit per layer
        total += math.prod(w[units[i + 1], units[i]] ** 2 for i, (w, _) in enumerate(layers))
    for s, (_, b) in enumerate(layers, start=1):
        if b is None:
            continue
        for units in itertools.product(*map(range, widths[s:])):  # unit j_s of layer s, …, output unit
            total += b[units[0]] ** 2 * math.prod(layers[i][0][units[i - s + 1], units[i - s]] ** 2
                                                  for i in range(s, len(layers)))
    return math.sqrt(total)


@pytest.mark.parametrize("parametrization,bias,depth", [("standard", True, 2), ("mup", True, 2),
                                                        ("ntk", False, 1), ("standard", True, 3)])
def test_path_norm_equals_the_sum_over_enumerated_paths(parametrization, bias, depth):
    model, theta = fcn(parametrization, bias, depth)
    exact = enumerated_path_norm(applied_layers(model, theta), 4)
    assert parameter_norms.path_norm(model, theta) == pytest.approx(exact, rel=1e-12)


def test_path_norm_of_a_hand_written_net():
    """1 input → 2 hidden (w = (1, 2), b = (3, 0)) → 1 output (v = (1, −1), c = 2): the paths are
    x→h1→y: 1·1, x→h2→y: 4·1, b1→h1→y: 9·1, b2→h2→y: 0, c→y: 4; φ₂ = √18."""
    model = build_model({"arch": "fcn", "width": 2, "depth": 1, "activation": "tanh"}, (1,), 1, seed=0)
    theta = torch.tensor([1.0, 2.0, 3.0, 0.0, 1.0, -1.0, 2.0], dtype=torch.float64)
    assert model.names == ["net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"]
    assert parameter_norms.path_norm(model, theta) == pytest.approx(math.sqrt(18.0), rel=1e-15)
    assert parameter_norms.spectral_norm_product(model, theta) == pytest.approx(math.sqrt(5) * math.sqrt(2))


def test_spectral_norm_product_is_the_product_of_the_applied_weights_largest_singular_values():
    for parametrization in ("standard", "mup"):
        model, theta = fcn(parametrization, depth=3)
        exact = math.prod(np.linalg.svd(w, compute_uv=False)[0] for w, _ in applied_layers(model, theta))
        assert parameter_norms.spectral_norm_product(model, theta) == pytest.approx(exact, rel=1e-12)
    model, theta = fcn()
    assert math.isnan(parameter_norms.spectral_norm_product(model, theta * math.inf))


def test_per_layer_norms_are_the_blocks_of_theta():
    model, theta = fcn(depth=2)
    out = parameter_norms.layer_norms(model, theta)
    assert out["layer_names"] == ["net.1", "net.3", "net.5"]
    sizes = [4 * 3 + 3, 3 * 3 + 3, 3 * 2 + 2]
    blocks = theta.split(sizes)
    assert out["layer_l1_norms"] == pytest.approx([float(b.abs().sum()) for b in blocks], rel=1e-14)
    assert out["layer_l2_norms"] == pytest.approx([float(b.norm()) for b in blocks], rel=1e-14)
    assert sum(out["layer_l1_norms"]) == pytest.approx(float(theta.abs().sum()), rel=1e-14)
    assert math.hypot(*out["layer_l2_norms"]) == pytest.approx(float(theta.norm()), rel=1e-14)


@pytest.mark.parametrize("variant", ["shared", "uv"])
def test_diagonal_linear_network_path_and_spectral_norms(variant):
    depth = 3
    model = build_model({"arch": "diagonal_linear", "depth": depth, "variant": variant, "init_scale": 0.5},
                        (4,), 1, seed=0)
    theta = torch.tensor([0.5, -2.0, 1.0, 0.1] * (2 if variant == "uv" else 1), dtype=torch.float64)
    if variant == "uv":
        theta[4:] = torch.tensor([3.0, 0.0, -1.0, 0.2], dtype=torch.float64)
    # φ₂² = Σ over the chains x_i → w_i (D times) → output of Π w², the read-out weight ±1
    assert parameter_norms.path_norm(model, theta) == pytest.approx(float(theta.pow(2 * depth).sum().sqrt()),
                                                                    rel=1e-15)
    assert parameter_norms.spectral_norm_product(model, theta) == pytest.approx(float(theta.abs().max()) ** depth)
    # the layered picture: the squared network on x = 1 is Σ_i β-paths; with v = 0 and D = 1 it is ‖w‖₂
    one = build_model({"arch": "diagonal_linear", "depth": 1}, (4,), 1, seed=0)
    assert parameter_norms.path_norm(one, theta[:4]) == pytest.approx(float(theta[:4].norm()))


def dense_operator(apply, shape) -> np.ndarray:
    """The matrix of a linear map on R^shape, column j = apply(e_j)."""
    dim = math.prod(shape)
    eye = torch.eye(dim, dtype=torch.float64).reshape(dim, *shape)
    return torch.stack([apply(e[None]).reshape(-1) for e in eye], dim=1).numpy()


@pytest.mark.parametrize("parametrization", ["standard", "mup"])
def test_spectral_norm_product_of_a_cnn_uses_each_convolutions_operator_norm(parametrization):
    """2 conv layers on 2×5×5 images (the second on the pooled 3×2×2), head: every factor against the SVD of the
    dense matrix of the map the layer applies, zero padding included; the reshaped kernel's norm is another."""
    from torch.nn import functional as F

    model = build_model({"arch": "cnn", "width": 3, "depth": 2, "parametrization": parametrization}, (2, 5, 5), 4,
                        seed=0)
    theta = torch.randn(model.num_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tensors, convs = model.unflatten(theta), [model.module.features[0], model.module.features[3]]
    exact = []
    for name, conv, shape in (("features.0", convs[0], (2, 5, 5)), ("features.3", convs[1], (3, 2, 2))):
        w = tensors[f"{name}.weight"] * conv.multiplier
        matrix = dense_operator(lambda x, w=w: F.conv2d(x, w, padding=1), shape)
        exact.append(np.linalg.svd(matrix, compute_uv=False)[0])
        assert exact[-1] != pytest.approx(np.linalg.svd(w.reshape(w.shape[0], -1).numpy(), compute_uv=False)[0],
                                          rel=1e-3)
    head = tensors["head.weight"].numpy() * model.module.head.multiplier
    exact.append(np.linalg.svd(head, compute_uv=False)[0])
    assert parameter_norms._conv_operator_norms(model, theta) == pytest.approx(exact[:2], rel=1e-10)
    assert parameter_norms.spectral_norm_product(model, theta) == pytest.approx(math.prod(exact), rel=1e-10)
    assert math.isnan(parameter_norms.spectral_norm_product(model, theta * math.inf))
    single = parameter_norms.spectral_norm_product(model, theta.float())  # a float32 run: θ's dtype throughout
    assert single == pytest.approx(math.prod(exact), rel=1e-5)


def test_path_and_spectral_norms_are_nan_where_not_defined():
    model = build_model({"arch": "cnn", "width": 2, "depth": 1}, (1, 4, 4), 2, seed=0)
    out = parameter_norms.measure(model, model.theta0)
    assert math.isnan(out["path_norm"]) and out["spectral_norm_product"] > 0
    assert out["layer_names"] == ["features.0", "head"] and len(out["layer_l1_norms"]) == 2
    for arch in ("resnet", "vit"):
        model = build_model({"arch": arch, "width": 4, "depth": 1, "heads": 2}, (1, 4, 4), 2, seed=0)
        out = parameter_norms.measure(model, model.theta0)
        assert math.isnan(out["path_norm"]) and math.isnan(out["spectral_norm_product"])


# ---------------------------------------------------------------------------------------------------
# The averaged and continued end points


class Centred(Quadratic):
    """L = ½(θ − θ*)ᵀA(θ − θ*): Quadratic(A, Aθ*) plus ½θ*ᵀAθ*, so that min L = 0 as a training loss."""

    def __init__(self, a, star):
        super().__init__(a, a @ star)
        self.floor = 0.5 * star @ (a @ star)

    def loss(self, theta):
        return super().loss(theta) + self.floor

    def loss_and_grad(self, theta):
        loss, grad = super().loss_and_grad(theta)
        return loss + self.floor, grad


def quadratic(seed=0, d=5):
    """L = ½(θ − θ*)ᵀA(θ − θ*), A SPD with eigenvalues 1..d and eigenvectors q (columns)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eigenvalues = torch.arange(1, d + 1, dtype=torch.float64)
    a = q @ torch.diag(eigenvalues) @ q.T
    star = torch.randn(d, generator=g, dtype=torch.float64)
    return Centred(a, star), a, q, eigenvalues, star


def test_the_average_of_a_period_two_oscillation_is_its_centre():
    """η = 2/λ_max: GD flips the top eigen-direction's offset every step (period 2 about θ*) while the others
    decay; the window's mean is θ* + (1/W)(ηA)⁻¹(I − (I − ηA)^W)(θ_K − θ*), exactly θ* along the top direction."""
    obj, a, q, lam, star = quadratic()
    eta = 2.0 / float(lam.max())
    theta = star + q[:, -1] * 0.3 + q[:, 0] * 0.1
    for window in (2, 10, 101):
        avg = end_points.averaged(obj, theta, eta, window)
        m = torch.eye(5, dtype=torch.float64) - eta * a
        exact = star + torch.linalg.solve(eta * a, (torch.eye(5, dtype=torch.float64)
                                                    - torch.linalg.matrix_power(m, window)) @ (theta - star)) / window
        assert avg.finite and avg.n_grad == window - 1
        assert torch.allclose(avg.theta, exact, rtol=0, atol=1e-13)
    # only the oscillating direction: an even window lands on θ*, an odd one 1/W of the offset away
    theta = star + q[:, -1] * 0.3
    assert torch.allclose(end_points.averaged(obj, theta, eta, 100).theta, star, rtol=0, atol=1e-13)
    assert torch.allclose(end_points.averaged(obj, theta, eta, 101).theta, star + q[:, -1] * 0.3 / 101,
                          rtol=0, atol=1e-13)


def test_the_averaged_point_of_a_diverging_continuation_is_not_finite():
    obj, _, q, lam, star = quadratic()
    avg = end_points.averaged(obj, star + q[:, -1], 2.5 / float(lam.max()), 5000)
    assert not avg.finite and avg.n_grad < 4999


def test_the_continued_point_is_the_flow_on_a_quadratic():
    """θ(t) = θ* + e^{−At}(θ_K − θ*) at the t where L(θ(t)) − L* falls to the threshold: both checked."""
    obj, a, q, lam, star = quadratic(seed=1)
    theta = star + q @ torch.tensor([0.2, -0.1, 0.3, 0.05, 0.4], dtype=torch.float64)
    threshold = 1e-4
    gf = {"method": "rkc", "tol": 1e-10, "sharpness_tol": 1e-8, "divergence_factor": 1e3}
    flow = end_points.continued(obj, theta, threshold, gf, 100000)
    assert flow.status == "converged"
    exact = star + torch.linalg.matrix_exp(-a * flow.time) @ (theta - star)
    assert torch.allclose(flow.theta, exact, rtol=0, atol=1e-7)
    c = q.T @ (theta - star)  # L(θ(t)) − L* = ½ Σ λ_i c_i² e^{−2λ_i t}; its root by bisection
    excess = lambda t: float(0.5 * (lam * c**2 * torch.exp(-2 * lam * t)).sum()) - 1e-4  # noqa: E731
    lo, hi = 0.0, 100.0
    for _ in range(200):
        lo, hi = ((lo + hi) / 2, hi) if excess((lo + hi) / 2) > 0 else (lo, (lo + hi) / 2)
    assert flow.time == pytest.approx(hi, rel=1e-5)
    # rk4 with the same settings shape lands on the same point
    rk4 = end_points.continued(obj, theta, threshold, {**gf, "method": "rk4", "alpha": 0.1, "sharpness_every": 1},
                               100000)
    assert float((rk4.theta - flow.theta).norm()) < 1e-3 * float((theta - star).norm())


def gd_result(**more):
    return {"method": "gd", "status": "converged", "eta": 2.0, "eta_c": 1.0, "optimizer": "gd",
            "optimizer_settings": json.dumps({"name": "gd", "l2": 0.0, "decoupled_weight_decay": 0.0}), **more}


def test_which_runs_are_measured():
    on = {"end_points": {"enabled": True}}
    assert end_points_wanted(on, gd_result())
    assert end_points_wanted(on, gd_result(eta=1.0))  # η = η_c is 'eos'
    assert not end_points_wanted({"end_points": {"enabled": False}}, gd_result())
    assert not end_points_wanted({}, gd_result())
    assert not end_points_wanted(on, gd_result(eta=0.5))
    assert not end_points_wanted(on, gd_result(status="diverged"))
    assert not end_points_wanted(on, {"method": "gf", "status": "converged", "eta": math.nan, "eta_c": 1.0})
    assert not end_points_wanted(on, gd_result(optimizer_settings=json.dumps({"name": "momentum", "beta": 0.9})))
    assert not end_points_wanted(on, gd_result(optimizer_settings=json.dumps({"name": "gd", "l2": 0.01})))
    old = gd_result()
    del old["optimizer_settings"]  # a result.json from before the optimisers: plain GD
    assert end_points_wanted(on, old)


def test_measure_records_both_points_with_their_cost():
    obj, a, q, lam, star = quadratic(seed=2)
    eta = 2.0 / float(lam.max())
    theta = star + q[:, -1] * 0.3
    settings = {"tol": 1e-10, "max_iter": 50, "end_points": {"window": 100, "continue_factor": 0.1,
                                                             "max_time_factor": 10, "max_steps": 100000}}
    gf = {"method": "rkc", "tol": 1e-10, "sharpness_tol": 1e-8, "divergence_factor": 1e3}
    eps = float(obj.loss(theta))  # = ½·5·0.3², the run's ε
    out = end_points.measure(obj, theta, eta, 100, eps, settings, gf, test_loss=lambda t: -1.0)  # K = 100 steps
    assert set(out) == set(end_points.SCALAR_COLUMNS)
    assert out["avg_sharpness"] == pytest.approx(5.0, rel=1e-9)
    assert out["avg_l1_norm"] == pytest.approx(float(star.abs().sum()), rel=1e-12)
    assert abs(out["avg_train_loss"]) < 1e-14 and out["avg_test_loss"] == -1.0
    assert out["avg_dist_to_end"] == pytest.approx(0.3, rel=1e-12)
    assert out["avg_n_grad"] == 99 and out["avg_n_hvp"] > 0 and out["avg_seconds"] > 0
    # the flow along the top direction alone: offset 0.3·e^{−5t}, stopped at ½·5·(0.3 e^{−5t})² = 0.1·ε
    assert out["cont_status"] == "converged" and out["cont_time"] == pytest.approx(math.log(10) / 10, rel=1e-5)
    assert out["cont_dist_to_end"] == pytest.approx(0.3 * (1 - 10 ** -0.5), rel=1e-5)
    assert 0.099 * eps < out["cont_train_loss"] < 0.1 * eps
    assert out["cont_n_grad"] > 0 and out["cont_n_hvp"] > 0
    assert end_points.not_measured()["cont_status"] is None and math.isnan(end_points.not_measured()["avg_l1_norm"])

    # capped at flow time max_time_factor·K·η = 0.1 · 1 · 0.4 = 0.04, before L gets to 0.1 ε (t = ln 10 / 10)
    capped = end_points.measure(obj, theta, eta, 1, eps, {**settings, "end_points": {
        **settings["end_points"], "max_time_factor": 0.1}}, gf, test_loss=lambda t: -1.0)
    cap = 0.1 * 1 * eta
    assert capped["cont_status"] == "max_time" and cap <= capped["cont_time"] < 2 * cap
    t = capped["cont_time"]  # the point reached: offset 0.3·e^{−5t}
    assert capped["cont_dist_to_end"] == pytest.approx(0.3 * (1 - math.exp(-5 * t)), rel=1e-6)
    assert capped["cont_train_loss"] == pytest.approx(0.5 * 5 * (0.3 * math.exp(-5 * t)) ** 2, rel=1e-6)


def test_run_gradient_flow_is_what_continued_calls():
    """continued() is the flow of normsharp.flow with the setup's settings, nothing of its own."""
    obj, _, q, _, star = quadratic()
    theta = star + q[:, 2]
    gf = {"method": "rk4", "alpha": 0.5, "sharpness_every": 3, "sharpness_tol": 1e-6, "divergence_factor": 1e3,
          "tol": 1e-7, "max_steps": 1, "test_every": 5, "checkpoint_every": 10}  # the last three are not used
    target = 1e-3
    mine = end_points.continued(obj, theta, target, gf, 5000)
    direct = run_gradient_flow(obj, theta, loss_threshold=target, log_every=10**9, max_steps=5000,
                               **{k: v for k, v in gf.items() if k in end_points.FLOW_KEYS})
    assert torch.equal(mine.theta, direct.theta) and mine.steps == direct.steps and mine.status == "converged"
    capped = end_points.continued(obj, theta, target, gf, 3)
    assert capped.status == "max_steps" and capped.steps == 3
    for method in ("rk4", "rkc"):  # the time cap stops either integrator at its first step reaching it
        timed = end_points.continued(obj, theta, target, {**gf, "method": method}, 5000, max_time=0.5)
        assert timed.status == "max_time" and 0.5 <= timed.time and timed.time < mine.time
