"""Optimisers and their edges (issue 22): exact checks in float64.

* Edges: on L = ½θᵀAθ each step is linear in (θ, state); its matrix T is read off the optimiser's own ``step``
  and the spectral radius ρ(T) crosses 1 within 1e-6 relative of the predicted η* (and iterating the step at
  η*(1 ∓ 1e-3) converges / diverges). For RMSProp/Adam the second moment is frozen: with θ, m of size 2⁻³⁰⁰,
  g² is far below one ulp of β₂v, so the real step is exactly the frozen-preconditioner map.
* Steps: torch.optim (SGD, RMSprop, Adam, AdamW) and hand-written loops, step for step on a small network.
* Measures: batch sharpness in closed form on least squares; preconditioned sharpness against eigvalsh.
"""

import math

import numpy as np
import pytest
import torch

from normsharp.errors import ConfigError
from normsharp.optimizers import (
    GD,
    SGD,
    Adam,
    Momentum,
    RMSProp,
    batches_per_epoch,
    check_batch_size,
    epoch_permutation,
    from_config,
    minibatch_indices,
)
from normsharp.stability import batch_sharpness, preconditioned_sharpness

F64 = torch.float64
TINY = 2.0**-300  # θ, m at this scale: g² ≈ 2⁻⁶⁰⁰ leaves β₂v unchanged in float64


def spd(d: int, seed: int, lo: float = 1.0, hi: float = 4.0) -> torch.Tensor:
    """A dense symmetric positive definite matrix with eigenvalues spread over [lo, hi]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    return q @ torch.diag(torch.linspace(lo, hi, d, dtype=F64)) @ q.T


def transition_matrix(opt, a, eta, *, k=0, frozen=None):
    """T with (θ', s') = T(θ, s) for one ``opt.step`` on L = ½θᵀAθ; state fields in ``frozen`` are reset to the
    given value before the step and are not part of the linear state."""
    frozen = frozen or {}
    d = a.shape[0]
    names = [n for n in opt.state_fields(torch.zeros(d, dtype=F64)) if n not in frozen]
    size = d * (1 + len(names))
    t = torch.empty(size, size, dtype=F64)
    for j in range(size):
        x = torch.zeros(size, dtype=F64)
        x[j] = TINY
        theta = x[:d].clone()
        state = {n: x[d * (i + 1):d * (i + 2)].clone() for i, n in enumerate(names)}
        state.update({n: v.clone() for n, v in frozen.items()})
        opt.step(theta, a @ theta, state, k, eta)
        t[:, j] = torch.cat([theta, *(state[n] for n in names)]) / TINY
    return t


def spectral_radius(t: torch.Tensor) -> float:
    return float(np.abs(np.linalg.eigvals(t.numpy())).max())


def iterate_until_decided(opt, a, eta, *, k=None, frozen=None, max_steps=60_000):
    """'converged' once ‖θ‖ + ‖state‖ fell 10⁶×, 'diverged' once it grew 10⁶×, by iterating ``opt.step``."""
    frozen = frozen or {}
    d = a.shape[0]
    theta = TINY * torch.randn(d, generator=torch.Generator().manual_seed(5), dtype=F64)
    state = opt.state_fields(theta)
    size0 = float(theta.norm())
    for step in range(max_steps):
        state.update({n: v.clone() for n, v in frozen.items()})
        opt.step(theta, a @ theta, state, step if k is None else k, eta)
        size = float(theta.norm()) + sum(float(v.norm()) for n, v in state.items() if n not in frozen)
        if size > 1e6 * size0:
            return "diverged"
        if size < 1e-6 * size0:
            return "converged"
    return "undecided"


FULL_BATCH = {
    "gd": GD(),
    "gd-l2": GD(l2=0.5),
    "gd-decoupled": GD(decoupled_weight_decay=0.5),
    "heavy-ball": Momentum(beta=0.9),
    "heavy-ball-l2-decoupled": Momentum(beta=0.9, l2=0.3, decoupled_weight_decay=0.2),
    "nesterov": Momentum(beta=0.9, nesterov=True),
    "nesterov-0.5-decoupled": Momentum(beta=0.5, nesterov=True, decoupled_weight_decay=0.3),
    "sgd-full-batch-momentum": SGD(batch_size=8, momentum=0.7),
}


@pytest.mark.parametrize("opt", FULL_BATCH.values(), ids=FULL_BATCH.keys())
def test_full_batch_edge_is_the_linear_recurrences_stability_boundary(opt):
    a = spd(6, seed=1)
    top = float(torch.linalg.eigvalsh(a)[-1])
    eta_star = opt.critical_lr(top)  # c/(λ_max + shift): where λ_max + shift meets c/η
    assert math.isclose(opt.threshold(eta_star), top + opt.sharpness_shift, rel_tol=1e-15)
    assert spectral_radius(transition_matrix(opt, a, eta_star * (1 - 1e-6))) < 1
    assert spectral_radius(transition_matrix(opt, a, eta_star * (1 + 1e-6))) > 1
    assert iterate_until_decided(opt, a, eta_star * (1 - 1e-3)) == "converged"
    assert iterate_until_decided(opt, a, eta_star * (1 + 1e-3)) == "diverged"


ADAPTIVE = {
    "rmsprop": (RMSProp(beta2=0.99, eps=1e-8), "square_avg"),
    "rmsprop-l2": (RMSProp(beta2=0.9, eps=1e-3, l2=0.2), "square_avg"),
    "adam": (Adam(beta1=0.9, beta2=0.999, eps=1e-8), "exp_avg_sq"),
    "adam-0.5-l2": (Adam(beta1=0.5, beta2=0.99, eps=1e-3, l2=0.2), "exp_avg_sq"),
}


@pytest.mark.parametrize("k", [2, 10_000], ids=["bias-corrected", "late"])
@pytest.mark.parametrize("case", ADAPTIVE.values(), ids=ADAPTIVE.keys())
def test_adaptive_edge_is_the_preconditioned_sharpness_against_c_over_eta(case, k):
    """Frozen second moment: the step is EMA momentum on P⁻¹(H + l2) with P = ``preconditioner``, stable iff
    λ_max(P⁻¹(H + l2)) < (2 + 2β₁)/((1 − β₁)η) (2/η for RMSProp)."""
    opt, second_moment = case
    a = spd(5, seed=2)
    v0 = torch.linspace(0.5, 8.0, 5, dtype=F64) ** 2  # P⁻¹ far from a multiple of I: P and A do not commute
    after = {n: torch.zeros(5, dtype=F64) for n in opt.state_fields(v0)} | {second_moment: v0.clone()}
    zero = torch.zeros(5, dtype=F64)
    opt.step(zero.clone(), zero, after, k, 1.0)  # v ← β₂v₀, as in every frozen step below
    p = opt.preconditioner(after, k)
    s = float(torch.linalg.eigvalsh((a + opt.l2 * torch.eye(5, dtype=F64)) / torch.outer(p.sqrt(), p.sqrt()))[-1])
    eta_star = opt.edge_constant / s
    frozen = {second_moment: v0}
    assert spectral_radius(transition_matrix(opt, a, eta_star * (1 - 1e-6), k=k, frozen=frozen)) < 1
    assert spectral_radius(transition_matrix(opt, a, eta_star * (1 + 1e-6), k=k, frozen=frozen)) > 1
    assert iterate_until_decided(opt, a, eta_star * (1 - 1e-3), k=k, frozen=frozen) == "converged"
    assert iterate_until_decided(opt, a, eta_star * (1 + 1e-3), k=k, frozen=frozen) == "diverged"


def test_threshold_constants():
    eta = 0.25
    assert GD().threshold(eta) == 2 / eta
    assert Momentum(beta=0.9).threshold(eta) == pytest.approx(3.8 / eta, rel=1e-15)
    assert Momentum(beta=0.9, nesterov=True).threshold(eta) == pytest.approx(3.8 / 2.8 / eta, rel=1e-15)
    assert SGD(batch_size=4).threshold(eta) == 2 / eta
    assert RMSProp().threshold(eta) == 2 / eta
    assert Adam(beta1=0.9).threshold(eta) == pytest.approx(38 / eta, rel=1e-14)
    assert Momentum(beta=0.9).critical_lr(10.0) == pytest.approx(0.38, rel=1e-15)
    assert math.isnan(Adam().critical_lr(10.0)) and math.isnan(RMSProp().critical_lr(10.0))
    assert GD().edge_measure == "hessian" and SGD(batch_size=4).edge_measure == "batch"
    assert Adam().edge_measure == "preconditioned" and RMSProp().adaptive and not Momentum().adaptive


# Step for step against torch.optim and hand-written loops.

class SmallNet:
    """A 4-6-3 tanh network with MSE on 16 points; ``grad(θ)`` is ∇L at the flat parameter vector θ."""

    def __init__(self):
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(F64)
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(16, 4, generator=gen, dtype=F64)
        self.y = torch.randn(16, 3, generator=gen, dtype=F64)
        self.theta0 = 0.5 * torch.randn(4 * 6 + 6 + 6 * 3 + 3, generator=gen, dtype=F64)

    def loss(self, model):
        return torch.nn.functional.mse_loss(model(self.x), self.y)

    def grad(self, theta):
        torch.nn.utils.vector_to_parameters(theta, self.model.parameters())
        self.model.zero_grad()
        self.loss(self.model).backward()
        return torch.cat([p.grad.reshape(-1) for p in self.model.parameters()])


def run_ours(opt, net, eta, steps):
    theta = net.theta0.clone()
    state = opt.state_fields(theta)
    out = []
    for k in range(steps):
        opt.step(theta, net.grad(theta.clone()), state, k, eta)
        out.append(theta.clone())
    return out


def run_torch(make, net, steps):
    model = SmallNet().model
    torch.nn.utils.vector_to_parameters(net.theta0.clone(), model.parameters())
    torch_opt = make(model.parameters())
    out = []
    for _ in range(steps):
        torch_opt.zero_grad()
        net.loss(model).backward()
        torch_opt.step()
        out.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())
    return out


def assert_same_trajectory(ours, ref, rel=1e-14):
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        err = float((a - b).abs().max() / b.abs().max())
        assert err <= rel, f"step {k}: relative difference {err:.3g}"


TORCH_CASES = {
    "gd": (GD(), lambda p: torch.optim.SGD(p, lr=0.3, foreach=False)),
    "gd-l2": (GD(l2=0.01), lambda p: torch.optim.SGD(p, lr=0.3, weight_decay=0.01, foreach=False)),
    "heavy-ball": (Momentum(beta=0.9), lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, foreach=False)),
    "nesterov": (Momentum(beta=0.9, nesterov=True),
                 lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9, nesterov=True, foreach=False)),
    "nesterov-l2": (Momentum(beta=0.8, nesterov=True, l2=0.05),
                    lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.8, nesterov=True, weight_decay=0.05,
                                              foreach=False)),
    "sgd-momentum": (SGD(batch_size=16, momentum=0.5),
                     lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.5, foreach=False)),
    "rmsprop": (RMSProp(beta2=0.99, eps=1e-8),
                lambda p: torch.optim.RMSprop(p, lr=0.3, alpha=0.99, eps=1e-8, foreach=False)),
    "rmsprop-l2": (RMSProp(beta2=0.9, eps=1e-6, l2=0.02),
                   lambda p: torch.optim.RMSprop(p, lr=0.3, alpha=0.9, eps=1e-6, weight_decay=0.02, foreach=False)),
    "adam": (Adam(beta1=0.9, beta2=0.999, eps=1e-8),
             lambda p: torch.optim.Adam(p, lr=0.3, betas=(0.9, 0.999), eps=1e-8, foreach=False)),
    "adam-l2": (Adam(beta1=0.8, beta2=0.99, eps=1e-6, l2=0.03),
                lambda p: torch.optim.Adam(p, lr=0.3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.03, foreach=False)),
    "adamw": (Adam(beta1=0.9, beta2=0.999, eps=1e-8, decoupled_weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)),
}


@pytest.mark.parametrize("case", TORCH_CASES.values(), ids=TORCH_CASES.keys())
def test_step_matches_torch_optim(case):
    opt, make = case
    net = SmallNet()
    ours, ref = run_ours(opt, net, 0.3, 30), run_torch(make, net, 30)
    assert_same_trajectory(ours, ref)
    assert float((ours[-1] - net.theta0).norm()) > 0.1  # the runs went somewhere


def reference_momentum(net, eta, beta, nesterov, steps, decoupled=0.0):
    """The docstring's maths, written out: v ← βv + g; θ ← (1 − ηλ)θ − η·(v, or g + βv for Nesterov)."""
    theta, v, out = net.theta0.clone(), torch.zeros_like(net.theta0), []
    for _ in range(steps):
        g = net.grad(theta.clone())
        v = beta * v + g
        theta = (1 - eta * decoupled) * theta - eta * ((g + beta * v) if nesterov else v)
        out.append(theta)
    return out


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
@pytest.mark.parametrize("decoupled", [0.0, 0.1])
def test_momentum_matches_a_hand_written_loop(nesterov, decoupled):
    net = SmallNet()
    opt = Momentum(beta=0.9, nesterov=nesterov, decoupled_weight_decay=decoupled)
    assert_same_trajectory(run_ours(opt, net, 0.2, 40), reference_momentum(net, 0.2, 0.9, nesterov, 40, decoupled))


def test_gd_step_is_the_plain_in_place_update():
    """GD must stay bit-identical to run_gd's θ.add_(g, alpha=-η); so must SGD with momentum 0."""
    net = SmallNet()
    theta, ref = net.theta0.clone(), net.theta0.clone()
    for k in range(20):
        g = net.grad(theta.clone())
        GD().step(theta, g, {}, k, 0.3)
        ref.add_(net.grad(ref.clone()), alpha=-0.3)
        assert torch.equal(theta, ref)
    theta_sgd = net.theta0.clone()
    for k in range(20):
        SGD(batch_size=16).step(theta_sgd, net.grad(theta_sgd.clone()), {}, k, 0.3)
    assert torch.equal(theta_sgd, ref)


def test_step_leaves_the_gradient_alone():
    for opt in (GD(l2=0.1, decoupled_weight_decay=0.1), Momentum(l2=0.1), Adam(l2=0.1), RMSProp(l2=0.1)):
        theta, g = torch.ones(3, dtype=F64), torch.arange(3.0, dtype=F64)
        opt.step(theta, g, opt.state_fields(theta), 0, 0.1)
        assert torch.equal(g, torch.arange(3.0, dtype=F64))


# Measures.

def test_batch_sharpness_equals_its_closed_form_on_least_squares():
    """L_B(θ) = ‖X_Bθ − y_B‖²/(2|B|): g_B = X_Bᵀ(X_Bθ − y_B)/|B|, H_B = X_BᵀX_B/|B|, by autograd vs numpy."""
    gen = torch.Generator().manual_seed(3)
    n, d, b = 23, 5, 5
    x, y, theta = (torch.randn(*shape, generator=gen, dtype=F64) for shape in ((n, d), (n,), (d,)))
    batches = [minibatch_indices(n, b, seed=7, k=j) for j in range(batches_per_epoch(n, b))]

    def loss(t, idx):
        return 0.5 * ((x[idx] @ t - y[idx]) ** 2).mean()

    def batch_gradient(idx):
        t = theta.clone().requires_grad_()
        return torch.autograd.grad(loss(t, idx), t)[0]

    def batch_hvp(idx, v):  # ∇(∇L_B · v)
        t = theta.clone().requires_grad_()
        g = torch.autograd.grad(loss(t, idx), t, create_graph=True)[0]
        return torch.autograd.grad(g @ v, t)[0]

    got = batch_sharpness(batches, batch_gradient, batch_hvp)
    xn, yn, tn = x.numpy(), y.numpy(), theta.numpy()
    ratios, num, den = [], 0.0, 0.0
    for idx in batches:
        xb, yb = xn[idx.numpy()], yn[idx.numpy()]
        g = xb.T @ (xb @ tn - yb) / len(yb)
        ghg = g @ (xb.T @ xb / len(yb)) @ g
        ratios.append(ghg / (g @ g))
        num, den = num + ghg, den + g @ g
    assert got.n_batches == 5 == len(batches) and [len(i) for i in batches] == [5, 5, 5, 5, 3]
    assert got.value == pytest.approx(np.mean(ratios), rel=1e-13)
    assert got.ratio_of_means == pytest.approx(num / den, rel=1e-13)
    assert got.stderr == pytest.approx(np.std(ratios, ddof=1) / math.sqrt(5), rel=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_preconditioned_sharpness_matches_eigvalsh(shift):
    gen = torch.Generator().manual_seed(4)
    d = 40
    m = torch.randn(d, d, generator=gen, dtype=F64)
    h = (m + m.T) / 2 + 3 * torch.eye(d, dtype=F64)  # indefinite, positive-dominated
    p = torch.exp(2 * torch.rand(d, generator=gen, dtype=F64))  # diagonal spread over [1, e²]
    sym = (h + shift * torch.eye(d, dtype=F64)) / torch.outer(p.sqrt(), p.sqrt())
    ev = torch.linalg.eigvalsh(sym)
    ref = float(ev[ev.abs().argmax()])
    got = preconditioned_sharpness(lambda v: h @ v, p, d, shift=shift, tol=1e-10)
    assert got.converged and got.value == pytest.approx(ref, rel=1e-9)
    nonsym = np.linalg.eigvals(np.diag(1 / p.numpy()) @ (h + shift * torch.eye(d, dtype=F64)).numpy())  # P⁻¹H directly
    assert got.value == pytest.approx(float(nonsym.real[np.abs(nonsym).argmax()]), rel=1e-9)
    with pytest.raises(ValueError, match="> 0"):
        preconditioned_sharpness(lambda v: h @ v, -p, d)


# Mini-batch order.

def test_epoch_permutation_is_a_function_of_seed_and_epoch_only():
    perms = [epoch_permutation(50, seed=3, epoch=e) for e in range(4)]
    for p in perms:
        assert torch.equal(torch.sort(p).values, torch.arange(50))
    assert not torch.equal(perms[0], perms[1]) and not torch.equal(perms[2], perms[3])
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(epoch_permutation(50, seed=3, epoch=2), perms[2])  # regenerated out of order: resumable
    assert not torch.equal(epoch_permutation(50, seed=4, epoch=0), perms[0])


def test_minibatches_visit_every_example_once_per_epoch():
    n, b, seed = 23, 5, 11
    per_epoch = batches_per_epoch(n, b)
    assert per_epoch == 5
    for epoch in range(3):
        seen = torch.cat([minibatch_indices(n, b, seed, epoch * per_epoch + j) for j in range(per_epoch)])
        assert torch.equal(seen, epoch_permutation(n, seed, epoch))
    sgd = SGD(batch_size=b)
    assert torch.equal(sgd.batch_indices(n, seed, 7), minibatch_indices(n, b, seed, 7))
    assert sgd.batches_per_epoch(n) == per_epoch


# Configuration.

def test_from_config_forms_and_round_trip():
    assert from_config(None) == GD()
    assert from_config({"name": "gd"}) == GD()
    assert from_config({"name": "momentum", "beta": 0.9, "nesterov": False}) == Momentum(beta=0.9)
    assert from_config({"name": "sgd", "batch_size": 128, "momentum": 0}) == SGD(batch_size=128)
    assert from_config({"name": "rmsprop", "beta2": 0.99, "eps": 1e-8}) == RMSProp()
    assert from_config({"name": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}) == Adam()
    assert from_config({"name": "adam", "decoupled_weight_decay": 0.01}).decoupled_weight_decay == 0.01
    for opt in (GD(l2=0.1), Momentum(beta=0.5, nesterov=True), SGD(batch_size=3, momentum=0.9),
                RMSProp(eps=1e-6, decoupled_weight_decay=0.2), Adam(beta1=0.0, l2=1.0)):
        assert from_config(opt.as_config()) == opt
    assert Momentum().as_config() == {"name": "momentum", "l2": 0.0, "decoupled_weight_decay": 0.0, "beta": 0.9,
                                      "nesterov": False}


BAD_CONFIGS = [
    ({"name": "lbfgs"}, ["optimizer.name", "'lbfgs'", "allowed: adam, gd, momentum, rmsprop, sgd"]),
    ({"beta": 0.9}, ["needs a name", "allowed: adam, gd"]),
    ("adam", ["must be a mapping"]),
    ({"name": "momentum", "betas": 0.9}, ["unknown key 'betas'", "allowed: name, l2, decoupled_weight_decay, beta"]),
    ({"name": "gd", "beta": 0.9}, ["(gd)", "unknown key 'beta'"]),
    ({"name": "adam", "weight_decay": 0.1}, ["ambiguous", "l2", "decoupled_weight_decay"]),
    ({"name": "momentum", "beta": 1.0}, ["beta is 1.0", "0 ≤ beta < 1"]),
    ({"name": "momentum", "beta": -0.1}, ["beta is -0.1", "0 ≤ beta < 1"]),
    ({"name": "momentum", "beta": True}, ["must be a number"]),
    ({"name": "momentum", "nesterov": "yes"}, ["nesterov is 'yes'", "allowed: true, false"]),
    ({"name": "sgd", "batch_size": 8, "momentum": 1.5}, ["momentum is 1.5", "0 ≤ momentum < 1"]),
    ({"name": "adam", "beta1": 1.0}, ["beta1", "0 ≤ beta1 < 1"]),
    ({"name": "rmsprop", "beta2": 1.0}, ["beta2", "0 ≤ beta2 < 1"]),
    ({"name": "adam", "eps": 0.0}, ["eps is 0.0", "> 0"]),
    ({"name": "gd", "l2": -0.1}, ["l2 is -0.1", "≥ 0"]),
    ({"name": "adam", "decoupled_weight_decay": -1}, ["decoupled_weight_decay is -1.0", "≥ 0"]),
    ({"name": "sgd"}, ["batch_size is required"]),
    ({"name": "sgd", "batch_size": 0}, ["batch_size is 0", "integer ≥ 1"]),
    ({"name": "sgd", "batch_size": 2.5}, ["batch_size is 2.5", "integer ≥ 1"]),
]


@pytest.mark.parametrize("config, needles", BAD_CONFIGS, ids=[str(c) for c, _ in BAD_CONFIGS])
def test_bad_config_names_the_key_and_what_is_allowed(config, needles):
    with pytest.raises(ConfigError) as err:
        from_config(config)
    for needle in needles:
        assert needle in str(err.value)


def test_batch_size_larger_than_the_training_set():
    check_batch_size(100, 100)
    with pytest.raises(ConfigError, match=r"batch_size is 101, larger than the training set \(n_train = 100\)"):
        check_batch_size(101, 100)
