"""Gradient descent and the optimisers of normsharp.optimizers from a fixed θ₀, with checkpoints and a trajectory.

GD:  θ_{k+1} = θ_k − η ∇L(θ_k), stopped at the first k with L(θ_k) < ε; any other optimiser replaces the update by
its ``step`` (momentum, mini-batch SGD, RMSProp, Adam, weight decay) and adds its own sharpness against its edge
c/η to the trajectory. A run ends with a status, never an exception: 'converged', 'max_steps' or 'diverged'
(non-finite loss, or loss above ``divergence_factor`` × L(θ₀)). Between steps a run is its RunState (GDState,
OptimizerState; the gradient flow's in ``normsharp.flow``), which resumes from and saves to a Checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

from .checkpoint import Checkpoint
from .eigen import sharpness
from .objective import Objective
from .optimizers import GD, Optimizer, minibatch_indices
from .stability import batch_sharpness, preconditioned_sharpness

log = logging.getLogger("normsharp")

CONVERGED, MAX_STEPS, DIVERGED = "converged", "max_steps", "diverged"


@dataclass
class RunResult:
    """Where a run stopped and how it got there. ``time`` is η·steps for GD, t for GF."""

    status: str
    steps: int
    theta: torch.Tensor
    train_loss: float
    time: float
    trajectory: list[dict]
    n_grad: int
    n_hvp: int
    sharpness_vector: torch.Tensor | None = None  # last eigenvector, to warm-start later solves
    extra: dict = field(default_factory=dict)


@dataclass
class RunState:
    """Everything a run needs to go on bit for bit where it stopped: saved by ``save``, restored by ``resume``.

    Common to all runs: the step k, θ_k, the trajectory so far, the gradient and Hessian-vector products used,
    the last top eigenvector (warm start of the next Lanczos solve) and L(θ₀) (the divergence test). An
    optimiser with a state (momentum's velocity, Adam's moments) runs as an :class:`OptimizerState`, which adds
    that state by name; a loop reads and writes ``state.theta``, ``state.step`` … between
    ``state = GDState.resume(checkpoint, theta0)`` and ``state.save(checkpoint)``. The class name is the
    checkpoint's ``kind`` (renaming one orphans its checkpoints). Fields hold
    tensors, numbers, strings, None and lists/tuples/dicts of them: checkpoints load with weights_only=True.
    """

    step: int = 0
    theta: torch.Tensor | None = None
    trajectory: list[dict] = field(default_factory=list)
    n_grad: int = 0
    n_hvp: int = 0
    vec: torch.Tensor | None = None
    loss0: float | None = None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        """The state from ``to_dict()``'s output, or from a first-release checkpoint (the same keys)."""
        names = {f.name for f in fields(cls)}
        if set(state) != names:
            raise ValueError(f"holds the fields {sorted(state)}, not those of a {cls.__name__}: {sorted(names)}")
        return cls(**state)

    @classmethod
    def resume(cls, checkpoint: Checkpoint | None, theta0: torch.Tensor) -> RunState:
        """The state saved in ``checkpoint`` on θ₀'s device (θ in its dtype), else a fresh one at θ₀."""
        saved = checkpoint.load(cls) if checkpoint else None
        if saved is None:
            return cls(theta=theta0.detach().clone())  # θ is the run's own buffer (GD updates it in place)
        for f in fields(saved):
            setattr(saved, f.name, _to_device(getattr(saved, f.name), theta0.device))
        saved.theta = saved.theta.to(theta0)
        return saved

    def save(self, checkpoint: Checkpoint | None) -> None:
        """Write the state to ``checkpoint`` if one is due at this step."""
        if checkpoint and checkpoint.due(self.step):
            checkpoint.save(self)

    def result(self, status: str, loss: float, time: float, result_type: type[RunResult] = RunResult,
               **more) -> RunResult:
        return result_type(status, self.step, self.theta, loss, time, self.trajectory, self.n_grad,
                           self.n_hvp, self.vec, **more)


def _to_device(value, device: torch.device):
    """``value`` with every tensor inside it (lists, tuples, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


@dataclass
class GDState(RunState):
    """Plain GD: θ_{k+1} = θ_k − η∇L(θ_k) needs nothing beyond the common fields (nor does any optimiser without a
    state: GD with weight decay, SGD without momentum, whose batch order is a function of (seed, k))."""


@dataclass
class OptimizerState(RunState):
    """An optimiser's state between steps (``Optimizer.state_fields``: momentum's velocity, Adam's moments …) by
    name, and the last eigenvector of its preconditioned sharpness (the warm start of the next solve)."""

    opt_state: dict = field(default_factory=dict)
    opt_vec: torch.Tensor | None = None


def _status(loss: float, loss0: float, threshold: float, step: int, max_steps: int, factor: float) -> str | None:
    if not math.isfinite(loss) or loss > factor * loss0:
        return DIVERGED
    if loss < threshold:
        return CONVERGED
    if step >= max_steps:
        return MAX_STEPS
    return None


class _Progress:
    """A run's progress, at most every ``seconds`` of wall time (and always when forced): a log line, and
    ``report(step=, loss=, sharpness=, steps_per_second=, **more)`` when given (the job's progress.json,
    :class:`normsharp.progress.ProgressFile`). ``sharpness`` is the last S computed (NaN before the first);
    ``steps_per_second`` counts the steps since the previous report (NaN at the first)."""

    def __init__(self, label: str, seconds: float, report: Callable[..., None] | None = None):
        self.label, self.seconds, self.last, self.report = label, seconds, -math.inf, report
        self.last_step, self.last_s = None, math.nan

    def __call__(self, step: int, loss: float, s: float, force: bool = False, **more) -> None:
        if math.isfinite(s):
            self.last_s = s
        now = time.monotonic()
        if force or now - self.last >= self.seconds:
            rate = math.nan if self.last_step is None else (step - self.last_step) / max(now - self.last, 1e-9)
            self.last, self.last_step = now, step
            tail = " ".join(f"{k}={v:.6g}" for k, v in more.items())
            log.info("%s step=%d loss=%.6g sharpness=%.6g %s", self.label, step, loss, s, tail)
            if self.report is not None:
                self.report(step=step, loss=loss, sharpness=self.last_s, steps_per_second=rate, **more)


def run_gd(objective: Objective, theta0: torch.Tensor, eta: float, *, loss_threshold: float, max_steps: int,
           log_every: int = 10, sharpness_every: int = 0, sharpness_tol: float = 1e-4,
           divergence_factor: float = 1e3, checkpoint: Checkpoint | None = None,
           progress_seconds: float = 10.0, observe: Callable[[torch.Tensor], dict] | None = None,
           observe_every: int = 0, optimizer: Optimizer | None = None, seed: int = 0,
           batch_sharpness_batches: int = 8, report: Callable[..., None] | None = None) -> RunResult:
    """GD (or ``optimizer``'s update, default plain GD) at fixed η from θ₀ until L(θ_k) < ε, k = max_steps, or
    divergence.

    Every ``log_every`` steps the trajectory records (step, time, train_loss, sharpness, edge), the loss coming
    from the gradient's own forward pass; every ``sharpness_every`` steps (0 = never) S is computed by Lanczos
    warm-started from the previous eigenvector, and beside it ``opt_sharpness``, the optimiser's own sharpness
    that meets ``edge`` = c/η (:func:`own_sharpness`). Every ``observe_every`` steps (0 = never) and at the
    end, the row also gets the columns ``observe(θ)`` returns (e.g. the test loss). At most every
    ``progress_seconds`` a log line and ``report(...)`` (:class:`_Progress`) tell how far the run is.

    Mini-batch SGD steps on ∇L_B(θ_k), B = ``optimizer.batch_indices(n, seed, k)`` (the run's ``seed`` fixes
    the batch order), and checks the full loss L(θ_k), hence the status, at every epoch start and every row;
    ``n_grad`` counts its batch gradients. For an optimiser whose sharpness is not the Hessian's (adaptive,
    SGD) the result's ``extra`` holds the final ``opt_sharpness`` (NaN when diverged); it always holds the
    optimiser's final ``optimizer_state``.
    """
    opt = GD() if optimizer is None else optimizer
    kind = OptimizerState if opt.state_fields(theta0) else GDState
    state = kind.resume(checkpoint, theta0)
    if kind is OptimizerState and not state.opt_state:
        state.opt_state = opt.state_fields(state.theta)
    edge = opt.threshold(eta)
    progress = _Progress(f"{opt.name} eta={eta:.6g}", progress_seconds, report)
    full_batch = opt.full_batch
    loss_and_grad = objective.in_place_gradient(state.theta) if full_batch else None
    per_epoch = 1 if full_batch else opt.batches_per_epoch(objective.n)

    def measure() -> tuple[float, float]:
        hvp = objective.hessian_at(state.theta)
        eig = sharpness(hvp, objective.dim, tol=sharpness_tol, v0=state.vec, dtype=state.theta.dtype,
                        device=state.theta.device)
        state.vec, state.n_hvp = eig.vector, state.n_hvp + eig.n_matvec
        return eig.value, own_sharpness(objective, opt, state, hvp, eig.value, seed, batch_sharpness_batches,
                                        sharpness_tol)

    while True:
        checked = full_batch or state.step >= max_steps or any(
            every and state.step % every == 0 for every in (per_epoch, log_every, observe_every))
        if full_batch:
            loss_t, grad = loss_and_grad()
            state.n_grad += 1
            loss = float(loss_t)
        else:
            loss = float(objective.loss(state.theta)) if checked else math.nan
        state.loss0 = loss if state.loss0 is None else state.loss0
        status = _status(loss, state.loss0, loss_threshold, state.step, max_steps, divergence_factor) if checked \
            else None
        if status is None and not full_batch:
            batch = objective.subset(opt.batch_indices(objective.n, seed, state.step))
            batch_loss, grad = batch.loss_and_grad(state.theta)
            state.n_grad += 1
            if not math.isfinite(float(batch_loss)):
                loss, status = float(objective.loss(state.theta)), DIVERGED
        s = s_opt = math.nan
        if sharpness_every and state.step % sharpness_every == 0 and status != DIVERGED:
            s, s_opt = measure()
        seen = _observed(observe, observe_every, state.step, status, state.theta)
        if state.step % log_every == 0 or status is not None or seen:
            state.trajectory.append(dict(step=state.step, time=state.step * eta, train_loss=loss, sharpness=s,
                                         opt_sharpness=s_opt, edge=edge, **seen))
        progress(state.step, loss, s, force=status is not None or state.step == 0)
        if status is not None:
            extra = {"optimizer_state": getattr(state, "opt_state", {})}
            if opt.edge_measure != "hessian":
                final = math.nan
                if status != DIVERGED:
                    final = s_opt if not math.isnan(s) else measure()[1]
                extra["opt_sharpness"] = final
            return state.result(status, loss, state.step * eta, extra=extra)
        opt.step(state.theta, grad, getattr(state, "opt_state", {}), state.step, eta)
        state.step += 1
        state.save(checkpoint)


def own_sharpness(objective: Objective, opt: Optimizer, state: RunState, hvp, s: float, seed: int,
                  batches: int, tol: float) -> float:
    """The sharpness that ``opt``'s edge c/η meets, at θ_k = ``state.theta`` (k = ``state.step``), S = ``s``:

    * "hessian": S + ``sharpness_shift`` (GD, momentum, Nesterov; the shift is what weight decay adds);
    * "preconditioned": λ_max(P⁻¹(H + l2·I)), P the preconditioner of step k − 1 (the one θ_k was reached with;
      NaN at k = 0, where there is none), warm-started from the last one's eigenvector;
    * "batch": the batch sharpness E_B[g_BᵀH_Bg_B/‖g_B‖²] of the batch loss with l2 over the first ``batches``
      full batches of the epoch of step k (normsharp.stability.batch_sharpness), plus the decoupled shift.
    """
    if opt.edge_measure == "hessian":
        return s + opt.sharpness_shift
    theta = state.theta
    if opt.edge_measure == "preconditioned":
        if state.step == 0:
            return math.nan
        eig = preconditioned_sharpness(hvp, opt.preconditioner(state.opt_state, state.step - 1), objective.dim,
                                       shift=opt.l2, tol=tol, v0=state.opt_vec)
        state.opt_vec, state.n_hvp = eig.vector, state.n_hvp + eig.n_matvec
        return eig.value
    n, b = objective.n, opt.batch_size
    first = state.step - state.step % opt.batches_per_epoch(n)
    subsets = [objective.subset(minibatch_indices(n, b, seed, first + j)) for j in range(min(batches, n // b))]
    l2 = opt.l2  # the batch loss the step sees is L_B + ½·l2·‖θ‖²: gradient g_B + l2·θ, Hessian H_B + l2·I
    result = batch_sharpness(subsets, lambda o: o.loss_and_grad(theta)[1].add(theta, alpha=l2),
                             lambda o, v: o.hessian_at(theta)(v).add(v, alpha=l2))
    state.n_grad, state.n_hvp = state.n_grad + result.n_batches, state.n_hvp + result.n_hvp
    return result.value + opt.sharpness_shift - l2


def _observed(observe, every: int, step: int, status: str | None, theta: torch.Tensor) -> dict:
    """observe(θ) when due (every ``every`` steps and at a non-diverged end), else {}."""
    due = observe is not None and every and (step % every == 0 or status is not None) and status != DIVERGED
    return observe(theta) if due else {}


