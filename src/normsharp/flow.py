"""Gradient flow from a fixed θ₀: the η → 0 reference of every run, with checkpoints and a trajectory.

dθ/dt = −∇L(θ) until L < ε at time t_ε; s_GF = max S(θ(t)) over t ≤ t_ε, η_c = 2/s_GF (GD's; an optimiser's
own η_c = c/(s_GF + shift) is normsharp.optimizers' ``critical_lr``). Two integrators:
'rkc' (default): second-order Runge–Kutta–Chebyshev with embedded error control, S at every step;
'rk4': classical RK4 with step h = α/S(θ), S refreshed every few steps (warm-started).
Statuses, the run state and its checkpoints are those of :mod:`normsharp.dynamics`; one integrator step is in
``integrators``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .checkpoint import Checkpoint
from .dynamics import DIVERGED, RunResult, RunState, _observed, _Progress, _status
from .eigen import sharpness
from .errors import ConfigError
from .integrators import RKC_MAX_STAGES, hermite_root, parabola_peak, rk4_step, rkc_step
from .objective import Objective


@dataclass
class FlowResult(RunResult):
    """A gradient-flow run: s_GF = max S along it, η_c = 2/s_GF, S at its end."""

    s_gf: float = math.nan
    eta_c: float = math.nan
    final_sharpness: float = math.nan


@dataclass
class FlowState(RunState):
    """Gradient flow (RK4's whole state): time t, the S that sets the step, and s_GF = max |S| so far."""

    t: float = 0.0
    s_now: float = math.nan
    s_max: float = 0.0


@dataclass
class RKCState(FlowState):
    """RKC adds L and ∇L at θ (reused by the next step), the step-size controller (h, h_old, err_old, whether a
    step was rejected since the last accepted one) and the last three (t, S, θ, ∇L) samples for the peak of S."""

    loss: float | None = None
    grad: torch.Tensor | None = None
    h: float | None = None
    h_old: float | None = None
    err_old: float | None = None
    rejected: bool = False
    samples: list[tuple] = field(default_factory=list)


GF_METHODS = ("rkc", "rk4")
MAX_TIME = "max_time"  # the status of a flow stopped by ``max_time`` (the continued end points' cap)


def run_gradient_flow(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
                      method: str = "rkc", tol: float = 1e-7, alpha: float = 1.0, sharpness_every: int = 5,
                      sharpness_tol: float = 1e-5, log_every: int = 10, divergence_factor: float = 1e3,
                      checkpoint: Checkpoint | None = None, progress_seconds: float = 10.0,
                      observe: Callable[[torch.Tensor], dict] | None = None, observe_every: int = 0,
                      report: Callable[..., None] | None = None, max_time: float = math.inf) -> FlowResult:
    """Gradient flow dθ/dt = −∇L(θ) from θ₀ until L < ε; returns t_ε, s_GF = max S along it, η_c = 2/s_GF.

    ``method`` 'rkc' (:func:`_flow_rkc`: local error ≤ ``tol``, S at every step) or 'rk4' (:func:`_flow_rk4`:
    step α/S, S every ``sharpness_every`` steps). ``steps`` counts integrator steps; every ``log_every`` of
    them the trajectory records (step, time, train_loss, sharpness). S is computed to relative ``sharpness_tol``.
    Every ``observe_every`` steps (0 = never) and at the end a row also gets the columns ``observe(θ)`` returns.
    At most every ``progress_seconds`` a log line and ``report(...)`` (step, loss, last S, t) tell how far it is.
    A finite ``max_time`` ends the run with status 'max_time' at the first step reaching t ≥ max_time before L < ε
    (the continued end points' cap, normsharp.end_points; the reference flow has none).
    """
    common = dict(loss_threshold=loss_threshold, max_steps=max_steps, max_time=max_time,
                  sharpness_tol=sharpness_tol, log_every=log_every, divergence_factor=divergence_factor,
                  checkpoint=checkpoint, progress_seconds=progress_seconds, observe=observe,
                  observe_every=observe_every, report=report)
    if method == "rk4":
        return _flow_rk4(objective, theta0, alpha=alpha, sharpness_every=sharpness_every, **common)
    if method == "rkc":
        return _flow_rkc(objective, theta0, tol=tol, **common)
    raise ConfigError(f"gf.method is {method!r}; allowed: {', '.join(GF_METHODS)}")


def _flow_status(state: FlowState, loss: float, loss_threshold: float, max_steps: int, max_time: float,
                 divergence_factor: float) -> str | None:
    """The run's status at its current step (:func:`normsharp.dynamics._status`), else 'max_time' once t ≥ max_time."""
    status = _status(loss, state.loss0, loss_threshold, state.step, max_steps, divergence_factor)
    return status or (MAX_TIME if state.t >= max_time else None)


def _flow_rk4(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
              max_time: float, alpha: float, sharpness_every: int, sharpness_tol: float, log_every: int,
              divergence_factor: float, checkpoint: Checkpoint | None, progress_seconds: float, observe,
              observe_every: int, report) -> FlowResult:
    """RK4 at step α/S: S is recomputed every ``sharpness_every`` steps (warm-started) and at the end; s_GF is
    the largest |S| computed."""
    state = FlowState.resume(checkpoint, theta0)
    progress = _Progress("gf", progress_seconds, report)

    def solve(at: torch.Tensor) -> float:
        eig = sharpness(objective.hessian_at(at), objective.dim, tol=sharpness_tol, v0=state.vec, dtype=at.dtype,
                        device=at.device)
        state.vec, state.n_hvp = eig.vector, state.n_hvp + eig.n_matvec
        state.s_max = max(state.s_max, abs(eig.value))
        return eig.value

    while True:
        loss_t, grad = objective.loss_and_grad(state.theta)
        state.n_grad += 1
        loss = float(loss_t)
        state.loss0 = loss if state.loss0 is None else state.loss0
        status = _flow_status(state, loss, loss_threshold, max_steps, max_time, divergence_factor)
        fresh = math.nan
        if status is None and state.step % sharpness_every == 0:
            state.s_now = fresh = solve(state.theta)
        seen = _observed(observe, observe_every, state.step, status, state.theta)
        if status is not None:
            final = solve(state.theta) if status != DIVERGED else math.nan
            state.trajectory.append(dict(step=state.step, time=state.t, train_loss=loss, sharpness=final, **seen))
            progress(state.step, loss, final, force=True, t=state.t, s_gf=state.s_max)
            return _flow_result(state, status, loss, final)
        if state.step % log_every == 0 or seen:
            state.trajectory.append(dict(step=state.step, time=state.t, train_loss=loss, sharpness=fresh, **seen))
        progress(state.step, loss, state.s_now, force=state.step == 0, t=state.t)
        h = alpha / max(abs(state.s_now), 1e-12)
        state.theta = rk4_step(objective, state.theta, grad, h)
        state.n_grad += 3
        state.t += h
        state.step += 1
        state.save(checkpoint)


def _flow_result(state: FlowState, status: str, loss: float, final: float) -> FlowResult:
    """The run's result: s_GF = the largest |S| computed, η_c = 2/s_GF, S at the end ``final``."""
    return state.result(status, loss, state.t, FlowResult, s_gf=state.s_max,
                        eta_c=2.0 / state.s_max if state.s_max > 0 else math.nan, final_sharpness=final)


def _flow_rkc(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
              max_time: float, tol: float, sharpness_tol: float, log_every: int, divergence_factor: float,
              checkpoint: Checkpoint | None, progress_seconds: float, observe, observe_every: int,
              report) -> FlowResult:
    """Second-order Runge–Kutta–Chebyshev (RKC2) with embedded error control; S at every accepted step.

    Steps: s stages for h·S ≤ 0.65(s² − 1), so the cost per unit time grows as √S, not S; S (Lanczos, warm-started)
    is the spectral radius the stage count needs. Error estimate (RKC): E = 0.8(θ_n − θ_{n+1}) + 0.4h(F_n + F_{n+1}),
    F = −∇L; a step is accepted when RMS(E_i / (tol·(1 + max|θ_i|))) ≤ 1, and h follows RKC's controller.
    The last step is shortened to end where L reaches ε (cubic Hermite interpolation of L, dL/dt = −‖∇L‖²).
    Maximum of S: S is computed at every accepted step; where a sample exceeds both neighbours, the parabola
    through the three is maximised and S computed on the flow at its peak (an RKC step from the sample
    before), up to 3 times while the parabola promises more than ``sharpness_tol``; s_GF is the largest S
    computed on the flow, never an extrapolated value.
    """
    state = RKCState.resume(checkpoint, theta0)
    progress = _Progress("gf rkc", progress_seconds, report)

    def solve(at: torch.Tensor, start) -> tuple[float, torch.Tensor]:
        eig = sharpness(objective.hessian_at(at), objective.dim, tol=sharpness_tol, v0=start, dtype=at.dtype,
                        device=at.device)
        state.n_hvp += eig.n_matvec
        state.s_max = max(state.s_max, abs(eig.value))
        return eig.value, eig.vector

    def refine_peak() -> None:
        """S on the flow at the vertex of the parabola through the three largest |S| so far, while it promises more."""
        pts, start = [(ts, abs(ss)) for ts, ss, _, _ in state.samples], state.vec
        for _ in range(3):
            vertex, best = parabola_peak(pts), max(p[1] for p in pts)
            if vertex is None:
                return
            peak, promised = vertex
            if not min(p[0] for p in pts) < peak < max(p[0] for p in pts) or promised - best <= sharpness_tol * best:
                return
            tb, _, theta_b, grad_b = max((smp for smp in state.samples if smp[0] <= peak), key=lambda smp: smp[0])
            at, used = rkc_step(objective, theta_b, grad_b, peak - tb, 1.1 * best) if peak > tb else (theta_b, 0)
            state.n_grad += used
            s_peak, start = solve(at, start)
            pts = sorted(pts + [(peak, abs(s_peak))], key=lambda p: p[1], reverse=True)[:3]

    if state.grad is None:
        loss_t, state.grad = objective.loss_and_grad(state.theta)
        state.n_grad += 1
        state.loss = state.loss0 = float(loss_t)
    while True:
        theta, grad, loss = state.theta, state.grad, state.loss
        status = _flow_status(state, loss, loss_threshold, max_steps, max_time, divergence_factor)
        if status != DIVERGED and math.isnan(state.s_now):
            state.s_now, state.vec = solve(theta, state.vec)
        if status != DIVERGED:
            state.samples = (state.samples + [(state.t, state.s_now, theta, grad)])[-3:]
            smp = state.samples
            if len(smp) == 3 and abs(smp[1][1]) > max(abs(smp[0][1]), abs(smp[2][1])):
                refine_peak()
        seen = _observed(observe, observe_every, state.step, status, theta)
        if status is not None:
            final = state.s_now if status != DIVERGED else math.nan
            state.trajectory.append(dict(step=state.step, time=state.t, train_loss=loss, sharpness=final, **seen))
            progress(state.step, loss, final, force=True, t=state.t, s_gf=state.s_max)
            return _flow_result(state, status, loss, final)
        if state.step % log_every == 0 or seen:
            state.trajectory.append(dict(step=state.step, time=state.t, train_loss=loss, sharpness=state.s_now,
                                         **seen))
        progress(state.step, loss, state.s_now, force=state.step == 0, t=state.t)
        rho = 1.1 * max(abs(state.s_now), 1e-12)  # margin: S grows inside a step
        h = 1.0 / rho if state.h is None else state.h
        h = min(h, 0.65 * (RKC_MAX_STAGES**2 - 1) / 1.54 / rho)
        while True:  # try steps until one is accepted
            new, used = rkc_step(objective, theta, grad, h, rho)
            loss_t, grad_new = objective.loss_and_grad(new)
            state.n_grad += used + 1
            loss_new = float(loss_t)
            est = 0.8 * (theta - new) - 0.4 * h * (grad + grad_new)
            scale = tol * (1.0 + torch.maximum(theta.abs(), new.abs()))
            err = float((est / scale).pow(2).mean().sqrt())
            if math.isfinite(err) and err <= 1.0:
                break
            state.rejected = True
            h *= max(0.1, 0.8 / err ** (1 / 3)) if math.isfinite(err) else 0.1
        if loss_new < loss_threshold <= loss:  # shorten the step to end where L reaches ε
            target = loss_threshold - 1e-6 * (loss - loss_new)  # a hair below ε: the shortened step ends below it
            tau = hermite_root(loss, -float(grad @ grad), loss_new, -float(grad_new @ grad_new), h, target)
            if tau < h:
                new, used = rkc_step(objective, theta, grad, tau, rho)
                loss_t, grad_new = objective.loss_and_grad(new)
                state.n_grad += used + 1
                loss_new, h = float(loss_t), tau
        fac = 10.0 if not state.rejected else 1.0
        if state.err_old is None:
            fac = min(fac, 0.8 / max(err, 1e-10) ** (1 / 3))
        else:
            fac = min(fac, 0.8 * h * state.err_old ** (1 / 3) / (state.h_old * max(err, 1e-10) ** (2 / 3)))
        state.theta, state.grad, state.loss = new, grad_new, loss_new
        state.t += h
        state.step += 1
        state.h_old, state.err_old, state.rejected = h, max(err, 1e-10), False
        state.h = max(0.1, fac) * h
        state.s_now = math.nan
        if loss_new >= loss_threshold and math.isfinite(loss_new):
            state.s_now, state.vec = solve(new, state.vec)
        state.save(checkpoint)
