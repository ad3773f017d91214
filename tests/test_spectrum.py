"""The sharpness measures beyond max|λ| against exact references: the spectral density (SLQ) against the dense
spectrum of a tiny float64 net, adaptive sharpness on quadratics with closed forms, layer blocks against slices
of the dense Hessian."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from normsharp.adaptive_sharpness import average_case, worst_case
from normsharp.layer_sharpness import block_operator, layer_blocks, layer_sharpness
from normsharp.models import build_model
from normsharp.objective import NetObjective, Quadratic
from normsharp.sharpness_measures import LIST_COLUMNS, SCALAR_COLUMNS, enabled, measure, not_measured
from normsharp.spectrum import density, quadrature, slq


def tiny_net(seed=0, width=8, n=20, d=4, k=2, depth=2):
    """A tanh FCN on Gaussian inputs, MSE: P = 130 at the defaults, its dense Hessian and the objective at θ₀."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randn(n, k, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    model = build_model({"arch": "fcn", "width": width, "depth": depth, "activation": "tanh"}, (d,), k, seed=seed)
    obj = NetObjective(model, x, y, "mse")
    theta = model.theta0
    hess = torch.autograd.functional.hessian(lambda t: obj.loss_sum(obj.model(t, obj.x), obj.y) / obj.n, theta)
    return obj, model, theta, hess


@pytest.fixture(scope="module")
def net():
    return tiny_net()


# ---------------------------------------------------------------------------------------------------
# Spectral density by stochastic Lanczos quadrature


def test_quadrature_reproduces_the_probes_moments_up_to_degree_2m_minus_1(net):
    """Gauss quadrature with m nodes is exact for polynomials of degree ≤ 2m − 1: Σ τ²θ^k = vᵀH^k v."""
    obj, _, theta, hess = net
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = v / v.norm()
    m = 4
    nodes, weights = quadrature(obj.hessian_at(theta), v, m)
    assert len(nodes) == m and math.isclose(weights.sum(), 1.0, rel_tol=1e-12)
    power = v.clone()
    for k in range(2 * m):
        exact = float(v @ power)
        assert np.dot(weights, nodes**k) == pytest.approx(exact, rel=1e-7, abs=1e-12 * float(hess.norm()) ** k)
        power = hess @ power
    # degree 2m is not integrated exactly any more (the quadrature underestimates it for a PSD-dominated H)
    assert abs(np.dot(weights, nodes ** (2 * m)) - float(v @ power)) > 1e-6 * abs(float(v @ power))


def test_steps_at_least_p_give_the_dense_eigenvalues_as_nodes():
    obj, _, theta, hess = tiny_net(width=4, n=10, d=3, depth=1)  # P = 26
    eig = np.linalg.eigvalsh(hess.numpy())
    quad = slq(obj.hessian_at(theta), obj.dim, probes=3, steps=obj.dim + 5, seed=1)
    for nodes, weights in zip(quad.nodes, quad.weights):
        assert len(nodes) == obj.dim
        assert np.allclose(np.sort(nodes), eig, atol=1e-9 * np.abs(eig).max())
        assert math.isclose(sum(weights), 1.0, rel_tol=1e-12)
    assert quad.n_matvec == 3 * obj.dim


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_moments_estimate_trace_of_powers_within_their_standard_error(net, distribution):
    """(1/n_v) Σ τ²θ^k estimates tr(H^k)/P, k = 0..4, with m = 10 < P steps; the error is the probes' noise,
    checked against its exact standard deviation from H^k (Rademacher: 2(‖A‖_F² − Σ A_ii²)/P², Gaussian v = z/‖z‖:
    2(‖A‖_F² − (tr A)²/P)/(P(P + 2)))."""
    obj, _, theta, hess = net
    n_v, p = 200, obj.dim
    quad = slq(obj.hessian_at(theta), p, probes=n_v, steps=10, seed=2, distribution=distribution)
    assert quad.n_matvec == n_v * 10
    h = hess.numpy()
    a = np.eye(p)
    for k in range(5):
        target = np.trace(a) / p
        if distribution == "rademacher":
            var = 2 * (np.sum(a**2) - np.sum(np.diag(a) ** 2)) / p**2
        else:
            var = 2 * (np.sum(a**2) - np.trace(a) ** 2 / p) / (p * (p + 2))
        stderr = math.sqrt(var / n_v)
        assert abs(quad.moment(k) - target) <= 5 * stderr + 1e-10 * abs(target), k
        a = a @ h
    assert quad.moment(0) == pytest.approx(1.0, rel=1e-12)


def test_wasserstein_distance_to_the_dense_spectrum(net):
    """W1 between the SLQ measure (1/n_v) Σ τ² δ_θ and (1/P) Σ δ_λ: at most range·12/(2m − 1) plus the probe
    noise (Chen, Trogdon & Ubaru 2021), and it shrinks as m grows."""
    obj, _, theta, hess = net
    eig = np.linalg.eigvalsh(hess.numpy())
    spread = eig.max() - eig.min()
    distances = {}
    for m in (3, 10, obj.dim):
        quad = slq(obj.hessian_at(theta), obj.dim, probes=100, steps=m, seed=3)
        nodes, weights = np.concatenate(quad.nodes), np.concatenate(quad.weights)
        distances[m] = wasserstein_distance(nodes, eig, weights, None)
    assert distances[obj.dim] < distances[10] < distances[3]
    assert distances[10] <= spread * 12 / (2 * 10 - 1)
    assert distances[obj.dim] <= 0.02 * spread  # exact nodes: only the weights' noise is left


def test_density_is_a_normalised_mixture():
    t = np.linspace(-5, 10, 3001)  # 5.0 on the grid
    phi = density(t, [[0.0, 5.0], [1.0]], [[0.25, 0.75], [1.0]], width=0.1)
    assert np.trapezoid(phi, t) == pytest.approx(1.0, rel=1e-6)
    peak = 0.5 * 0.75 / (0.1 * math.sqrt(2 * math.pi))
    assert phi[np.argmin(abs(t - 5.0))] == pytest.approx(peak, rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# Adaptive sharpness on quadratics L(θ) = ½θᵀAθ − bᵀθ


def quadratic(d=6, seed=0, rank_one=False):
    gen = torch.Generator().manual_seed(seed)
    if rank_one:
        a_vec = torch.randn(d, generator=gen, dtype=torch.float64)
        a = torch.outer(a_vec, a_vec) + 0.01 * torch.eye(d, dtype=torch.float64)
    else:
        m = torch.randn(d, d, generator=gen, dtype=torch.float64)
        a = m @ m.T + 0.5 * torch.eye(d, dtype=torch.float64)
    theta_star = torch.randn(d, generator=gen, dtype=torch.float64) + 0.5
    return Quadratic(a, a @ theta_star), a, theta_star  # ∇L(θ*) = Aθ* − b = 0


def test_average_case_is_half_rho_squared_sum_a_ii_theta_i_squared_within_its_stderr():
    obj, a, _ = quadratic()
    theta = torch.randn(6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)  # not a minimum
    rho = 0.3
    exact = 0.5 * rho**2 * float((torch.diag(a) * theta**2).sum())  # the first-order term has mean 0
    avg = average_case(obj, theta, rho=rho, samples=4000, seed=1)
    assert avg.stderr > 0 and abs(avg.value - exact) <= 4 * avg.stderr
    assert avg.stderr < 0.1 * abs(exact)


def test_worst_case_l2_at_a_minimum_is_half_rho_squared_lambda_max_of_tat():
    obj, a, theta = quadratic()
    t = torch.diag(theta.abs())
    rho = 0.2
    exact = 0.5 * rho**2 * float(torch.linalg.eigvalsh(t @ a @ t)[-1])
    worst = worst_case(obj, theta, rho=rho, p=2, steps=200, step_size=1.0, seed=0)
    assert worst.value == pytest.approx(exact, rel=1e-6)
    assert float(worst.u.norm()) <= rho * (1 + 1e-12)
    assert worst.value <= exact * (1 + 1e-12)  # feasible: never above the maximum


def test_worst_case_linf_reaches_the_best_vertex():
    """ℓ∞: ½uᵀTATu is convex, its maximum over the box is at a vertex (all 2^d enumerated here); with A = aaᵀ + εI
    sign ascent reaches ±sign(Ta) from any start."""
    obj, a, theta = quadratic(rank_one=True)
    t = torch.diag(theta.abs())
    b = t @ a @ t
    rho = 0.1
    best = max(0.5 * float(u @ b @ u) for u in (rho * torch.tensor(s, dtype=torch.float64)
                                                for s in itertools.product((-1.0, 1.0), repeat=6)))
    worst = worst_case(obj, theta, rho=rho, p="inf", steps=10, seed=4)
    assert worst.value == pytest.approx(best, rel=1e-10)
    assert float(worst.u.abs().max()) <= rho


def test_adaptive_sharpness_is_invariant_to_rescaling_a_relu_layer():
    """Scaling a ReLU layer's weight and bias by α and the next weight by 1/α leaves f (and L) unchanged; the
    adaptive sharpness stays the same (same probes), max|λ| does not."""
    x = torch.randn(15, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randn(15, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = build_model({"arch": "fcn", "width": 5, "depth": 1, "activation": "relu"}, (3,), 1, seed=0)
    obj = NetObjective(model, x, y, "mse")
    theta = model.theta0
    views = model.unflatten(theta.clone())
    first, second = [n for n in model.names if n.endswith("weight")][:2]
    scaled = {n: v.clone() for n, v in views.items()}
    for n in scaled:
        if n.startswith(first.rpartition(".")[0] + "."):
            scaled[n] *= 4.0
    scaled[second] /= 4.0
    theta2 = torch.cat([scaled[n].reshape(-1) for n in model.names])
    assert float(obj.loss(theta2)) == pytest.approx(float(obj.loss(theta)), rel=1e-12)
    for kind in ("avg", "max"):
        if kind == "avg":
            v1, v2 = (average_case(obj, th, rho=0.05, samples=30, seed=2).value for th in (theta, theta2))
        else:
            v1, v2 = (worst_case(obj, th, rho=0.05, steps=10, seed=2).value for th in (theta, theta2))
        assert v2 == pytest.approx(v1, rel=1e-9)


# ---------------------------------------------------------------------------------------------------
# Largest eigenvalue of each layer's Hessian block


def test_layer_blocks_group_each_modules_tensors(net):
    _, model, _, _ = net
    blocks = layer_blocks(model.names, model.numels)
    assert [b[0] for b in blocks] == list(dict.fromkeys(n.rpartition(".")[0] for n in model.names))
    assert blocks[0][1] == 0 and blocks[-1][2] == model.num_params
    assert all(b1[2] == b2[1] for b1, b2 in zip(blocks, blocks[1:]))
    assert len(blocks) == 3  # 2 hidden layers and the head, each weight + bias
    assert layer_blocks(["w", "a.weight", "a.bias"], [2, 3, 1]) == [("θ", 0, 2), ("a", 2, 6)]


def test_layer_sharpness_matches_slices_of_the_dense_hessian(net):
    obj, model, theta, hess = net
    blocks = layer_blocks(model.names, model.numels)
    hvp = obj.hessian_at(theta)
    result = layer_sharpness(hvp, obj.dim, blocks, tol=1e-10, max_iter=300)
    assert result.names == [b[0] for b in blocks]
    for (_, start, stop), value in zip(blocks, result.values):
        ev = torch.linalg.eigvalsh(hess[start:stop, start:stop])
        ref = float(ev[ev.abs().argmax()])
        assert value == pytest.approx(ref, rel=1e-8)
        v = torch.randn(stop - start, dtype=torch.float64)
        assert torch.allclose(block_operator(hvp, obj.dim, start, stop)(v), hess[start:stop, start:stop] @ v)
    top = float(torch.linalg.eigvalsh(hess).abs().max())
    assert max(abs(v) for v in result.values) <= top * (1 + 1e-9)  # Cauchy interlacing


# ---------------------------------------------------------------------------------------------------
# The geometry entries of the evaluation job


def test_measure_writes_every_entry_and_only_what_is_on(net):
    obj, model, theta, _ = net
    off = {"tol": 1e-6, "max_iter": 200, "density": {"probes": 0, "steps": 5}, "layer_sharpness": False,
           "adaptive_sharpness": {"enabled": False}}
    assert not any(enabled(off).values())
    keys = set(SCALAR_COLUMNS) | set(LIST_COLUMNS) | {"density"}
    assert set(not_measured()) == keys
    on = {**off, "density": {"probes": 2, "steps": 5, "seed": 0, "distribution": "gaussian"},
          "layer_sharpness": True,
          "adaptive_sharpness": {"enabled": True, "rho": 0.05, "p": 2, "steps": 3, "step_size": 1.0, "samples": 4,
                                 "seed": 0}}
    out = measure(obj, model, theta, on, torch.float64, "cpu")
    assert set(out) == keys
    assert out["density_n_hvp"] == 10 and len(out["density"]["nodes"]) == 2 and out["density_seconds"] > 0
    assert len(out["layer_sharpness"]) == 3 and out["layer_sharpness_n_hvp"] > 0
    assert out["adaptive_sharpness_max"] >= 0 and math.isfinite(out["adaptive_sharpness_avg"])
    assert out["adaptive_sharpness_n_grad"] == 3
    nothing = measure(obj, model, theta, off, torch.float64, "cpu")
    assert nothing["density"] is None and math.isnan(nothing["adaptive_sharpness_max"])
    assert nothing["layer_sharpness"] == [] and nothing["density_n_hvp"] == 0
