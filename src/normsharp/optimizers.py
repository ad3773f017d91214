"""Optimisers over a flat parameter vector θ, each with its own stability edge (issue 22).

Every optimiser is a frozen dataclass of hyper-parameters with

* ``state_fields(θ)`` → the initial state, a dict of tensors shaped like θ (empty for GD);
* ``step(θ, g, state, k, η)`` → one update of θ and the state, in place; g = ∇L(θ_k) (or a mini-batch
  gradient for SGD) is not modified; k is the 0-based step index (Adam's bias correction uses k + 1);
* ``edge_constant`` c and ``threshold(η) = c/η``, the value the optimiser's own sharpness is compared with;
* ``edge_measure``: which sharpness that is — "hessian" (S = λ_max(H)), "preconditioned" (λ_max(P⁻¹H), see
  ``preconditioner``) or "batch" (batch sharpness, normsharp.stability);
* ``sharpness_shift``: what weight decay adds to the sharpness before it meets c/η (below);
* ``critical_lr(s_GF)`` → the predicted η_c = c/(s_GF + shift) where a flow limit gives one, NaN otherwise.

Weight decay, for any optimiser, under two names that cannot be confused:

* ``l2`` = λ, coupled: ½λ‖θ‖² is added to the loss, so the gradient the optimiser sees is g + λθ
  (torch's ``weight_decay`` of SGD, RMSprop and Adam). Its Hessian is H + λI: shift λ.
* ``decoupled_weight_decay`` = λ, AdamW-style: θ ← (1 − ηλ)θ first, then the optimiser's step from the
  (coupled) gradient taken at the old θ (torch's AdamW). On a quadratic the linear recurrence gives the edge
  h + f·λ = c/η with f = 1 (GD), 1 + β (heavy ball), (1 + β)/(1 + 2β) (Nesterov): shift f·λ. For the adaptive
  methods P and H need not commute and no such shift exists: theirs counts l2 only.

Thresholds and their sources (c/η; each is the edge of the linear recurrence on L = ½θᵀHθ, re-derived in the
class docstrings and checked on quadratics in tests/test_optimizers.py):

* GD: 2/η (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the edge of stability").
* Heavy ball: (2 + 2β)/η; Nesterov (PyTorch form): (2 + 2β)/((1 + 2β)η) (Cohen et al. 2021, appendix).
* RMSProp / Adam: λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)η), 38/η at β₁ = 0.9, 2/η for RMSProp (β₁ = 0)
  (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability", arXiv 2207.14484).
* SGD: batch sharpness E_B[g_BᵀH_Bg_B/‖g_B‖²] against 2/η (Andreyev & Beneventano 2024, "Edge of stochastic
  stability", arXiv 2412.20553); with momentum β the heavy-ball constant (2 + 2β)/η is used — the full-batch
  edge (batch = n_train), not a value that paper establishes.

Mini-batch order: ``epoch_permutation(n, seed, e)`` draws epoch e's order without replacement from
(seed, e) alone, so a run resumes bit for bit from any step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from normsharp.errors import ConfigError

if TYPE_CHECKING:
    import torch

    State = dict[str, torch.Tensor]

# torch and numpy are imported inside the two functions that need them (mini-batch order): the workflow validates
# each setup's optimizer with from_config while it builds the DAG, without loading torch.


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    """Shared parts: weight decay (module docstring), threshold c/η, critical η_c, config round trip."""

    l2: float = 0.0
    decoupled_weight_decay: float = 0.0

    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False
    full_batch: ClassVar[bool] = True
    edge_measure: ClassVar[str] = "hessian"

    def __post_init__(self):
        _check_nonnegative(self.name, "l2", self.l2)
        _check_nonnegative(self.name, "decoupled_weight_decay", self.decoupled_weight_decay)

    @property
    def edge_constant(self) -> float:
        raise NotImplementedError

    def _decoupled_factor(self) -> float:
        """f in the edge h + f·λ_decoupled = c/η of the linear recurrence (module docstring); 0 if none."""
        return 0.0

    @property
    def sharpness_shift(self) -> float:
        """What is added to S = λ_max(H) of the unregularised loss before it is compared with c/η: l2 + f·λ_dec.

        For the adaptive methods only l2 counts, and it enters as P⁻¹(H + l2·I) (stability.preconditioned_sharpness
        with ``shift``), not as an additive shift of λ_max(P⁻¹H)."""
        return self.l2 + self._decoupled_factor() * self.decoupled_weight_decay

    def threshold(self, eta: float) -> float:
        """The edge c/η that this optimiser's sharpness (``edge_measure``, plus ``sharpness_shift``) meets."""
        return self.edge_constant / eta

    def critical_lr(self, s_gf: float) -> float:
        """η_c = c/(s_GF + shift): the η at which the gradient flow's (η → 0 limit's) sharpness meets the edge."""
        s = s_gf + self.sharpness_shift
        return self.edge_constant / s if s > 0 else math.nan

    def state_fields(self, theta: torch.Tensor) -> State:
        return {}

    def step(self, theta: torch.Tensor, grad: torch.Tensor, state: State, k: int, eta: float) -> None:
        raise NotImplementedError

    def as_config(self) -> dict[str, Any]:
        """The canonical config dict (every key, defaults filled in); from_config(as_config()) == self."""
        return {"name": self.name, **asdict(self)}

    # Weight decay, applied the same way by every step (module docstring).
    def _coupled(self, theta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """g + λ_l2·θ as a new tensor (torch's grad.add(param, alpha=weight_decay)); g itself when l2 = 0."""
        return grad.add(theta, alpha=self.l2) if self.l2 != 0 else grad

    def _decay(self, theta: torch.Tensor, eta: float) -> None:
        """θ ← (1 − ηλ)θ for decoupled weight decay λ (torch AdamW's param.mul_(1 − lr·weight_decay))."""
        if self.decoupled_weight_decay != 0:
            theta.mul_(1 - eta * self.decoupled_weight_decay)


@dataclass(frozen=True, kw_only=True)
class GD(Optimizer):
    """Plain gradient descent: θ_{k+1} = θ_k − η g_k, exactly ``θ.add_(g, alpha=-η)`` (bit-identical to run_gd).

    Edge (L = ½θᵀHθ): θ_{k+1} = (1 − ηh)θ_k on each eigenvalue h is stable iff h < 2/η: c = 2.
    """

    name: ClassVar[str] = "gd"

    @property
    def edge_constant(self) -> float:
        return 2.0

    def _decoupled_factor(self) -> float:
        return 1.0  # (1 − ηλ)θ − ηhθ: the edge is h + λ = 2/η

    def step(self, theta, grad, state, k, eta):
        g = self._coupled(theta, grad)
        self._decay(theta, eta)
        theta.add_(g, alpha=-eta)


def _heavy_ball_step(opt: Optimizer, beta: float, nesterov: bool, theta, grad, state, eta) -> None:
    """torch.optim.SGD's momentum step (dampening 0) on flat θ: v ← βv + g; θ ← θ − η(v or g + βv)."""
    g = opt._coupled(theta, grad)
    opt._decay(theta, eta)
    v = state["velocity"]
    v.mul_(beta).add_(g)
    theta.add_(g.add(v, alpha=beta) if nesterov else v, alpha=-eta)


def _momentum_edge(beta: float, nesterov: bool) -> float:
    return (2 + 2 * beta) / (1 + 2 * beta) if nesterov else 2 + 2 * beta


def _momentum_decoupled_factor(beta: float, nesterov: bool) -> float:
    return (1 + beta) / (1 + 2 * beta) if nesterov else 1 + beta


@dataclass(frozen=True, kw_only=True)
class Momentum(Optimizer):
    """Full-batch momentum, PyTorch convention (torch.optim.SGD, dampening 0, buffer v₀ = 0):

    heavy ball  v_{k+1} = β v_k + g_k,   θ_{k+1} = θ_k − η v_{k+1};
    Nesterov    v_{k+1} = β v_k + g_k,   θ_{k+1} = θ_k − η (g_k + β v_{k+1}),   g_k = ∇L(θ_k).

    Edge on an eigenvalue h of H (x = ηh): heavy ball z² − (1 + β − x)z + β = 0 has a root at z = −1 when
    x = 2 + 2β; Nesterov z² − (1 + β − (1 + β)x)z + β(1 − x) = 0 when x(1 + 2β) = 2 + 2β. So c = 2 + 2β and
    (2 + 2β)/(1 + 2β) (Cohen et al. 2021, appendix; the buffer scaling there, v ← βv − η g, has the same edge).
    """

    beta: float = 0.9
    nesterov: bool = False

    name: ClassVar[str] = "momentum"

    def __post_init__(self):
        super().__post_init__()
        _check_beta(self.name, "beta", self.beta)
        _check_bool(self.name, "nesterov", self.nesterov)

    @property
    def edge_constant(self) -> float:
        return _momentum_edge(self.beta, self.nesterov)

    def _decoupled_factor(self) -> float:
        return _momentum_decoupled_factor(self.beta, self.nesterov)

    def state_fields(self, theta):
        return {"velocity": theta.new_zeros(theta.shape)}

    def step(self, theta, grad, state, k, eta):
        _heavy_ball_step(self, self.beta, self.nesterov, theta, grad, state, eta)


@dataclass(frozen=True, kw_only=True)
class SGD(Optimizer):
    """Mini-batch SGD: the GD / momentum update (Momentum's maths, β = ``momentum``) with g_k = ∇L_{B_k}(θ_k),
    the mean loss over batch B_k of ``batch_size`` examples, drawn by ``minibatch_indices`` (each example once
    per epoch, the order of epoch e from (seed, e) only; the last batch of an epoch holds the remainder).

    With momentum 0 the step is exactly GD's θ.add_(g, alpha=-η). Edge: batch sharpness against 2/η
    (Andreyev & Beneventano 2024); with momentum, the heavy-ball (2 + 2β)/η (Nesterov (2 + 2β)/((1 + 2β)η)),
    which is the full-batch edge when batch_size = n_train.
    """

    batch_size: int
    momentum: float = 0.0
    nesterov: bool = False

    name: ClassVar[str] = "sgd"
    full_batch: ClassVar[bool] = False
    edge_measure: ClassVar[str] = "batch"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"optimizer.batch_size is {self.batch_size!r} (sgd); must be an integer ≥ 1")
        _check_beta(self.name, "momentum", self.momentum)
        _check_bool(self.name, "nesterov", self.nesterov)

    @property
    def edge_constant(self) -> float:
        return _momentum_edge(self.momentum, self.nesterov)

    def _decoupled_factor(self) -> float:
        return _momentum_decoupled_factor(self.momentum, self.nesterov)

    def state_fields(self, theta):
        return {"velocity": theta.new_zeros(theta.shape)} if self.momentum else {}

    def step(self, theta, grad, state, k, eta):
        if self.momentum:
            _heavy_ball_step(self, self.momentum, self.nesterov, theta, grad, state, eta)
        else:
            g = self._coupled(theta, grad)
            self._decay(theta, eta)
            theta.add_(g, alpha=-eta)

    def batches_per_epoch(self, n_train: int) -> int:
        return batches_per_epoch(n_train, self.batch_size)

    def batch_indices(self, n_train: int, seed: int, k: int) -> torch.Tensor:
        """The example indices of step k's batch (``minibatch_indices``)."""
        return minibatch_indices(n_train, self.batch_size, seed, k)


class _Adaptive(Optimizer):
    adaptive: ClassVar[bool] = True
    edge_measure: ClassVar[str] = "preconditioned"

    def critical_lr(self, s_gf: float) -> float:
        """NaN: no flow limit gives η_c. As η → 0 the update tends to −η m̂/(√v̂ + ε) with v̂ ≈ g², a sign-like
        flow whose P = √v̂ + ε shrinks with the gradient, so λ_max(P⁻¹H) along it grows without bound as the
        loss falls (up to ~λ_max(H)/ε): every η meets the edge eventually, and η grids must be absolute."""
        return math.nan

    def preconditioner(self, state: State, k: int) -> torch.Tensor:
        """diag P after step k (0-based), such that that step was θ_{k+1} = θ_k − η P⁻¹ m_{k+1}."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class RMSProp(_Adaptive):
    """RMSProp as torch.optim.RMSprop (α = beta2, no momentum, not centred, no bias correction):

    v_{k+1} = β₂ v_k + (1 − β₂) g_k²,   θ_{k+1} = θ_k − η g_k / (√v_{k+1} + ε)   (ε outside the root).

    Edge: with P = diag(√v + ε) frozen, θ_{k+1} = θ_k − η P⁻¹Hθ_k is GD on P^{-1/2}HP^{-1/2}, stable iff
    λ_max(P⁻¹H) < 2/η (Cohen et al. 2022, β₁ = 0 of the Adam threshold).
    """

    beta2: float = 0.99
    eps: float = 1e-8

    name: ClassVar[str] = "rmsprop"

    def __post_init__(self):
        super().__post_init__()
        _check_beta(self.name, "beta2", self.beta2)
        _check_positive(self.name, "eps", self.eps)

    @property
    def edge_constant(self) -> float:
        return 2.0

    def state_fields(self, theta):
        return {"square_avg": theta.new_zeros(theta.shape)}

    def step(self, theta, grad, state, k, eta):
        g = self._coupled(theta, grad)
        self._decay(theta, eta)
        v = state["square_avg"]
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        theta.addcdiv_(g, v.sqrt().add_(self.eps), value=-eta)

    def preconditioner(self, state, k):
        return state["square_avg"].sqrt().add_(self.eps)


@dataclass(frozen=True, kw_only=True)
class Adam(_Adaptive):
    """Adam with bias correction, as torch.optim.Adam (AdamW with ``decoupled_weight_decay``), t = k + 1:

    m_{k+1} = β₁ m_k + (1 − β₁) g_k,   v_{k+1} = β₂ v_k + (1 − β₂) g_k²,
    θ_{k+1} = θ_k − η/(1 − β₁ᵗ) · m_{k+1} / (√(v_{k+1}/(1 − β₂ᵗ)) + ε).

    Written as θ_{k+1} = θ_k − η P⁻¹ m_{k+1} with P = (1 − β₁ᵗ) diag(√v̂ + ε), v̂ = v_{k+1}/(1 − β₂ᵗ) (Cohen
    et al. 2022 fold the first-moment bias correction into P the same way; it tends to 1). Edge: with P frozen,
    u = P^{1/2}θ follows EMA momentum on A = P^{-1/2}HP^{-1/2}, i.e. heavy ball with step η(1 − β₁), stable iff
    λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁)η) — 38/η at β₁ = 0.9.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name: ClassVar[str] = "adam"

    def __post_init__(self):
        super().__post_init__()
        _check_beta(self.name, "beta1", self.beta1)
        _check_beta(self.name, "beta2", self.beta2)
        _check_positive(self.name, "eps", self.eps)

    @property
    def edge_constant(self) -> float:
        return (2 + 2 * self.beta1) / (1 - self.beta1)

    def state_fields(self, theta):
        return {"exp_avg": theta.new_zeros(theta.shape), "exp_avg_sq": theta.new_zeros(theta.shape)}

    def step(self, theta, grad, state, k, eta):
        g = self._coupled(theta, grad)
        self._decay(theta, eta)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        t = k + 1
        denom = (v.sqrt() / (1 - self.beta2**t) ** 0.5).add_(self.eps)
        theta.addcdiv_(m, denom, value=-(eta / (1 - self.beta1**t)))

    def preconditioner(self, state, k):
        t = k + 1
        return (state["exp_avg_sq"].sqrt() / (1 - self.beta2**t) ** 0.5).add_(self.eps).mul_(1 - self.beta1**t)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (GD, Momentum, SGD, RMSProp, Adam)}


def from_config(config: dict[str, Any] | None) -> Optimizer:
    """The optimiser of a setup's ``optimizer`` entry; absent (None) means plain GD.

    Forms: {name: gd}; {name: momentum, beta: 0.9, nesterov: false}; {name: sgd, batch_size: 128,
    momentum: 0.0, nesterov: false}; {name: rmsprop, beta2: 0.99, eps: 1e-8}; {name: adam, beta1: 0.9,
    beta2: 0.999, eps: 1e-8}; each may add ``l2`` (coupled) and ``decoupled_weight_decay`` (AdamW-style).
    """
    if config is None:
        return GD()
    if not isinstance(config, dict):
        raise ConfigError(f"optimizer is {config!r}; must be a mapping such as {{name: gd}}")
    allowed_names = ", ".join(sorted(OPTIMIZERS))
    if "name" not in config:
        raise ConfigError(f"optimizer needs a name; allowed: {allowed_names}")
    name = config["name"]
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name is {name!r}; allowed: {allowed_names}")
    cls = OPTIMIZERS[name]
    keys = [f.name for f in fields(cls)]
    for key in config:
        if key == "name":
            continue
        if key == "weight_decay":
            raise ConfigError(f"optimizer.weight_decay is ambiguous ({name}); write l2 (coupled: ½λ‖θ‖² added "
                              f"to the loss) or decoupled_weight_decay (AdamW-style θ ← θ − ηλθ)")
        if key not in keys:
            raise ConfigError(f"optimizer.{key}: unknown key {key!r} ({name}); allowed: name, {', '.join(keys)}")
    if cls is SGD and "batch_size" not in config:
        raise ConfigError("optimizer.batch_size is required (sgd): an integer ≥ 1, at most n_train")
    values = {}
    for key, value in config.items():
        if key in ("batch_size", "nesterov"):  # an int and a bool, checked by the class
            values[key] = value
        elif key != "name":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"optimizer.{key} is {value!r} ({name}); must be a number")
            values[key] = float(value)
    return cls(**values)


def check_batch_size(batch_size: int, n_train: int) -> None:
    """ConfigError unless 1 ≤ batch_size ≤ n_train (checked where n_train is known)."""
    if batch_size > n_train:
        raise ConfigError(f"optimizer.batch_size is {batch_size}, larger than the training set (n_train = "
                          f"{n_train}); allowed: 1 to {n_train}")
    if batch_size < 1:
        raise ConfigError(f"optimizer.batch_size is {batch_size}; must be an integer ≥ 1")


def _check_beta(name: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"optimizer.{key} is {value!r} ({name}); allowed: 0 ≤ {key} < 1")


def _check_nonnegative(name: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ConfigError(f"optimizer.{key} is {value!r} ({name}); must be a finite number ≥ 0")


def _check_positive(name: str, key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"optimizer.{key} is {value!r} ({name}); must be a finite number > 0")


def _check_bool(name: str, key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"optimizer.{key} is {value!r} ({name}); allowed: true, false")


# Mini-batch order.
_BATCH_ORDER_TAG = 0x5EED_BA7C  # separates this stream from any other use of the run's seed


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the n training examples in epoch ``epoch``: torch.randperm from a Generator seeded with
    SeedSequence(seed, spawn_key=(tag, epoch)) — a function of (seed, epoch) alone, so any epoch can be
    regenerated on resume without replaying the earlier ones."""
    import numpy as np
    import torch

    if seed < 0 or epoch < 0:
        raise ValueError(f"seed ({seed}) and epoch ({epoch}) must be ≥ 0")
    key = np.random.SeedSequence(seed, spawn_key=(_BATCH_ORDER_TAG, epoch)).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator().manual_seed(int(key) & (2**63 - 1))
    return torch.randperm(n, generator=gen)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """⌈n / batch_size⌉: the last batch of each epoch holds the n mod batch_size leftover examples (if any)."""
    return -(-n // batch_size)


def minibatch_indices(n: int, batch_size: int, seed: int, k: int) -> torch.Tensor:
    """Step k's batch: slice k mod ⌈n/b⌉ of epoch_permutation(n, seed, k div ⌈n/b⌉) — without replacement
    within an epoch, every example exactly once per epoch."""
    per_epoch = batches_per_epoch(n, batch_size)
    epoch, j = divmod(k, per_epoch)
    return epoch_permutation(n, seed, epoch)[j * batch_size:(j + 1) * batch_size]
