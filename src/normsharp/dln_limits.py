"""Where the dynamics end on the diagonal linear network's zero-loss set M: the gradient-flow limit, the EoS point.

Gradient flow ends at a closed form (up to one scalar root), close to the norm minimiser β_N for small α; GD
with η beyond η_c = 2/s_GF ends near the point of M with S = 2/η, so η moves the end point from β_N toward the
sharpness minimiser β_S.
"""

from __future__ import annotations

import math

import numpy as np

from .dln_closed_form import Instance, Point, norm_minimiser, point, sharpness, sharpness_minimiser, zero_loss_beta


def gradient_flow_limit(inst: Instance, alpha: float) -> Point:
    """lim_{t→∞} of gradient flow from w₀ = α·1 (closed form up to one scalar root).

    dw_i/dt = −r D w_i^{D−1} x_i, so with R(t) = ∫₀ᵗ r: D = 2: β_i = α² exp(−4 x_i R);
    D > 2: w_i^{2−D} = α^{2−D} + D(D−2) x_i R, β_i = (α^{2−D} + D(D−2) x_i R)^{−D/(D−2)};
    R_∞ solves ⟨β(R), x⟩ = y (⟨β(R), x⟩ is decreasing in R), found by Brent's method.
    """
    from scipy.optimize import brentq  # here: importing scipy.optimize costs every pipeline job ~0.5 s

    D, x, y = inst.depth, inst.x, inst.y
    if D == 2:
        def beta_of(R):
            return alpha**2 * np.exp(-4.0 * x * R)

        def h(R):
            return math.log(float(beta_of(R) @ x)) - math.log(y)

        lo, hi = -1.0, 1.0
        while h(lo) < 0:
            lo *= 2
        while h(hi) > 0:
            hi *= 2
    else:
        a = alpha ** (2.0 - D)
        c = D * (D - 2.0) * x

        def beta_of(R):
            return (a + c * R) ** (-D / (D - 2.0))

        def h(R):
            return math.log(float(beta_of(R) @ x)) - math.log(y)

        r_min = -a / c.max()  # β_argmax x blows up as R ↓ r_min < 0
        delta = 0.5
        while h(r_min * (1 - delta)) < 0:
            delta /= 2
        lo, hi = r_min * (1 - delta), 1.0
        while h(hi) > 0:
            hi *= 2
    R = brentq(h, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return point(beta_of(R) * y / float(beta_of(R) @ x), inst, "gradient-flow")


def eos_point(inst: Instance, eta: float) -> Point | None:
    """d = 2: the point of M on the arc from β_N to β_S with S = 2/η (None if 2/η ∉ [S(β_S), S(β_N)]).

    GD at η > η_c ends near this point (S·η/2 ≈ 0.97–1 in practice). S is convex along the arc with its
    minimum at β_S, hence monotone on it, so the root is unique.
    """
    from scipy.optimize import brentq

    if inst.d != 2:
        raise ValueError(f"eos_point is for d = 2 (instance has d = {inst.d}); "
                         "for d > 2, S = 2/η is a whole level set")
    n, s = norm_minimiser(inst), sharpness_minimiser(inst)
    target = 2.0 / eta
    if not s.sharpness <= target <= n.sharpness:
        return None
    a, b = n.beta[0], s.beta[0]
    if target == n.sharpness:
        return point(n.beta, inst, "eos")

    def h(b1):
        return sharpness(zero_loss_beta(inst, b1)[0], inst) - target

    b1 = brentq(h, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return point(zero_loss_beta(inst, b1)[0], inst, "eos")
