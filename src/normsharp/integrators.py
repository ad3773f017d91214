"""One step of the gradient-flow integrators dθ/dt = F(θ) = −∇L(θ), and the scalar root and peak finders
the flow uses; no run state here (that is ``dynamics``)."""

from __future__ import annotations

import math

import torch

from .objective import Objective


def rk4_step(objective: Objective, theta: torch.Tensor, grad: torch.Tensor, h: float) -> torch.Tensor:
    """One classical Runge–Kutta step of dθ/dt = −∇L(θ), given ∇L(θ) (3 more gradients)."""
    k1 = -grad
    k2 = -objective.loss_and_grad(theta + 0.5 * h * k1)[1]
    k3 = -objective.loss_and_grad(theta + 0.5 * h * k2)[1]
    k4 = -objective.loss_and_grad(theta + h * k3)[1]
    return theta + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


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


def hermite_root(l0: float, d0: float, l1: float, d1: float, h: float, target: float) -> float:
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


def parabola_peak(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Vertex (τ*, p(τ*)) of the parabola p through three points (t_i, s_i), None unless p is concave.

    p(τ) = Σ c_i Π_{j≠i}(τ − t_j) with c_i = s_i / Π_{j≠i}(t_i − t_j): leading coefficient Σ c_i, and
    p'(τ*) = 0 at τ* = Σ c_i (Σ_{j≠i} t_j) / (2 Σ c_i).
    """
    (t0, s0), (t1, s1), (t2, s2) = sorted(points)
    c0, c1, c2 = s0 / ((t0 - t1) * (t0 - t2)), s1 / ((t1 - t0) * (t1 - t2)), s2 / ((t2 - t0) * (t2 - t1))
    curv = c0 + c1 + c2
    if not curv < 0:
        return None
    peak = (c0 * (t1 + t2) + c1 * (t0 + t2) + c2 * (t0 + t1)) / (2 * curv)
    return peak, c0 * (peak - t1) * (peak - t2) + c1 * (peak - t0) * (peak - t2) + c2 * (peak - t0) * (peak - t1)
