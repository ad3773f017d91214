"""Full-batch gradient descent and gradient flow from a fixed θ₀, with checkpoints and a trajectory.

GD:  θ_{k+1} = θ_k − η ∇L(θ_k), stopped at the first k with L(θ_k) < ε.
GF:  dθ/dt = −∇L(θ) by classical RK4 with step h = α/S(θ), S refreshed every few steps (warm-started);
     stopped when L < ε at time t_ε; s_GF = max over the computed S along the way; η_c = 2/s_GF.
A run ends with a status, never an exception: 'converged', 'max_steps' or 'diverged' (non-finite loss,
or loss above ``divergence_factor`` × L(θ₀)).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .checkpoint import Checkpoint
from .eigen import sharpness
from .objective import Objective

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
class FlowResult(RunResult):
    """A gradient-flow run: s_GF = max S along it, η_c = 2/s_GF, S at its end."""

    s_gf: float = math.nan
    eta_c: float = math.nan
    final_sharpness: float = math.nan


def _status(loss: float, loss0: float, threshold: float, step: int, max_steps: int, factor: float) -> str | None:
    if not math.isfinite(loss) or loss > factor * loss0:
        return DIVERGED
    if loss < threshold:
        return CONVERGED
    if step >= max_steps:
        return MAX_STEPS
    return None


class _Progress:
    """Logs a line at most every ``seconds`` of wall time (and always when forced)."""

    def __init__(self, label: str, seconds: float):
        self.label, self.seconds, self.last = label, seconds, -math.inf

    def __call__(self, step: int, loss: float, s: float, force: bool = False, **more) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.seconds:
            self.last = now
            tail = " ".join(f"{k}={v:.6g}" for k, v in more.items())
            log.info("%s step=%d loss=%.6g sharpness=%.6g %s", self.label, step, loss, s, tail)


def run_gd(objective: Objective, theta0: torch.Tensor, eta: float, *, loss_threshold: float, max_steps: int,
           log_every: int = 10, sharpness_every: int = 0, sharpness_tol: float = 1e-4,
           divergence_factor: float = 1e3, checkpoint: Checkpoint | None = None,
           progress_seconds: float = 10.0, observe: Callable[[torch.Tensor], dict] | None = None,
           observe_every: int = 0) -> RunResult:
    """GD at fixed η from θ₀ until L(θ_k) < ε, k = max_steps, or divergence.

    Every ``log_every`` steps the trajectory records (step, time, train_loss, sharpness), the loss coming
    from the gradient's own forward pass; every ``sharpness_every`` steps (0 = never) S is computed by
    Lanczos warm-started from the previous eigenvector. Every ``observe_every`` steps (0 = never) and at
    the end, the row also gets the columns ``observe(θ)`` returns (e.g. the test loss).
    """
    state = checkpoint.load() if checkpoint else None
    if state is None:
        state = dict(step=0, theta=theta0.detach(), trajectory=[], n_grad=0, n_hvp=0, vec=None, loss0=None)
    theta, vec = state["theta"].to(theta0).clone(), state["vec"]  # θ is updated in place: own the buffer
    step, trajectory, n_grad, n_hvp, loss0 = (state[k] for k in ("step", "trajectory", "n_grad", "n_hvp", "loss0"))
    progress = _Progress(f"gd eta={eta:.6g}", progress_seconds)
    loss_and_grad = objective.in_place_gradient(theta)
    s = math.nan
    while True:
        loss_t, grad = loss_and_grad()
        n_grad += 1
        loss = float(loss_t)
        loss0 = loss if loss0 is None else loss0
        status = _status(loss, loss0, loss_threshold, step, max_steps, divergence_factor)
        s = math.nan
        if sharpness_every and step % sharpness_every == 0 and status != DIVERGED:
            eig = sharpness(objective.hessian_at(theta), objective.dim, tol=sharpness_tol, v0=vec,
                            dtype=theta.dtype, device=theta.device)
            s, vec, n_hvp = eig.value, eig.vector, n_hvp + eig.n_matvec
        seen = _observed(observe, observe_every, step, status, theta)
        if step % log_every == 0 or status is not None or seen:
            trajectory.append(dict(step=step, time=step * eta, train_loss=loss, sharpness=s, **seen))
        progress(step, loss, s, force=status is not None or step == 0)
        if status is not None:
            return RunResult(status, step, theta, loss, step * eta, trajectory, n_grad, n_hvp, vec)
        theta.add_(grad, alpha=-eta)
        step += 1
        if checkpoint and checkpoint.due(step):
            checkpoint.save(dict(step=step, theta=theta, trajectory=trajectory, n_grad=n_grad, n_hvp=n_hvp,
                                 vec=vec, loss0=loss0))


def _observed(observe, every: int, step: int, status: str | None, theta: torch.Tensor) -> dict:
    """observe(θ) when due (every ``every`` steps and at a non-diverged end), else {}."""
    due = observe is not None and every and (step % every == 0 or status is not None) and status != DIVERGED
    return observe(theta) if due else {}


def rk4_step(objective: Objective, theta: torch.Tensor, grad: torch.Tensor, h: float) -> torch.Tensor:
    """One classical Runge–Kutta step of dθ/dt = −∇L(θ), given ∇L(θ) (3 more gradients)."""
    k1 = -grad
    k2 = -objective.loss_and_grad(theta + 0.5 * h * k1)[1]
    k3 = -objective.loss_and_grad(theta + 0.5 * h * k2)[1]
    k4 = -objective.loss_and_grad(theta + h * k3)[1]
    return theta + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def run_gradient_flow(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
                      alpha: float = 1.0, sharpness_every: int = 5, sharpness_tol: float = 1e-5,
                      log_every: int = 10, divergence_factor: float = 1e3, checkpoint: Checkpoint | None = None,
                      progress_seconds: float = 10.0, observe: Callable[[torch.Tensor], dict] | None = None,
                      observe_every: int = 0) -> FlowResult:
    """Gradient flow from θ₀ by RK4 at step α/S until L < ε; returns t_ε, s_GF, η_c = 2/s_GF.

    S is recomputed every ``sharpness_every`` RK4 steps (warm-started) and at the end; s_GF is the
    largest |S| computed. Every ``log_every`` steps the trajectory records (step, time, loss, S); every
    ``observe_every`` steps (0 = never) and at the end a row also gets the columns ``observe(θ)`` returns.
    """
    state = checkpoint.load() if checkpoint else None
    if state is None:
        state = dict(step=0, t=0.0, theta=theta0.detach().clone(), trajectory=[], n_grad=0, n_hvp=0, vec=None,
                     loss0=None, s_now=math.nan, s_max=0.0)
    theta, vec = state["theta"].to(theta0), state["vec"]
    step, t, trajectory, n_grad, n_hvp, loss0, s_now, s_max = (
        state[k] for k in ("step", "t", "trajectory", "n_grad", "n_hvp", "loss0", "s_now", "s_max"))
    progress = _Progress("gf", progress_seconds)

    def solve(at: torch.Tensor) -> float:
        nonlocal vec, n_hvp, s_max
        eig = sharpness(objective.hessian_at(at), objective.dim, tol=sharpness_tol, v0=vec, dtype=at.dtype,
                        device=at.device)
        vec, n_hvp = eig.vector, n_hvp + eig.n_matvec
        s_max = max(s_max, abs(eig.value))
        return eig.value

    while True:
        loss_t, grad = objective.loss_and_grad(theta)
        n_grad += 1
        loss = float(loss_t)
        loss0 = loss if loss0 is None else loss0
        status = _status(loss, loss0, loss_threshold, step, max_steps, divergence_factor)
        fresh = math.nan
        if status is None and step % sharpness_every == 0:
            s_now = fresh = solve(theta)
        seen = _observed(observe, observe_every, step, status, theta)
        if status is not None:
            final = solve(theta) if status != DIVERGED else math.nan
            trajectory.append(dict(step=step, time=t, train_loss=loss, sharpness=final, **seen))
            progress(step, loss, final, force=True, t=t, s_gf=s_max)
            return FlowResult(status, step, theta, loss, t, trajectory, n_grad, n_hvp, vec,
                              s_gf=s_max, eta_c=2.0 / s_max if s_max > 0 else math.nan, final_sharpness=final)
        if step % log_every == 0 or seen:
            trajectory.append(dict(step=step, time=t, train_loss=loss, sharpness=fresh, **seen))
        progress(step, loss, s_now, force=step == 0, t=t)
        h = alpha / max(abs(s_now), 1e-12)
        theta = rk4_step(objective, theta, grad, h)
        n_grad += 3
        t += h
        step += 1
        if checkpoint and checkpoint.due(step):
            checkpoint.save(dict(step=step, t=t, theta=theta, trajectory=trajectory, n_grad=n_grad, n_hvp=n_hvp,
                                 vec=vec, loss0=loss0, s_now=s_now, s_max=s_max))
