"""Sharpness and spectra against dense references (float64)."""

import math

import pytest
import torch

from normsharp.data import load_data
from normsharp.eigen import hutchinson_trace, lanczos, power_iteration, sharpness
from normsharp.models import build_model
from normsharp.objective import NetObjective


def dense_hessian(obj: NetObjective, theta: torch.Tensor) -> torch.Tensor:
    """The full Hessian by torch.autograd.functional.hessian, independent of the HVP code."""
    return torch.autograd.functional.hessian(lambda t: obj.loss_sum(obj.model(t, obj.x), obj.y) / obj.n, theta)


def max_abs_eig(h: torch.Tensor) -> float:
    ev = torch.linalg.eigvalsh(h)
    return float(ev[ev.abs().argmax()])


def fcn_problem(seed, target_scale=1.0, loss="mse", width=16, n=20, d=6, k=3):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = build_model({"arch": "fcn", "width": width, "depth": 2, "activation": "tanh"}, (d,), k, seed=seed)
    if loss == "mse":
        y = target_scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    else:
        y = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))
    return NetObjective(model, x, y, loss), model.theta0


def digits_problem(n=100, width=24, loss="mse"):
    data = load_data({"name": "digits", "n_train": n}, loss)
    model = build_model({"arch": "fcn", "width": width, "depth": 2}, data.input_shape, data.output_dim, seed=0)
    return NetObjective(model, data.x_train, data.y_train, loss), model.theta0


@pytest.mark.parametrize(
    "make",
    [
        lambda: fcn_problem(seed=0),
        lambda: fcn_problem(seed=1, loss="ce"),
        lambda: digits_problem(),  # 2 514 parameters
        lambda: digits_problem(loss="ce"),
    ],
    ids=["fcn-mse", "fcn-ce", "digits-mse", "digits-ce"],
)
def test_sharpness_matches_dense_hessian(make):
    obj, theta = make()
    assert obj.dim <= 3000
    ref = max_abs_eig(dense_hessian(obj, theta))
    eig = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-9)
    assert eig.converged
    assert abs(eig.value - ref) <= 1e-8 * abs(ref)


def test_sharpness_keeps_the_sign_of_a_negative_dominant_eigenvalue():
    obj, theta = fcn_problem(seed=3, target_scale=100.0)  # large residuals: the indefinite term dominates
    h = dense_hessian(obj, theta)
    ref = max_abs_eig(h)
    assert ref < 0 and abs(ref) > float(torch.linalg.eigvalsh(h)[-1])
    eig = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-9)
    assert abs(eig.value - ref) <= 1e-8 * abs(ref)
    hv = dense_hessian(obj, theta) @ eig.vector  # the returned vector is the eigenvector
    assert torch.allclose(hv, eig.value * eig.vector, atol=1e-5 * abs(ref))


@pytest.mark.parametrize("tol", [1e-3, 1e-4, 1e-6])
def test_tol_is_the_relative_accuracy_of_the_eigenvalue(tol):
    """The stop rule promises |S − λ|/|λ| ≤ tol; its error estimate min(ρ, ρ²/δ)/|θ| must not be optimistic."""
    for obj, theta in (fcn_problem(seed=0), digits_problem(), digits_problem(loss="ce")):
        ref = max_abs_eig(dense_hessian(obj, theta))
        eig = sharpness(obj.hessian_at(theta), obj.dim, tol=tol)
        assert eig.converged and float(eig.error_bounds[0]) <= tol
        assert abs(eig.value - ref) <= float(eig.error_bounds[0]) * abs(ref)


def test_top_k_eigenvalues_match_dense():
    obj, theta = fcn_problem(seed=0)
    ev = torch.linalg.eigvalsh(dense_hessian(obj, theta))
    ref = ev[ev.abs().argsort(descending=True)][:4]
    eig = lanczos(obj.hessian_at(theta), obj.dim, k=4, tol=1e-8, max_iter=200)
    assert torch.allclose(eig.values, ref, rtol=1e-8)


def test_warm_start_needs_fewer_products():
    obj, theta = digits_problem()
    cold = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-4)
    warm = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-4, v0=cold.vector)
    assert warm.n_matvec < cold.n_matvec and math.isclose(warm.value, cold.value, rel_tol=2e-4)  # each within tol


def test_start_vector_is_seeded():
    obj, theta = digits_problem()
    a = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-3, seed=5)
    b = sharpness(obj.hessian_at(theta), obj.dim, tol=1e-3, seed=5)
    assert a.value == b.value and a.n_matvec == b.n_matvec


def test_power_iteration_and_trace_against_dense():
    obj, theta = fcn_problem(seed=0)
    h = dense_hessian(obj, theta)
    pi = power_iteration(obj.hessian_at(theta), obj.dim, tol=1e-9, max_iter=20000)
    assert math.isclose(pi.value, max_abs_eig(h), rel_tol=1e-6)
    est = hutchinson_trace(obj.hessian_at(theta), obj.dim, n_samples=400, seed=1)
    assert abs(est.value - float(torch.trace(h))) < 4 * est.stderr


def test_chunked_gradient_and_hvp_equal_one_batch():
    obj, theta = digits_problem(n=100)
    chunked = NetObjective(obj.model, obj.x, obj.y, "mse", chunk_size=32)
    l1, g1 = obj.loss_and_grad(theta)
    l2, g2 = chunked.loss_and_grad(theta)
    assert torch.allclose(l1, l2, rtol=1e-13) and torch.allclose(g1, g2, rtol=1e-11, atol=1e-15)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(obj.hessian_at(theta)(v), chunked.hessian_at(theta)(v), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("chunk_size", [None, 32])
def test_in_place_gradient_follows_theta_and_equals_loss_and_grad(chunk_size):
    """GD's in-place path sees every in-place update of θ, survives rebinding by an HVP, same bits."""
    base, theta0 = digits_problem(n=100)
    obj = NetObjective(base.model, base.x, base.y, "mse", chunk_size=chunk_size)
    theta = theta0.clone()
    step = obj.in_place_gradient(theta)
    for _ in range(3):
        loss, grad = step()
        ref_loss, ref_grad = obj.loss_and_grad(theta.clone())  # rebinds the module to other tensors
        assert torch.equal(loss, ref_loss) and torch.equal(grad, ref_grad)
        obj.hessian_at(theta)(grad)  # rebinds too
        theta.add_(grad, alpha=-0.1)
