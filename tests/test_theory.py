"""The diagonal linear network counter-example (normsharp.theory) against references outside it:
autograd Hessians, brute-force scans of M, scipy's constrained optimiser, the library's gradient flow
and GD, and a tiny-step numpy RK4 integration of the flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from normsharp import theory
from normsharp.architectures import DiagonalLinear
from normsharp.dynamics import run_gd
from normsharp.errors import ConfigError
from normsharp.flow import run_gradient_flow
from normsharp.models import FlatModel, build_model
from normsharp.objective import NetObjective

torch.set_num_threads(1)

INST = theory.INSTANCES


def _random_zero_loss_w(inst, rng, signs: bool) -> np.ndarray:
    """A random w with ⟨w^{⊙D}, x⟩ = y: Dirichlet direction in β ≥ 0, rescaled onto the hyperplane."""
    beta = rng.dirichlet(np.ones(inst.d))
    beta *= inst.y / float(beta @ inst.x)
    w = beta ** (1.0 / inst.depth)
    if signs and inst.depth % 2 == 0:
        w *= rng.choice([-1.0, 1.0], size=inst.d)
    return w


def _autograd_hessian(w: np.ndarray, inst) -> torch.Tensor:
    x = torch.tensor(inst.x)

    def loss(wt):
        return 0.5 * ((wt**inst.depth) @ x - inst.y) ** 2

    return torch.autograd.functional.hessian(loss, torch.tensor(w))


# --------------------------------------------------------------------------------------- sharpness


@pytest.mark.parametrize("name", sorted(INST))
def test_sharpness_formula_matches_dense_hessian_on_M(name):
    inst = INST[name]
    rng = np.random.default_rng(1)
    for _ in range(10):
        w = _random_zero_loss_w(inst, rng, signs=True)
        top = float(torch.linalg.eigvalsh(_autograd_hessian(w, inst)).abs().max())
        beta = np.abs(w) ** inst.depth
        assert theory.loss(w, inst) < 1e-28
        assert abs(theory.sharpness(beta, inst) - top) <= 1e-10 * top
        assert abs(theory.sharpness_of_w(w, inst) - top) <= 1e-10 * top


@pytest.mark.parametrize("name", sorted(INST))
def test_closed_form_hessian_off_M(name):
    inst = INST[name]
    rng = np.random.default_rng(2)
    w = rng.uniform(0.2, 1.0, inst.d)  # a point with loss > 0
    assert theory.loss(w, inst) > 1e-4
    ref = _autograd_hessian(w, inst).numpy()
    assert np.abs(theory.hessian(w, inst) - ref).max() <= 1e-12 * np.abs(ref).max()


def test_library_objective_is_the_theory_loss():
    inst = INST["d5"]
    raw = theory.single_point_raw({"instance": "d5"})
    model = build_model({"arch": "diagonal_linear", "depth": 2, "variant": "shared", "init_scale": 0.3}, (5,), 1, 0)
    obj = NetObjective(model, torch.tensor(raw.x_train), torch.tensor(raw.t_train), "mse")
    w = np.random.default_rng(3).uniform(0.1, 0.9, 5)
    assert float(obj.loss(torch.tensor(w))) == pytest.approx(theory.loss(w, inst), rel=1e-14)


# --------------------------------------------------------------------------------------- minimisers


def _scan_d2(inst, fn, num=200_001):
    """argmin of fn over M (d = 2) by a dense β_1 scan plus bounded Brent refinement around the best node.

    ``fn`` maps an array of β_1 values to an array of values (vectorised for the scan)."""
    b_max = inst.y / inst.x[0]
    grid = np.linspace(0.0, b_max, num)
    vals = fn(grid)
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    res = minimize_scalar(lambda b: float(fn(np.array([b]))[0]), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-13})
    return grid[i] if vals[i] <= res.fun else res.x


@pytest.mark.parametrize("name", [n for n in sorted(INST) if INST[n].d == 2])
def test_d2_minimisers_match_brute_force_scan(name):
    inst = INST[name]
    D, x, y = inst.depth, inst.x, inst.y

    def on_m(b1):  # independent of the module: rows β on M, w = β^{1/D}
        beta = np.stack([b1, (y - x[0] * b1) / x[1]], axis=1)
        return beta, np.clip(beta, 0, None) ** (1.0 / D)

    def norm_sq(b1):
        return np.sum(on_m(b1)[1] ** 2, axis=1)

    def sharp(b1):  # ‖∇_w f‖² with ∇_w f = D w^{D−1} ⊙ x
        return np.sum((D * on_m(b1)[1] ** (D - 1) * x) ** 2, axis=1)

    def gen(b1):
        diff = on_m(b1)[0] - inst.beta_star
        return np.einsum("ni,ij,nj->n", diff, inst.sigma, diff)

    m = theory.minimisers(inst)
    for fn, found in ((norm_sq, m.norm), (sharp, m.sharpness), (gen, m.generalisation)):
        b1 = _scan_d2(inst, fn)
        beta = on_m(np.array([b1]))[0][0]
        assert np.abs(beta - found.beta).max() < 1e-6, (fn.__name__, beta, found.beta)


@pytest.mark.parametrize("name", sorted(INST))
def test_minimisers_match_scipy_and_random_points(name):
    inst = INST[name]
    m = theory.minimisers(inst)
    cons = [{"type": "eq", "fun": lambda b: b @ inst.x - inst.y, "jac": lambda b: inst.x}]
    bounds = [(0.0, None)] * inst.d

    def gen(b):
        return (b - inst.beta_star) @ inst.sigma @ (b - inst.beta_star)

    start = np.full(inst.d, inst.y / inst.x.sum())
    res = minimize(gen, start, jac=lambda b: 2 * inst.sigma @ (b - inst.beta_star), method="SLSQP",
                   bounds=bounds, constraints=cons, options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    assert np.abs(res.x - m.generalisation.beta).max() < 1e-6
    # every minimiser is on M, and no random point of M beats it
    rng = np.random.default_rng(4)
    samples = []
    for _ in range(2000):
        beta = rng.dirichlet(np.full(inst.d, 0.5))
        samples.append(beta * inst.y / float(beta @ inst.x))
    checks = ((m.norm, lambda b: theory.l2_norm_sq(b, inst.depth)),
              (m.sharpness, lambda b: theory.sharpness(b, inst)),
              (m.generalisation, lambda b: theory.generalisation_error(b, inst)))
    for p, fn in checks:
        assert abs(p.beta @ inst.x - inst.y) < 1e-12 and p.beta.min() >= 0 and p.train_loss < 1e-24
        best = fn(p.beta)
        assert all(fn(b) >= best - 1e-12 for b in samples)


@pytest.mark.parametrize("name", sorted(INST))
def test_shipped_instances_three_distinct_minimisers_and_generalisation_in_between(name):
    inst = INST[name]
    m = theory.minimisers(inst)
    n, s, g = m.norm, m.sharpness, m.generalisation
    assert m.distinct and m.between
    for a, b in ((n, s), (n, g), (s, g)):
        assert np.abs(a.beta - b.beta).max() > 1e-3
    # strictly between in both objectives
    assert n.l2_norm < g.l2_norm < s.l2_norm
    assert s.sharpness < g.sharpness < n.sharpness
    assert 0 < m.t_norm < 1 and 0 < m.t_sharp < 1
    # and better for generalisation than either bias alone
    assert g.gen_error < min(n.gen_error, s.gen_error) - 1e-3
    if inst.d == 2:  # on the arc of M from β_N to β_S, strictly inside
        assert 0 < m.position < 1
        lo, hi = sorted((n.beta[0], s.beta[0]))
        assert lo < g.beta[0] < hi


def test_markdown_table_lists_every_instance():
    table = theory.markdown_table()
    for name in INST:
        assert table.count(f"| {name} |") == 3
    assert "True" in table and "False" not in table


# --------------------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("depth", [2, 3])
def test_gradient_flow_conserves_uv_invariant(depth):
    """β = u^{⊙D} − v^{⊙D}: du/dt = −g D u^{D−1}, dv/dt = g D v^{D−1} (g = ∂L/∂β),
    so u ⊙ v (D = 2) and u^{2−D} + v^{2−D} (D > 2) are constant along the flow."""
    gen = torch.Generator().manual_seed(0)
    d, n = 5, 3 if depth == 2 else 1
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = FlatModel(DiagonalLinear(d, depth, "uv", 1.0))
    theta0 = 0.3 + torch.rand(2 * d, generator=gen, dtype=torch.float64)
    obj = NetObjective(model, x, y, "mse")
    res = run_gradient_flow(obj, theta0, loss_threshold=1e-10, max_steps=20_000, method="rk4", alpha=0.2)
    assert res.status == "converged"

    def invariant(theta):
        u, v = theta.split(d)
        return u * v if depth == 2 else u ** (2 - depth) + v ** (2 - depth)

    inv0, inv1 = invariant(theta0), invariant(res.theta)
    assert float(((inv1 - inv0).abs() / inv0.abs()).max()) < 1e-6
    assert float((res.theta - theta0).abs().max()) > 1e-2  # the flow did move


def test_gradient_flow_limit_formula_against_tiny_step_rk4():
    inst = INST["d2"]
    x, y, alpha = inst.x, inst.y, 0.1

    def grad(w):
        return ((w * w) @ x - y) * 2 * w * x

    w, h = np.full(2, alpha), 5e-3
    for _ in range(20_000):
        k1 = -grad(w)
        k2 = -grad(w + h / 2 * k1)
        k3 = -grad(w + h / 2 * k2)
        k4 = -grad(w + h * k3)
        w = w + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert np.abs(w * w - theory.gradient_flow_limit(inst, alpha).beta).max() < 1e-9


@pytest.mark.parametrize("name", ["d2", "d2-depth3", "d5"])
def test_library_gradient_flow_ends_at_closed_form_limit(name):
    inst = INST[name]
    model = FlatModel(DiagonalLinear(inst.d, inst.depth, "shared", 0.1))
    obj = NetObjective(model, torch.tensor(inst.x[None]), torch.tensor([[inst.y]]), "mse")
    res = run_gradient_flow(obj, model.theta0, loss_threshold=1e-16, max_steps=5000, method="rk4", alpha=0.1)
    assert res.status == "converged"
    beta = theory.beta_of_theta(res.theta, inst.depth, "shared")
    assert np.abs(beta - theory.gradient_flow_limit(inst, 0.1).beta).max() < 2e-6


# Recommended pipeline setting for config/experiments/diagonal-linear.yaml (numbers in the report).
GD_ALPHA, GD_EPS = 0.1, 1e-8
GD_RELATIVE_ETAS = [0.5, 0.8, 1.1, 1.2, 1.25, 1.3, 1.4, 1.6, 1.8]


def test_gd_step_size_moves_end_point_from_norm_to_sharpness_minimiser():
    """GD from w₀ = α·1 on the d = 2 instance: every end point is on M; beyond η_c it sits at the edge of
    stability (S ≈ 2/η), η sweeps it from near β_N toward β_S, and G is minimised strictly inside the grid."""
    inst = INST["d2"]
    raw = theory.single_point_raw({"instance": "d2"})
    model = build_model({"arch": "diagonal_linear", "depth": 2, "variant": "shared", "init_scale": GD_ALPHA},
                        (2,), 1, 0)
    obj = NetObjective(model, torch.tensor(raw.x_train), torch.tensor(raw.t_train), "mse")
    flow = run_gradient_flow(obj, model.theta0, loss_threshold=GD_EPS, max_steps=5000, method="rk4", alpha=0.5)
    assert flow.status == "converged"
    eta_c = flow.eta_c
    m = theory.minimisers(inst)
    assert 2.0 / m.norm.sharpness < eta_c < m.eta_star < 2.0 / m.sharpness.sharpness

    rows = []
    for rel in GD_RELATIVE_ETAS:
        eta = rel * eta_c
        res = run_gd(obj, model.theta0, eta, loss_threshold=GD_EPS, max_steps=5000)
        assert res.status == "converged", (rel, res.status)
        w = res.theta.numpy()
        beta = theory.beta_of_theta(res.theta, 2, "shared")
        assert theory.loss(w, inst) < GD_EPS  # on M up to ε
        s = theory.sharpness_of_w(w, inst)
        assert s * eta / 2 <= 1.01  # stable end point: S ≲ 2/η
        if rel > 1:
            assert s * eta / 2 >= 0.95  # edge of stability: S ≈ 2/η, not the flow's sharpness
            eos = theory.eos_point(inst, eta)
            assert abs(beta[0] - eos.beta[0]) < 0.05
        rows.append((rel, beta, theory.generalisation_error(beta, inst)))

    b1 = np.array([r[1][0] for r in rows])
    gens = np.array([r[2] for r in rows])
    flow_beta = theory.gradient_flow_limit(inst, GD_ALPHA).beta
    assert abs(b1[0] - flow_beta[0]) < 0.01  # small η: the flow's end point, near β_N
    assert abs(b1[0] - m.norm.beta[0]) < 0.05
    eos_part = b1[[i for i, r in enumerate(GD_RELATIVE_ETAS) if r > 1]]
    assert np.all(np.diff(eos_part) < 0)  # larger η → further toward β_S = (0, 1)
    assert b1[-1] < 0.05  # the largest η ends near β_S
    best = int(np.argmin(gens))
    assert 0 < best < len(rows) - 1, gens
    assert gens[best] < 0.1 * min(gens[0], gens[-1])


# --------------------------------------------------------------------------------------- data


def test_single_point_raw_shapes_seed_and_labels():
    inst = INST["d5"]
    raw = theory.single_point_raw({"instance": "d5", "n_test": 3000, "data_seed": 7})
    assert raw.x_train.shape == (1, 5) and raw.t_train.shape == (1, 1) and raw.num_classes is None
    np.testing.assert_array_equal(raw.x_train[0], inst.x)
    assert raw.t_train[0, 0] == inst.y
    assert raw.x_test.shape == (3000, 5) and raw.t_test.shape == (3000, 1)
    np.testing.assert_allclose(raw.t_test[:, 0], raw.x_test @ inst.beta_star, rtol=1e-14, atol=1e-14)
    cov = raw.x_test.T @ raw.x_test / 3000
    assert np.abs(cov - inst.sigma).max() < 0.1
    again = theory.single_point_raw({"instance": "d5", "n_test": 3000, "data_seed": 7})
    np.testing.assert_array_equal(again.x_test, raw.x_test)
    other = theory.single_point_raw({"instance": "d5", "n_test": 3000, "data_seed": 8})
    assert not np.array_equal(other.x_test, raw.x_test)
    # the mean test ½(f − y)² estimates G/2
    beta = theory.minimisers(inst).sharpness.beta
    mc = 0.5 * np.mean((raw.x_test @ beta - raw.t_test[:, 0]) ** 2)
    assert mc == pytest.approx(theory.generalisation_error(beta, inst) / 2, rel=0.1)


def test_single_point_raw_explicit_and_errors():
    raw = theory.single_point_raw({"x": [1.0, 3.0], "y": 2.0, "beta_star": [0.5, 0.5], "n_test": 10})
    assert raw.x_train.tolist() == [[1.0, 3.0]] and raw.t_train.tolist() == [[2.0]] and raw.x_test.shape == (10, 2)
    assert len(theory.single_point_raw({"instance": "d2"}).x_test) == 2000
    with pytest.raises(ConfigError):
        theory.single_point_raw({"instance": "nope"})
    with pytest.raises(ConfigError):
        theory.single_point_raw({"x": [1.0, 2.0], "y": 1.0})
    with pytest.raises(ConfigError):
        theory.single_point_raw({})
    with pytest.raises(ConfigError):
        theory.Instance("bad", np.array([1.0, -1.0]), 1.0, np.eye(2), np.zeros(2))


def test_zero_loss_curve_and_eos_point():
    inst = INST["d2"]
    curve = theory.zero_loss_curve(inst, num=101)
    assert curve.beta.shape == (101, 2) and np.all(np.abs(curve.beta @ inst.x - inst.y) < 1e-14)
    np.testing.assert_allclose(curve.sharpness, 4 * curve.beta @ inst.x**2, rtol=1e-14)
    np.testing.assert_allclose(curve.l2_norm**2, curve.beta.sum(axis=1), rtol=1e-14)
    m = theory.minimisers(inst)
    e = theory.eos_point(inst, m.eta_star)
    np.testing.assert_allclose(e.beta, m.generalisation.beta, atol=1e-12)
    assert theory.eos_point(inst, 0.1) is None  # 2/η above every S on M
    with pytest.raises(ValueError):
        theory.zero_loss_curve(INST["d5"])
    assert math.isnan(theory.minimisers(INST["d5"]).position)


def test_single_point_must_not_be_standardised():
    from normsharp.data import load_data

    with pytest.raises(ConfigError, match="standardise: false"):
        load_data({"name": "single_point", "instance": "d2"}, "mse")
    data = load_data({"name": "single_point", "instance": "d2", "standardise": False}, "mse")
    assert data.x_train.tolist() == [[2.0, 1.0]]


def test_end_point_gives_exact_generalisation_error_only_with_a_closed_form():
    inst = INST["d5"]
    spec = {"name": "single_point", "instance": "d5", "standardise": False}
    model = {"arch": "diagonal_linear", "depth": 2, "variant": "shared"}
    w = torch.tensor(np.random.default_rng(5).uniform(0.1, 0.9, 5))
    out = theory.end_point(spec, model, w)
    assert out["beta"] == pytest.approx((w.numpy() ** 2).tolist(), rel=1e-15)
    assert out["gen_error"] == theory.generalisation_error(w.numpy() ** 2, inst)
    uv = theory.end_point(spec, {**model, "variant": "uv", "depth": 3}, torch.cat([w, 0.5 * w]))
    assert uv["beta"] == pytest.approx((0.875 * w.numpy() ** 3).tolist(), rel=1e-14)
    diverged = theory.end_point(spec, model, torch.full((5,), math.inf))
    assert math.isnan(diverged["gen_error"])
    for other in (theory.end_point({"name": "digits"}, model, w), theory.end_point(spec, {"arch": "fcn"}, w),
                  theory.end_point(None, model, w)):
        assert math.isnan(other["gen_error"]) and other["beta"] == []
