"""GD and gradient flow against closed forms, and the Edge-of-Stability fingerprint on digits."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch

from normsharp.checkpoint import Checkpoint
from normsharp.data import load_data
from normsharp.dynamics import CONVERGED, DIVERGED, MAX_STEPS, run_gd
from normsharp.eigen import sharpness
from normsharp.errors import CheckpointMismatch
from normsharp.flow import FlowResult, run_gradient_flow
from normsharp.models import build_model
from normsharp.objective import NetObjective, Quadratic
from normsharp.optimizers import GD, SGD, Adam, Momentum, RMSProp, minibatch_indices


def spd(dim=6, seed=0, top=4.0):
    """A symmetric positive definite matrix with eigenvalues spread in [0.1, top]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.1, top, dim, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


def test_gd_on_quadratic_matches_closed_form():
    a = spd()
    theta0 = torch.ones(6, dtype=torch.float64)
    eta, eps = 0.3, 1e-6
    res = run_gd(Quadratic(a), theta0, eta, loss_threshold=eps, max_steps=10_000)
    step_matrix = torch.eye(6, dtype=torch.float64) - eta * a
    k, theta = 0, theta0.clone()  # θ_k = (I − ηA)^k θ₀; stop at the first k with ½θᵀAθ < ε
    while 0.5 * theta @ a @ theta >= eps:
        theta, k = step_matrix @ theta, k + 1
    assert res.status == CONVERGED and res.steps == k
    assert torch.allclose(res.theta, torch.linalg.matrix_power(step_matrix, k) @ theta0, rtol=1e-12, atol=1e-15)


def test_gd_above_two_over_lambda_max_diverges_with_a_status():
    a = spd(top=4.0)
    res = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 2 / 4.0 * 1.05, loss_threshold=1e-6,
                 max_steps=100_000)
    assert res.status == DIVERGED
    ok = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 2 / 4.0 * 0.95, loss_threshold=1e-6,
                max_steps=100_000)
    assert ok.status == CONVERGED


@pytest.mark.parametrize("method", ["gd", "gf"])
def test_progress_reports_the_step_loss_last_sharpness_and_rate(method):
    """progress_seconds=0: a report at every step; S is the last one computed (every 3rd step for GD), the rate the
    steps since the previous report over its wall time."""
    a, reports = spd(), []
    theta0 = torch.ones(6, dtype=torch.float64)

    def report(**r):
        reports.append(r)

    if method == "gd":
        res = run_gd(Quadratic(a), theta0, 0.3, loss_threshold=1e-6, max_steps=10, sharpness_every=3,
                     progress_seconds=0, report=report)
    else:
        res = run_gradient_flow(Quadratic(a), theta0, loss_threshold=1e-6, max_steps=10, method="rk4",
                                sharpness_every=3, progress_seconds=0, report=report)
    assert [r["step"] for r in reports] == list(range(11)) and res.steps == 10
    assert reports[-1]["loss"] == pytest.approx(res.train_loss, rel=1e-12)
    assert math.isnan(reports[0]["steps_per_second"]) and all(r["steps_per_second"] > 0 for r in reports[1:])
    top = float(np.linalg.eigvalsh(a.numpy()).max())
    assert reports[2]["sharpness"] == pytest.approx(top, rel=1e-4)  # step 2: S of step 0, carried over
    if method == "gf":
        assert reports[-1]["t"] == pytest.approx(res.time) and "s_gf" in reports[-1]


def test_gd_stops_at_max_steps():
    res = run_gd(Quadratic(spd()), torch.ones(6, dtype=torch.float64), 0.01, loss_threshold=1e-9, max_steps=25)
    assert res.status == MAX_STEPS and res.steps == 25


class LeastSquares:
    """L(θ) = (1/2n)‖Xθ‖² over n examples (rows of X): a quadratic with Hessian XᵀX/n that mini-batch SGD can
    split into batches, L_B(θ) = (1/2|B|)‖X_Bθ‖²."""

    def __init__(self, x):
        self.x, self.n, self.dim = x, x.shape[0], x.shape[1]

    def loss(self, theta):
        r = self.x @ theta
        return 0.5 * (r @ r) / self.n

    def loss_and_grad(self, theta):
        r = self.x @ theta
        return 0.5 * (r @ r) / self.n, self.x.T @ r / self.n

    def in_place_gradient(self, theta):
        return lambda: self.loss_and_grad(theta)

    def hessian_at(self, theta):
        return lambda v: self.x.T @ (self.x @ v) / self.n

    def subset(self, indices):
        return LeastSquares(self.x[indices])


# Each optimiser whose edge is a fixed threshold on λ_max(H) (+ shift): run_gd with it on a quadratic converges
# just below η* = c/(λ_max + shift) and diverges just above. SGD with batch = n is full-batch (its edge then is
# the heavy-ball one); RMSProp/Adam have no fixed threshold on H (their P moves): tests/test_optimizers.py
# checks their edge with the preconditioner frozen.
THRESHOLD_OPTIMIZERS = {
    "gd": GD(), "gd-l2": GD(l2=0.5), "gd-decoupled": GD(decoupled_weight_decay=0.3),
    "momentum": Momentum(beta=0.9), "nesterov": Momentum(beta=0.9, nesterov=True),
    "momentum-decoupled": Momentum(beta=0.5, decoupled_weight_decay=0.2),
    "sgd-full-batch": SGD(batch_size=12), "sgd-full-batch-momentum": SGD(batch_size=12, momentum=0.5),
}


@pytest.mark.parametrize("opt", THRESHOLD_OPTIMIZERS.values(), ids=THRESHOLD_OPTIMIZERS.keys())
def test_run_gd_with_each_optimizer_converges_below_and_diverges_above_its_threshold(opt):
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    objective = LeastSquares(x)
    top = float(torch.linalg.eigvalsh(x.T @ x / 12)[-1])
    eta_star = opt.critical_lr(top)
    theta0 = torch.ones(6, dtype=torch.float64)
    runs = {margin: run_gd(objective, theta0, eta_star * (1 + margin), loss_threshold=1e-8, max_steps=200_000,
                           sharpness_every=50, optimizer=opt) for margin in (-1e-3, 1e-3)}
    assert runs[-1e-3].status == CONVERGED and runs[1e-3].status == DIVERGED
    row = next(r for r in runs[-1e-3].trajectory if r["step"] == 50)  # own sharpness and edge along the way
    assert row["opt_sharpness"] == pytest.approx(top + opt.sharpness_shift, rel=1e-6)
    assert row["edge"] == opt.threshold(eta_star * (1 - 1e-3))


def test_plain_gd_through_the_optimizer_is_the_default_run_bit_for_bit():
    a = spd()
    plain = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 0.3, loss_threshold=1e-9, max_steps=10_000,
                   sharpness_every=7)
    same = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 0.3, loss_threshold=1e-9, max_steps=10_000,
                  sharpness_every=7, optimizer=GD())
    assert torch.equal(plain.theta, same.theta) and plain.steps == same.steps
    assert _same_rows(plain.trajectory, same.trajectory)
    rows = [r for r in plain.trajectory if not math.isnan(r["sharpness"])]
    assert rows and all(r["opt_sharpness"] == r["sharpness"] and r["edge"] == 2 / 0.3 for r in rows)


def test_sgd_checks_the_full_loss_every_epoch_and_draws_its_batches_from_the_seed():
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    objective, theta0 = LeastSquares(x), torch.ones(5, dtype=torch.float64)
    opt = SGD(batch_size=12)  # 4 batches per epoch, the last of 4 examples

    def run(seed, **kwargs):
        return run_gd(objective, theta0, 0.2, loss_threshold=1e-4, max_steps=100_000, log_every=1000,
                      optimizer=opt, seed=seed, **kwargs)

    res = run(seed=5)
    assert res.status == CONVERGED and res.steps % 4 == 0  # stopped at an epoch's start, where L is checked
    assert res.train_loss == pytest.approx(float(objective.loss(res.theta)), rel=1e-14) and res.train_loss < 1e-4
    theta = theta0.clone()  # the same run by hand: θ ← θ − η∇L_B(θ), B = minibatch_indices(n, b, seed, k)
    for k in range(res.steps):
        theta.add_(objective.subset(minibatch_indices(40, 12, 5, k)).loss_and_grad(theta)[1], alpha=-0.2)
    assert torch.equal(theta, res.theta)
    assert not torch.equal(run(seed=6).theta, res.theta)
    assert run_gd(objective, theta0, 20.0, loss_threshold=1e-4, max_steps=1000, optimizer=opt).status == DIVERGED
    measured = run(seed=5, sharpness_every=8, batch_sharpness_batches=3)
    assert torch.equal(measured.theta, res.theta)  # measuring changes nothing
    row = measured.trajectory[0]
    batches = [objective.subset(minibatch_indices(40, 12, 5, j)) for j in range(3)]  # epoch 0's full batches
    ratios = [float(g @ b.hessian_at(theta0)(g) / (g @ g)) for b in batches for g in [b.loss_and_grad(theta0)[1]]]
    assert row["opt_sharpness"] == pytest.approx(sum(ratios) / 3, rel=1e-12)
    assert measured.extra["opt_sharpness"] > 0


def test_adaptive_runs_record_their_preconditioned_sharpness():
    a = spd()
    opt = Adam(beta1=0.9, beta2=0.999, eps=1e-8)
    res = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 0.01, loss_threshold=1e-6, max_steps=20_000,
                 sharpness_every=10, optimizer=opt)
    assert res.status == CONVERGED
    rows = [r for r in res.trajectory if not math.isnan(r["sharpness"])]
    assert math.isnan(rows[0]["opt_sharpness"]) and rows[0]["step"] == 0  # no preconditioner before the first step
    assert all(r["opt_sharpness"] > 0 and r["edge"] == opt.threshold(0.01) for r in rows[1:])
    state, k = res.extra["optimizer_state"], res.steps - 1
    p = opt.preconditioner(state, k)
    exact = float(torch.linalg.eigvalsh(a / torch.outer(p.sqrt(), p.sqrt()))[-1])
    assert res.extra["opt_sharpness"] == pytest.approx(exact, rel=1e-6)
    rms = run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 0.001, loss_threshold=1e-6, max_steps=50_000,
                 optimizer=RMSProp())
    assert rms.status == CONVERGED and rms.extra["opt_sharpness"] > 0


@pytest.mark.parametrize("method", ["gd", "gf"])
def test_observe_runs_at_its_own_steps_and_the_end_only(method):
    """The test-loss hook: observe(θ) exactly every ``observe_every`` steps and at the end, at the θ of that
    step (here ½‖θ − c‖², a closed form), its columns only in those rows; the run itself is unchanged."""
    a, c = spd(), torch.full((6,), 0.5, dtype=torch.float64)
    seen = []

    def observe(theta):
        seen.append(theta.clone())
        return {"test_loss": float(0.5 * (theta - c) @ (theta - c))}

    def run(**hook):
        if method == "gd":
            return run_gd(Quadratic(a), torch.ones(6, dtype=torch.float64), 0.3, loss_threshold=1e-6,
                          max_steps=10_000, log_every=4, **hook)
        return run_gradient_flow(Quadratic(a), torch.ones(6, dtype=torch.float64), loss_threshold=1e-6,
                                 max_steps=10_000, log_every=4, **hook)

    plain, res = run(), run(observe=observe, observe_every=7)
    assert res.steps == plain.steps and torch.equal(res.theta, plain.theta)
    due = [k for k in range(res.steps + 1) if k % 7 == 0 or k == res.steps]
    assert len(seen) == len(due)  # one evaluation per due step, none elsewhere
    rows = {r["step"]: r for r in res.trajectory}
    assert sorted(k for k, r in rows.items() if "test_loss" in r) == due
    assert set(rows) == {k for k in range(res.steps + 1) if k % 4 == 0} | set(due)
    assert rows[res.steps]["test_loss"] == pytest.approx(float(0.5 * (res.theta - c) @ (res.theta - c)), rel=1e-14)


def test_gradient_flow_on_quadratic_matches_matrix_exponential():
    a, b = spd(), torch.linspace(-1, 1, 6, dtype=torch.float64)
    obj = Quadratic(a, b)
    star = torch.linalg.solve(a, b)
    floor = float(obj.loss(star))
    theta0 = torch.zeros(6, dtype=torch.float64)
    res = run_gradient_flow(obj, theta0, loss_threshold=floor + 1e-4, max_steps=100_000, method="rk4", alpha=0.05)
    exact = star + torch.as_tensor(scipy.linalg.expm(-a.numpy() * res.time)) @ (theta0 - star)
    assert res.status == CONVERGED
    assert torch.allclose(res.theta, exact, rtol=1e-8, atol=1e-10)
    assert math.isclose(res.s_gf, 4.0, rel_tol=1e-6) and math.isclose(res.eta_c, 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("tol, bound", [(1e-6, 1e-3), (1e-9, 1e-5)])
def test_rkc_flow_on_quadratic_matches_matrix_exponential_and_lands_on_epsilon(tol, bound):
    a, b = spd(dim=8, top=50.0), torch.linspace(-1, 1, 8, dtype=torch.float64)  # stiff: λ from 0.1 to 50
    obj = Quadratic(a, b)
    star = torch.linalg.solve(a, b)
    eps = float(obj.loss(star)) + 1e-4
    theta0 = torch.zeros(8, dtype=torch.float64)
    res = run_gradient_flow(obj, theta0, loss_threshold=eps, max_steps=100_000, method="rkc", tol=tol)
    exact = star + torch.as_tensor(scipy.linalg.expm(-a.numpy() * res.time)) @ (theta0 - star)
    assert res.status == CONVERGED
    assert float((res.theta - exact).norm() / exact.norm()) < bound
    assert eps - 1e-8 < res.train_loss < eps  # the last step is shortened to end where L reaches ε
    t_exact = scipy.optimize.brentq(lambda t: float(obj.loss(star + torch.as_tensor(
        scipy.linalg.expm(-a.numpy() * t)) @ (theta0 - star))) - eps, 0.0, 1e3)
    assert math.isclose(res.time, t_exact, rel_tol=bound)  # t_ε is ill-conditioned here: L is flat at the end
    assert math.isclose(res.s_gf, 50.0, rel_tol=1e-6)
    if tol >= 1e-6:  # far fewer steps than an explicit method stable only at h ≤ 2.8/λ_max
        assert res.steps < 0.2 * res.time * 50.0


class PeakedCurvature:
    """L(x, y) = ½x² + ½a(x)y², a(x) = 4 + 3exp(−(x − 1)²/w). From (x₀, 0) the flow is x = x₀e^{−t}, y = 0, and
    S(t) = a(x₀e^{−t}) (the Hessian is diag(1, a(x))): S peaks at 7 at t = ln x₀, between sampling points."""

    dim = 2

    def __init__(self, width=0.01):
        self.width = width

    def loss(self, theta):
        x, y = theta
        return 0.5 * x**2 + 0.5 * (4 + 3 * torch.exp(-((x - 1) ** 2) / self.width)) * y**2

    def loss_and_grad(self, theta):
        theta = theta.detach().requires_grad_(True)
        value = self.loss(theta)
        return value.detach(), torch.autograd.grad(value, theta)[0]

    def hessian_at(self, theta):
        h = torch.autograd.functional.hessian(self.loss, theta.detach())
        return lambda v: h @ v


def test_rkc_finds_the_maximum_sharpness_between_steps():
    obj = PeakedCurvature()
    theta0 = torch.tensor([3.0, 0.0], dtype=torch.float64)
    res = run_gradient_flow(obj, theta0, loss_threshold=1e-3, max_steps=10_000, method="rkc", tol=1e-6,
                            log_every=1, sharpness_tol=1e-8)
    sampled = max(r["sharpness"] for r in res.trajectory)
    assert res.status == CONVERGED and math.isclose(res.time, math.log(3 / math.sqrt(2e-3)), rel_tol=1e-3)
    assert sampled < 7.0 - 1e-3  # the accepted steps straddle the peak ...
    assert math.isclose(res.s_gf, 7.0, rel_tol=1e-5)  # ... and the refinement finds it


def digits_fcn(n, width, loss="mse", seed=0):
    data = load_data({"name": "digits", "n_train": n}, loss)
    model = build_model({"arch": "fcn", "width": width, "depth": 2, "activation": "tanh"}, data.input_shape,
                        data.output_dim, seed=seed)
    return NetObjective(model, data.x_train, data.y_train, loss), model.theta0


def test_s_gf_is_converged_in_the_step_size():
    obj, theta0 = digits_fcn(n=100, width=32)
    coarse = run_gradient_flow(obj, theta0, loss_threshold=0.01, max_steps=50_000, alpha=1.0)
    fine = run_gradient_flow(obj, theta0, loss_threshold=0.01, max_steps=50_000, alpha=0.25)
    assert coarse.status == fine.status == CONVERGED
    assert abs(coarse.s_gf - fine.s_gf) <= 0.005 * fine.s_gf
    assert math.isclose(coarse.time, fine.time, rel_tol=0.01)


def woodworth_limit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Woodworth et al. 2020: GF on β = u⊙u − v⊙v from u = v = α·1 ends at β = 2α² sinh(Xᵀν), Xβ = y.

    ν minimises the convex dual Σ_i 2α² cosh((Xᵀν)_i) − νᵀy.
    """
    def dual(nu):
        z = x.T @ nu
        return 2 * alpha**2 * np.cosh(z).sum() - nu @ y, x @ (2 * alpha**2 * np.sinh(z)) - y

    def hess(nu):
        return (x * (2 * alpha**2 * np.cosh(x.T @ nu))) @ x.T

    sol = scipy.optimize.minimize(dual, np.zeros(len(y)), jac=True, hess=hess, method="trust-exact",
                                  options={"gtol": 1e-13})
    return 2 * alpha**2 * np.sinh(x.T @ sol.x)


def test_gradient_flow_on_uv_diagonal_network_reaches_woodworth_limit():
    n, d, alpha = 5, 20, 0.1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    beta_star[:3] = [1.0, -0.5, 0.8]
    y = x @ beta_star
    model = build_model({"arch": "diagonal_linear", "variant": "uv", "depth": 2, "init_scale": alpha}, (d,), 1, seed=0)
    obj = NetObjective(model, torch.as_tensor(x), torch.as_tensor(y)[:, None], "mse")
    res = run_gradient_flow(obj, model.theta0, loss_threshold=1e-14, max_steps=200_000, alpha=1.0)
    u, v = res.theta[:d], res.theta[d:]
    beta = (u**2 - v**2).numpy()
    assert res.status == CONVERGED
    assert np.abs(beta - woodworth_limit(x, y, alpha)).max() < 1e-3


@pytest.fixture(scope="module")
def eos_runs():
    """Digits, FCN tanh, MSE, float64: the GF reference and GD at 0.5, 2 and 3 η_c."""
    obj, theta0 = digits_fcn(n=200, width=50)
    eps = 1e-3
    gf = run_gradient_flow(obj, theta0, loss_threshold=eps, max_steps=100_000)
    runs = {}
    for ratio in (0.5, 2.0, 3.0):
        res = run_gd(obj, theta0, ratio * gf.eta_c, loss_threshold=eps, max_steps=100_000)
        final = sharpness(obj.hessian_at(res.theta), obj.dim, tol=1e-6).value
        runs[ratio] = (res, final)
    return gf, runs


def test_edge_of_stability_fingerprint(eos_runs):
    gf, runs = eos_runs
    assert gf.status == CONVERGED
    for ratio in (2.0, 3.0):
        res, s = runs[ratio]
        assert res.status == CONVERGED
        assert abs(s * ratio * gf.eta_c / 2 - 1) < 0.05, (ratio, s * ratio * gf.eta_c / 2)
    res, s = runs[0.5]
    assert res.status == CONVERGED and abs(s / gf.final_sharpness - 1) < 0.03


def test_l1_norm_grows_with_eta_at_the_edge_of_stability(eos_runs):
    _, runs = eos_runs
    l1 = [float(runs[r][0].theta.abs().sum()) for r in (0.5, 2.0, 3.0)]
    assert l1[0] < l1[1] < l1[2]


def test_gd_on_digits_with_huge_eta_reports_divergence():
    obj, theta0 = digits_fcn(n=50, width=16)
    res = run_gd(obj, theta0, 50.0, loss_threshold=1e-3, max_steps=1000)
    assert res.status == DIVERGED and res.steps < 1000


class Interrupt(Exception):
    pass


class KilledAfter:
    """Wraps an objective and raises after ``calls`` gradient evaluations (its mini-batches' included), like a
    kill mid-run."""

    def __init__(self, objective, calls, counter=None):
        self.objective, self.dim, self.n = objective, objective.dim, getattr(objective, "n", None)
        self.counter = [calls] if counter is None else counter

    def _tick(self):
        self.counter[0] -= 1
        if self.counter[0] < 0:
            raise Interrupt

    def loss_and_grad(self, theta):
        self._tick()
        return self.objective.loss_and_grad(theta)

    def loss(self, theta):
        return self.objective.loss(theta)

    def subset(self, indices):
        return KilledAfter(self.objective.subset(indices), 0, self.counter)

    def in_place_gradient(self, theta):
        step = self.objective.in_place_gradient(theta)

        def counted():
            self._tick()
            return step()

        return counted

    def hessian_at(self, theta):
        return self.objective.hessian_at(theta)


# The optimisers of the resume test, with an η each converges at on the small digits net.
RESUMED_OPTIMIZERS = {
    "momentum": (Momentum(beta=0.9), 0.05),
    "nesterov": (Momentum(beta=0.5, nesterov=True), 0.1),
    "sgd": (SGD(batch_size=16), 0.3),
    "adam": (Adam(l2=1e-3), 0.01),
}


def resumable_run(method, theta0):
    """GD (η = 0.3, S every 20 steps), another optimiser or GF by ``method`` on a small digits net, checkpointing
    as it is told."""
    kwargs = {"loss_threshold": 0.05, "max_steps": 5000, "log_every": 5}
    if method == "gd":
        return lambda o, ck: run_gd(o, theta0, 0.3, sharpness_every=20, checkpoint=ck, **kwargs)
    if method in RESUMED_OPTIMIZERS:
        opt, eta = RESUMED_OPTIMIZERS[method]
        return lambda o, ck: run_gd(o, theta0, eta, sharpness_every=20, checkpoint=ck, optimizer=opt, seed=3,
                                    batch_sharpness_batches=2, **kwargs)
    return lambda o, ck: run_gradient_flow(o, theta0, method=method, sharpness_every=3, checkpoint=ck, **kwargs)


def assert_same_run(resumed, whole):
    assert resumed.status == whole.status and resumed.steps == whole.steps
    assert torch.equal(resumed.theta, whole.theta)
    assert resumed.trajectory == whole.trajectory or _same_rows(resumed.trajectory, whole.trajectory)
    assert resumed.n_grad == whole.n_grad and resumed.n_hvp == whole.n_hvp
    assert resumed.time == whole.time and torch.equal(resumed.sharpness_vector, whole.sharpness_vector)
    if isinstance(whole, FlowResult):
        assert (resumed.s_gf, resumed.final_sharpness) == (whole.s_gf, whole.final_sharpness)
    else:
        mine, theirs = resumed.extra["optimizer_state"], whole.extra["optimizer_state"]
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        if "opt_sharpness" in whole.extra:
            a, b = resumed.extra["opt_sharpness"], whole.extra["opt_sharpness"]
            assert a == b or (math.isnan(a) and math.isnan(b))


KINDS = {"gd": "GDState", "rk4": "FlowState", "rkc": "RKCState", "momentum": "OptimizerState",
         "nesterov": "OptimizerState", "sgd": "GDState", "adam": "OptimizerState"}


@pytest.mark.parametrize("method", ["gd", "rk4", "rkc", *RESUMED_OPTIMIZERS])
def test_resumed_run_is_bit_identical_to_uninterrupted(tmp_path, method):
    """Killed at a third and again at two thirds of its gradients, each time resumed from its checkpoint
    (the second from one a resumed run wrote), the run ends exactly as the uninterrupted one."""
    obj, theta0 = digits_fcn(n=60, width=16)
    run = resumable_run(method, theta0)
    settings = {"method": method, "eta": 0.3}
    whole = run(obj, None)
    path = tmp_path / "ck.pt"
    saved_at = []
    for _ in range(2):
        with pytest.raises(Interrupt):
            run(KilledAfter(obj, calls=whole.n_grad // 3), Checkpoint(path, every=7, settings=settings))
        saved = torch.load(path, weights_only=True)  # plain tensors, numbers and containers only
        assert saved["format"] == 2 and saved["kind"] == KINDS[method]
        saved_at.append(saved["state"]["step"])
    assert 0 < saved_at[0] < saved_at[1] < whole.steps
    resumed = run(obj, Checkpoint(path, every=7, settings=settings))
    assert_same_run(resumed, whole)
    with pytest.raises(CheckpointMismatch, match="eta"):
        run(obj, Checkpoint(path, every=7, settings={**settings, "eta": 0.4}))


# The state keys of a first-release checkpoint ({key, settings, state}, written by torch.save), per run.
FIRST_RELEASE_KEYS = {
    "gd": ("step", "theta", "trajectory", "n_grad", "n_hvp", "vec", "loss0"),
    "rk4": ("step", "t", "theta", "trajectory", "n_grad", "n_hvp", "vec", "loss0", "s_now", "s_max"),
    "rkc": ("step", "t", "theta", "trajectory", "n_grad", "n_hvp", "vec", "loss0", "loss", "grad", "s_now", "s_max",
            "h", "h_old", "err_old", "rejected", "samples"),
}


@pytest.mark.parametrize("method", ["gd", "rk4", "rkc"])
def test_a_first_release_checkpoint_resumes_bit_for_bit(tmp_path, method):
    """A checkpoint laid out as the first release's save() wrote it (no format, no kind, RKC's samples as
    (t, S, θ, ∇L) tuples) resumes to the uninterrupted result."""
    obj, theta0 = digits_fcn(n=60, width=16)
    run = resumable_run(method, theta0)
    settings = {"method": method}
    whole = run(obj, None)
    ck = Checkpoint(tmp_path / "ck.pt", every=7, settings=settings)
    with pytest.raises(Interrupt):
        run(KilledAfter(obj, calls=whole.n_grad // 2), ck)
    state = torch.load(ck.path, weights_only=True)["state"]
    assert set(state) == set(FIRST_RELEASE_KEYS[method])  # a new field needs a rule for the old files
    old = {k: state[k] for k in FIRST_RELEASE_KEYS[method]}
    if method == "rkc":
        old["samples"] = [tuple(smp) for smp in old["samples"]]
    torch.save({"key": ck.key, "settings": settings, "state": old}, ck.path)
    assert_same_run(run(obj, Checkpoint(ck.path, every=7, settings=settings)), whole)


def test_a_checkpoint_this_run_cannot_resume_is_refused_with_the_reason(tmp_path):
    obj, theta0 = digits_fcn(n=60, width=16)
    settings = {"shared": 1}
    ck = Checkpoint(tmp_path / "ck.pt", every=7, settings=settings)
    with pytest.raises(Interrupt):
        resumable_run("gd", theta0)(KilledAfter(obj, calls=30), ck)
    with pytest.raises(CheckpointMismatch, match="holds a GDState, not the FlowState"):
        resumable_run("rk4", theta0)(obj, ck)
    saved = torch.load(ck.path, weights_only=True)
    torch.save({**saved, "format": 3}, ck.path)
    with pytest.raises(CheckpointMismatch, match="format 3, newer than"):
        resumable_run("gd", theta0)(obj, ck)
    del saved["kind"], saved["format"]
    saved["state"].pop("loss0")  # a first-release layout with a field missing
    torch.save(saved, ck.path)
    with pytest.raises(CheckpointMismatch, match="not those of a GDState"):
        resumable_run("gd", theta0)(obj, ck)


class WritesMarker:
    """Unpickling this runs ``Path(marker).touch()``: what a crafted checkpoint could do if it were unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint", "other objects", "code"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_run_restarts_from_theta0(tmp_path, damage, caplog):
    """A checkpoint that cannot be read is renamed checkpoint.pt.corrupt-<time> (kept, not deleted), the log
    warns, and the run starts again from θ₀ and ends as an uninterrupted one; a crafted pickle is never run."""
    obj, theta0 = digits_fcn(n=60, width=16)
    settings = {"method": "gd", "eta": 0.3}
    whole = resumable_run("gd", theta0)(obj, None)
    ck = Checkpoint(tmp_path / "checkpoint.pt", every=7, settings=settings)
    with pytest.raises(Interrupt):
        resumable_run("gd", theta0)(KilledAfter(obj, calls=whole.n_grad // 2), ck)
    good = ck.path.read_bytes()
    marker = tmp_path / "marker"
    if damage == "truncated":
        ck.path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        ck.path.write_bytes(b"")
    elif damage == "not a checkpoint":
        torch.save(torch.zeros(3), ck.path)
    elif damage == "other objects":  # the right layout, but a state holding an arbitrary object
        saved = torch.load(ck.path, weights_only=True)
        torch.save({**saved, "state": {**saved["state"], "extra": Interrupt()}}, ck.path)
    else:
        torch.save({"key": ck.key, "settings": settings, "state": WritesMarker(marker)}, ck.path)
    damaged = ck.path.read_bytes()
    with caplog.at_level("WARNING", logger="normsharp"):
        resumed = resumable_run("gd", theta0)(obj, ck)
    assert not marker.exists()
    assert_same_run(resumed, whole)
    (aside,) = tmp_path.glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == damaged
    assert any("cannot be read" in r.message and "restarts from θ₀" in r.message and r.levelname == "WARNING"
               for r in caplog.records)


def _same_rows(a, b):
    """Rows equal, NaN equal to NaN (other values compared only by ==)."""
    def same(u, v):
        return u is v or u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))

    return len(a) == len(b) and all(x.keys() == y.keys() and all(same(x[k], y[k]) for k in x) for x, y in zip(a, b))
