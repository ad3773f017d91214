"""Full-batch gradient descent and gradient flow from a fixed θ₀, with checkpoints and a trajectory.

GD:  θ_{k+1} = θ_k − η ∇L(θ_k), stopped at the first k with L(θ_k) < ε.
GF:  dθ/dt = −∇L(θ) until L < ε at time t_ε; s_GF = max S(θ(t)) over t ≤ t_ε, η_c = 2/s_GF. Two integrators:
     'rkc' (default): second-order Runge–Kutta–Chebyshev with embedded error control, S at every step;
     'rk4': classical RK4 with step h = α/S(θ), S refreshed every few steps (warm-started).
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
from .errors import ConfigError
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


GF_METHODS = ("rkc", "rk4")


def run_gradient_flow(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
                      method: str = "rkc", tol: float = 1e-7, alpha: float = 1.0, sharpness_every: int = 5,
                      sharpness_tol: float = 1e-5, log_every: int = 10, divergence_factor: float = 1e3,
                      checkpoint: Checkpoint | None = None, progress_seconds: float = 10.0,
                      observe: Callable[[torch.Tensor], dict] | None = None, observe_every: int = 0) -> FlowResult:
    """Gradient flow dθ/dt = −∇L(θ) from θ₀ until L < ε; returns t_ε, s_GF = max S along it, η_c = 2/s_GF.

    ``method`` 'rkc' (:func:`_flow_rkc`: local error ≤ ``tol``, S at every step) or 'rk4' (:func:`_flow_rk4`:
    step α/S, S every ``sharpness_every`` steps). ``steps`` counts integrator steps; every ``log_every`` of
    them the trajectory records (step, time, train_loss, sharpness). S is computed to relative ``sharpness_tol``.
    Every ``observe_every`` steps (0 = never) and at the end a row also gets the columns ``observe(θ)`` returns.
    """
    common = dict(loss_threshold=loss_threshold, max_steps=max_steps, sharpness_tol=sharpness_tol,
                  log_every=log_every, divergence_factor=divergence_factor, checkpoint=checkpoint,
                  progress_seconds=progress_seconds, observe=observe, observe_every=observe_every)
    if method == "rk4":
        return _flow_rk4(objective, theta0, alpha=alpha, sharpness_every=sharpness_every, **common)
    if method == "rkc":
        return _flow_rkc(objective, theta0, tol=tol, **common)
    raise ConfigError(f"gf.method is {method!r}; allowed: {', '.join(GF_METHODS)}")


def _flow_rk4(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int,
              alpha: float, sharpness_every: int, sharpness_tol: float, log_every: int, divergence_factor: float,
              checkpoint: Checkpoint | None, progress_seconds: float, observe, observe_every: int) -> FlowResult:
    """RK4 at step α/S: S is recomputed every ``sharpness_every`` steps (warm-started) and at the end; s_GF is
    the largest |S| computed."""
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


RKC_DAMPING = 2.0 / 13.0  # ε of the damped Chebyshev polynomial (Sommeijer, Shampine & Verwer 1997)
RKC_MAX_STAGES = 250


def rkc_stages(h: float, rho: float) -> int:
    """Stages s of an RKC2 step stable for h·ρ: s = 1 + ⌊√(1 + 1.54 hρ)⌋ (RKC's rule, hρ ≤ 0.65 (s² − 1) ≈ β(s))."""
    return max(2, 1 + int(math.sqrt(1.0 + 1.54 * h * rho)))


def rkc_coefficients(s: int) -> list[tuple[float, float, float, float]]:
    """(μ_j, ν_j, μ̃_j, γ̃_j), j = 1..s, of the second-order Runge–Kutta–Chebyshev method with s stages.

    w₀ = 1 + ε/s², w₁ = T_s'(w₀)/T_s''(w₀), b_j = T_j''(w₀)/T_j'(w₀)² (b₀ = b₁ = b₂), a_j = 1 − b_j T_j(w₀);
    μ̃₁ = b₁w₁ and for j ≥ 2: μ_j = 2w₀b_j/b_{j−1}, ν_j = −b_j/b_{j−2}, μ̃_j = 2w₁b_j/b_{j−1}, γ̃_j = −a_{j−1}μ̃_j.
    """
    w0 = 1.0 + RKC_DAMPING / s**2
    t, dt, ddt = [1.0, w0], [0.0, 1.0], [0.0, 0.0]
    for j in range(2, s + 1):
        t.append(2 * w0 * t[j - 1] - t[j - 2])
        dt.append(2 * t[j - 1] + 2 * w0 * dt[j - 1] - dt[j - 2])
        ddt.append(4 * dt[j - 1] + 2 * w0 * ddt[j - 1] - ddt[j - 2])
    w1 = dt[s] / ddt[s]
    b = [ddt[j] / dt[j] ** 2 if j >= 2 else math.nan for j in range(s + 1)]
    b[0] = b[1] = b[2]
    a = [1.0 - b[j] * t[j] for j in range(s + 1)]
    coef = [(math.nan, math.nan, b[1] * w1, 0.0)]
    for j in range(2, s + 1):
        mu_t = 2 * w1 * b[j] / b[j - 1]
        coef.append((2 * w0 * b[j] / b[j - 1], -b[j] / b[j - 2], mu_t, -a[j - 1] * mu_t))
    return coef


def rkc_step(objective: Objective, theta: torch.Tensor, grad: torch.Tensor, h: float, rho: float
             ) -> tuple[torch.Tensor, int]:
    """One RKC2 step of dθ/dt = −∇L(θ) given ∇L(θ), stable while h·ρ ≤ β(s); returns (θ_new, gradients used = s − 1).

    Y₀ = θ, Y₁ = θ + μ̃₁hF₀, Y_j = (1 − μ_j − ν_j)θ + μ_jY_{j−1} + ν_jY_{j−2} + μ̃_jhF(Y_{j−1}) + γ̃_jhF₀, θ_new = Y_s.
    """
    s = rkc_stages(h, rho)
    f0 = -grad
    coef = rkc_coefficients(s)
    prev, cur = theta, theta + coef[0][2] * h * f0
    for mu, nu, mu_t, gamma_t in coef[1:]:
        f = -objective.loss_and_grad(cur)[1]
        nxt = (1 - mu - nu) * theta + mu * cur + nu * prev + (mu_t * h) * f + (gamma_t * h) * f0
        prev, cur = cur, nxt
    return cur, s - 1


def _hermite_root(l0: float, d0: float, l1: float, d1: float, h: float, target: float) -> float:
    """τ in (0, h] where the cubic Hermite interpolant of L (values l0, l1, slopes d0, d1) first falls to target."""
    def p(tau: float) -> float:
        x = tau / h
        return ((2 * x**3 - 3 * x**2 + 1) * l0 + (x**3 - 2 * x**2 + x) * h * d0 + (-2 * x**3 + 3 * x**2) * l1
                + (x**3 - x**2) * h * d1)
    lo, hi = 0.0, h
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if p(mid) > target else (lo, mid)
    return hi


def _flow_rkc(objective: Objective, theta0: torch.Tensor, *, loss_threshold: float, max_steps: int, tol: float,
              sharpness_tol: float, log_every: int, divergence_factor: float, checkpoint: Checkpoint | None,
              progress_seconds: float, observe, observe_every: int) -> FlowResult:
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
    state = checkpoint.load() if checkpoint else None
    if state is None:
        state = dict(step=0, t=0.0, theta=theta0.detach().clone(), trajectory=[], n_grad=0, n_hvp=0, vec=None,
                     loss0=None, loss=None, grad=None, s_now=math.nan, s_max=0.0, h=None, h_old=None,
                     err_old=None, rejected=False, samples=[])
    theta, vec, grad, loss = state["theta"].to(theta0), state["vec"], state["grad"], state["loss"]
    step, t, trajectory, n_grad, n_hvp, loss0, s_now, s_max, h, h_old, err_old, rejected, samples = (
        state[k] for k in ("step", "t", "trajectory", "n_grad", "n_hvp", "loss0", "s_now", "s_max", "h", "h_old",
                           "err_old", "rejected", "samples"))
    progress = _Progress("gf rkc", progress_seconds)

    def solve(at: torch.Tensor, start) -> tuple[float, torch.Tensor]:
        nonlocal n_hvp, s_max
        eig = sharpness(objective.hessian_at(at), objective.dim, tol=sharpness_tol, v0=start, dtype=at.dtype,
                        device=at.device)
        n_hvp += eig.n_matvec
        s_max = max(s_max, abs(eig.value))
        return eig.value, eig.vector

    def refine_peak() -> None:
        """S on the flow at the vertex of the parabola through the three largest |S| so far, while it promises more."""
        nonlocal n_grad
        pts, start = [(ts, abs(ss)) for ts, ss, _, _ in samples], vec
        for _ in range(3):
            (t0, s0), (t1, s1), (t2, s2) = sorted(pts)
            c0, c1, c2 = s0 / ((t0 - t1) * (t0 - t2)), s1 / ((t1 - t0) * (t1 - t2)), s2 / ((t2 - t0) * (t2 - t1))
            curv = c0 + c1 + c2  # the parabola is Σ c_i Π_{j≠i} (τ − t_j): leading coefficient Σ c_i
            if not curv < 0:
                return
            peak = (c0 * (t1 + t2) + c1 * (t0 + t2) + c2 * (t0 + t1)) / (2 * curv)
            promised = c0 * (peak - t1) * (peak - t2) + c1 * (peak - t0) * (peak - t2) + c2 * (peak - t0) * (peak - t1)
            best = max(p[1] for p in pts)
            if not t0 < peak < t2 or promised - best <= sharpness_tol * best:
                return
            tb, _, theta_b, grad_b = max((smp for smp in samples if smp[0] <= peak), key=lambda smp: smp[0])
            at, used = rkc_step(objective, theta_b, grad_b, peak - tb, 1.1 * best) if peak > tb else (theta_b, 0)
            n_grad += used
            s_peak, start = solve(at, start)
            pts = sorted(pts + [(peak, abs(s_peak))], key=lambda p: p[1], reverse=True)[:3]

    if grad is None:
        loss_t, grad = objective.loss_and_grad(theta)
        n_grad += 1
        loss = float(loss_t)
        loss0 = loss
    while True:
        status = _status(loss, loss0, loss_threshold, step, max_steps, divergence_factor)
        if status != DIVERGED and math.isnan(s_now):
            s_now, vec = solve(theta, vec)
        if status != DIVERGED:
            samples = (samples + [(t, s_now, theta, grad)])[-3:]
            if len(samples) == 3 and abs(samples[1][1]) > max(abs(samples[0][1]), abs(samples[2][1])):
                refine_peak()
        seen = _observed(observe, observe_every, step, status, theta)
        if status is not None:
            final = s_now if status != DIVERGED else math.nan
            trajectory.append(dict(step=step, time=t, train_loss=loss, sharpness=final, **seen))
            progress(step, loss, final, force=True, t=t, s_gf=s_max)
            return FlowResult(status, step, theta, loss, t, trajectory, n_grad, n_hvp, vec,
                              s_gf=s_max, eta_c=2.0 / s_max if s_max > 0 else math.nan, final_sharpness=final)
        if step % log_every == 0 or seen:
            trajectory.append(dict(step=step, time=t, train_loss=loss, sharpness=s_now, **seen))
        progress(step, loss, s_now, force=step == 0, t=t)
        rho = 1.1 * max(abs(s_now), 1e-12)  # margin: S grows inside a step
        if h is None:
            h = 1.0 / rho
        h = min(h, 0.65 * (RKC_MAX_STAGES**2 - 1) / 1.54 / rho)
        while True:  # try steps until one is accepted
            new, used = rkc_step(objective, theta, grad, h, rho)
            loss_t, grad_new = objective.loss_and_grad(new)
            n_grad += used + 1
            loss_new = float(loss_t)
            est = 0.8 * (theta - new) - 0.4 * h * (grad + grad_new)
            scale = tol * (1.0 + torch.maximum(theta.abs(), new.abs()))
            err = float((est / scale).pow(2).mean().sqrt())
            if math.isfinite(err) and err <= 1.0:
                break
            rejected = True
            h *= max(0.1, 0.8 / err ** (1 / 3)) if math.isfinite(err) else 0.1
        if loss_new < loss_threshold <= loss:  # shorten the step to end where L reaches ε
            target = loss_threshold - 1e-6 * (loss - loss_new)  # a hair below ε: the shortened step ends below it
            tau = _hermite_root(loss, -float(grad @ grad), loss_new, -float(grad_new @ grad_new), h, target)
            if tau < h:
                new, used = rkc_step(objective, theta, grad, tau, rho)
                loss_t, grad_new = objective.loss_and_grad(new)
                n_grad += used + 1
                loss_new, h = float(loss_t), tau
        fac = 10.0 if not rejected else 1.0
        if err_old is None:
            fac = min(fac, 0.8 / max(err, 1e-10) ** (1 / 3))
        else:
            fac = min(fac, 0.8 * h * err_old ** (1 / 3) / (h_old * max(err, 1e-10) ** (2 / 3)))
        theta, grad, loss = new, grad_new, loss_new
        t += h
        step += 1
        h_old, err_old, rejected = h, max(err, 1e-10), False
        h = max(0.1, fac) * h
        s_now = math.nan
        if loss >= loss_threshold and math.isfinite(loss):
            s_now, vec = solve(theta, vec)
        if checkpoint and checkpoint.due(step):
            checkpoint.save(dict(step=step, t=t, theta=theta, trajectory=trajectory, n_grad=n_grad, n_hvp=n_hvp,
                                 vec=vec, loss0=loss0, loss=loss, grad=grad, s_now=s_now, s_max=s_max, h=h,
                                 h_old=h_old, err_old=err_old, rejected=rejected, samples=samples))
