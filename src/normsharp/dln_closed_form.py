"""Closed forms of the diagonal linear network on its zero-loss set M: L, its Hessian, S, ‖w‖, G and the three
minimisers, exact.

The setting (f_w, the training point, M) is stated in :mod:`normsharp.theory`; M is drawn as a curve for d = 2.

On M, with J = ∇_w f = D w^{⊙(D−1)} ⊙ x:
  * Hessian ∇²L = J Jᵀ + r·diag(D(D−1) w^{⊙(D−2)} ⊙ x), r = f − y; at r = 0 it is J Jᵀ, so
    S(w) = ‖∇²L‖ = ‖J‖² = D² Σ_i x_i² β_i^{2(D−1)/D}          (= 4 Σ x_i² β_i for D = 2);
  * squared ℓ2 norm ‖w‖² = Σ_i β_i^{2/D}                        (= ‖β‖₁ for D = 2);
  * expected generalisation error for x' ~ N(0, Σ), labels ⟨β*, x'⟩:  G(β) = (β − β*)ᵀ Σ (β − β*).

Minimisers on Δ (all exact):
  * norm: Σ β_i^{2/D} is concave (linear for D = 2), so its minimum over the simplex is at a vertex,
    the one with the largest x_i: β_N = (y/x_max) e_{argmax x}.
  * sharpness: for D = 2 linear, minimum at the vertex of the smallest x_i: β_S = (y/x_min) e_{argmin x};
    for D > 2 strictly convex with Lagrange condition p x_i² β_i^{p−1} = λ x_i (p = 2(D−1)/D), so
    β_S ∝ x^{⊙(−D/(D−2))} (interior).
  * generalisation: a strictly convex QP on the simplex, solved exactly by enumerating active sets
    (KKT linear solve per support, keep the dual-feasible one).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Instance:
    """One training point (x, y), test design x' ~ N(0, Σ) with labels ⟨β*, x'⟩, depth D."""

    name: str
    x: np.ndarray
    y: float
    sigma: np.ndarray
    beta_star: np.ndarray
    depth: int = 2
    note: str = ""

    def __post_init__(self):
        x = np.asarray(self.x, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        beta_star = np.asarray(self.beta_star, dtype=np.float64)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "beta_star", beta_star)
        object.__setattr__(self, "y", float(self.y))
        d = x.shape[0]
        if x.ndim != 1 or d < 2 or not np.all(x > 0) or not self.y > 0:
            raise ConfigError(f"instance {self.name!r}: need x ∈ R^d with d ≥ 2, every x_i > 0, and y > 0")
        if sigma.shape != (d, d) or beta_star.shape != (d,):
            raise ConfigError(f"instance {self.name!r}: sigma must be ({d}, {d}) and beta_star ({d},)")
        if not np.allclose(sigma, sigma.T) or np.linalg.eigvalsh(sigma).min() <= 0:
            raise ConfigError(f"instance {self.name!r}: sigma must be symmetric positive definite")
        if int(self.depth) != self.depth or self.depth < 2:
            raise ConfigError(f"instance {self.name!r}: depth must be an integer ≥ 2 (got {self.depth})")

    @property
    def d(self) -> int:
        return self.x.shape[0]


# ---------------------------------------------------------------------------------------------------
# Functions of w and of β


def beta_of_w(w: np.ndarray, depth: int = 2) -> np.ndarray:
    """β = w^{⊙D}."""
    return np.asarray(w, dtype=np.float64) ** depth


def w_of_beta(beta: np.ndarray, depth: int = 2) -> np.ndarray:
    """The w ≥ 0 with w^{⊙D} = β (β ≥ 0)."""
    return np.clip(np.asarray(beta, dtype=np.float64), 0.0, None) ** (1.0 / depth)


def loss(w: np.ndarray, inst: Instance) -> float:
    """L(w) = ½(⟨w^{⊙D}, x⟩ − y)²."""
    return 0.5 * float(beta_of_w(w, inst.depth) @ inst.x - inst.y) ** 2


def hessian(w: np.ndarray, inst: Instance) -> np.ndarray:
    """∇²L(w) = J Jᵀ + r·diag(D(D−1) w^{⊙(D−2)} ⊙ x), J = D w^{⊙(D−1)} ⊙ x, r = ⟨w^{⊙D},x⟩ − y."""
    w = np.asarray(w, dtype=np.float64)
    D = inst.depth
    jac = D * w ** (D - 1) * inst.x
    r = float(w**D @ inst.x - inst.y)
    return np.outer(jac, jac) + r * np.diag(D * (D - 1) * w ** (D - 2) * inst.x)


def sharpness_of_w(w: np.ndarray, inst: Instance) -> float:
    """max |λ(∇²L(w))| at any w (exact, dense eigvalsh); equals ‖J‖² on M."""
    return float(np.abs(np.linalg.eigvalsh(hessian(w, inst))).max())


def sharpness(beta: np.ndarray, inst: Instance) -> float:
    """S on M: ‖∇_w f‖² = D² Σ x_i² β_i^{2(D−1)/D}  (= 4 Σ x_i² β_i for D = 2), β ≥ 0."""
    D = inst.depth
    beta = np.clip(np.asarray(beta, dtype=np.float64), 0.0, None)
    return float(D**2 * np.sum(inst.x**2 * beta ** (2.0 * (D - 1) / D)))


def l2_norm_sq(beta: np.ndarray, depth: int = 2) -> float:
    """‖w‖₂² = Σ β_i^{2/D} for w = β^{1/D} (= ‖β‖₁ for D = 2)."""
    return float(np.sum(np.abs(np.asarray(beta, dtype=np.float64)) ** (2.0 / depth)))


def generalisation_error(beta: np.ndarray, inst: Instance) -> float:
    """G(β) = E_{x'~N(0,Σ)} ⟨β − β*, x'⟩² = (β − β*)ᵀ Σ (β − β*)."""
    diff = np.asarray(beta, dtype=np.float64) - inst.beta_star
    return float(diff @ inst.sigma @ diff)


def beta_of_theta(theta, depth: int = 2, variant: str = "shared") -> np.ndarray:
    """β of the library's DiagonalLinear from its flat θ.

    'shared': θ = u, β = u^{⊙D};  'uv': θ = [u, v], β = u^{⊙D} − v^{⊙D}.
    """
    t = np.asarray(theta.detach().cpu().numpy() if hasattr(theta, "detach") else theta, dtype=np.float64)
    if variant == "shared":
        return t**depth
    if variant == "uv":
        u, v = np.split(t, 2)
        return u**depth - v**depth
    raise ConfigError(f"variant is {variant!r}; allowed: 'shared', 'uv'")


# ---------------------------------------------------------------------------------------------------
# Minimisers on M


@dataclass
class Point:
    """A point of M with its ‖w‖₂, ‖β‖₁, sharpness S and generalisation error G."""

    kind: str
    beta: np.ndarray
    w: np.ndarray
    l2_norm: float
    l1_beta: float
    sharpness: float
    gen_error: float
    train_loss: float


def point(beta: np.ndarray, inst: Instance, kind: str = "") -> Point:
    """Describe the point β (w = β^{1/D} ≥ 0) by its norms, sharpness, G and training loss."""
    beta = np.asarray(beta, dtype=np.float64)
    w = w_of_beta(beta, inst.depth)
    return Point(kind, beta, w, math.sqrt(l2_norm_sq(beta, inst.depth)), float(np.abs(beta).sum()),
                 sharpness(beta, inst), generalisation_error(beta, inst), loss(w, inst))


def _vertex(inst: Instance, i: int) -> np.ndarray:
    beta = np.zeros(inst.d)
    beta[i] = inst.y / inst.x[i]
    return beta


def norm_minimiser(inst: Instance) -> Point:
    """argmin_M ‖w‖²: the vertex (y/x_max) e_{argmax x} (Σβ_i^{2/D} is concave on the simplex)."""
    return point(_vertex(inst, int(np.argmax(inst.x))), inst, "norm")


def sharpness_minimiser(inst: Instance) -> Point:
    """argmin_M S: the vertex (y/x_min) e_{argmin x} for D = 2; β ∝ x^{⊙(−D/(D−2))} for D > 2."""
    D = inst.depth
    if D == 2:
        return point(_vertex(inst, int(np.argmin(inst.x))), inst, "sharpness")
    shape = inst.x ** (-D / (D - 2.0))
    return point(shape * inst.y / float(shape @ inst.x), inst, "sharpness")


def simplex_qp(sigma: np.ndarray, beta_star: np.ndarray, x: np.ndarray, y: float, tol: float = 1e-12) -> np.ndarray:
    """argmin (β−β*)ᵀΣ(β−β*) s.t. ⟨β, x⟩ = y, β ≥ 0 (Σ ≻ 0), exactly by active-set enumeration.

    For each support P: solve the KKT system 2Σ_PP β_P − λ x_P = 2(Σβ*)_P, x_Pᵀ β_P = y; accept when
    β_P ≥ 0 and the multipliers of the zero coordinates μ_j = 2(Σ(β−β*))_j − λ x_j are ≥ 0. The problem
    is strictly convex, so the KKT point is the unique minimiser (d ≤ 16 here: 2^d − 1 supports).
    """
    d = x.shape[0]
    if d > 16:
        raise ValueError(f"active-set enumeration is for d ≤ 16 (got {d})")
    rhs_full = 2.0 * sigma @ beta_star
    scale = max(1.0, float(np.abs(rhs_full).max()), float(np.abs(x).max()))
    best, best_g = None, math.inf
    for size in range(1, d + 1):
        for support in itertools.combinations(range(d), size):
            p = list(support)
            k = len(p)
            kkt = np.zeros((k + 1, k + 1))
            kkt[:k, :k] = 2.0 * sigma[np.ix_(p, p)]
            kkt[:k, k] = -x[p]
            kkt[k, :k] = x[p]
            sol = np.linalg.solve(kkt, np.concatenate([rhs_full[p], [y]]))
            beta_p, lam = sol[:k], sol[k]
            if beta_p.min() < -tol * scale:
                continue
            beta = np.zeros(d)
            beta[p] = np.clip(beta_p, 0.0, None)
            mu = 2.0 * sigma @ (beta - beta_star) - lam * x
            others = [j for j in range(d) if j not in support]
            if others and mu[others].min() < -1e-9 * scale:
                continue
            diff = beta - beta_star
            g = float(diff @ sigma @ diff)
            if g < best_g:
                best, best_g = beta, g
    if best is None:  # cannot happen for Σ ≻ 0; keep a clear message if tolerances ever bite
        raise RuntimeError("no KKT point found")
    return best


def generalisation_minimiser(inst: Instance) -> Point:
    """argmin_M G(β) = (β − β*)ᵀΣ(β − β*) over the simplex Δ (exact QP, :func:`simplex_qp`)."""
    return point(simplex_qp(inst.sigma, inst.beta_star, inst.x, inst.y), inst, "generalisation")


@dataclass
class Minimisers:
    """The three minimisers on M and where G's lies relative to the other two.

    t_norm = (N(β_G) − N(β_N)) / (N(β_S) − N(β_N)) and t_sharp = (S(β_N) − S(β_G)) / (S(β_N) − S(β_S)),
    N = ‖w‖₂². "Strictly between" means t_norm ∈ (0, 1) and t_sharp ∈ (0, 1): β_G has more norm than β_N
    but less than β_S, and is flatter than β_N but sharper than β_S. For d = 2, ``position`` is β_G's
    place on the arc of M from β_N (0) to β_S (1), measured in β_1; between also needs it in (0, 1).
    """

    instance: str
    norm: Point
    sharpness: Point
    generalisation: Point
    t_norm: float
    t_sharp: float
    position: float  # d = 2 only (NaN otherwise)
    distinct: bool
    between: bool
    eta_star: float = field(default=math.nan)  # 2/S(β_G): the η whose edge-of-stability point is β_G


def minimisers(inst: Instance, tol: float = 1e-9) -> Minimisers:
    """Norm, sharpness and generalisation minimisers on M, with the betweenness measures."""
    n, s, g = norm_minimiser(inst), sharpness_minimiser(inst), generalisation_minimiser(inst)
    nn = [p.l2_norm**2 for p in (n, s, g)]
    ss = [p.sharpness for p in (n, s, g)]
    t_norm = (nn[2] - nn[0]) / (nn[1] - nn[0]) if nn[1] != nn[0] else math.nan
    t_sharp = (ss[0] - ss[2]) / (ss[0] - ss[1]) if ss[0] != ss[1] else math.nan
    position = math.nan
    if inst.d == 2 and n.beta[0] != s.beta[0]:
        position = (g.beta[0] - n.beta[0]) / (s.beta[0] - n.beta[0])
    betas = [n.beta, s.beta, g.beta]
    distinct = all(np.abs(a - b).max() > tol * max(1.0, np.abs(a).max()) for a, b in itertools.combinations(betas, 2))
    between = distinct and tol < t_norm < 1 - tol and tol < t_sharp < 1 - tol
    if inst.d == 2:
        between = between and tol < position < 1 - tol
    return Minimisers(inst.name, n, s, g, t_norm, t_sharp, position, distinct, bool(between), 2.0 / g.sharpness)


# ---------------------------------------------------------------------------------------------------
# d = 2: M as a curve, for drawing


@dataclass
class ZeroLossCurve:
    """M for d = 2 parametrised by β_1 ∈ [0, y/x_1]: β_2 = (y − x_1β_1)/x_2, w = β^{1/D}, with N, S, G."""

    beta1: np.ndarray
    beta: np.ndarray  # (n, 2)
    w: np.ndarray  # (n, 2)
    l2_norm: np.ndarray
    sharpness: np.ndarray
    gen_error: np.ndarray


def zero_loss_beta(inst: Instance, beta1) -> np.ndarray:
    """Points of M (d = 2) at the given β_1 ∈ [0, y/x_1]: rows (β_1, (y − x_1β_1)/x_2)."""
    if inst.d != 2:
        raise ValueError(f"the β_1 parametrisation of M is for d = 2 (instance has d = {inst.d})")
    b1 = np.atleast_1d(np.asarray(beta1, dtype=np.float64))
    return np.stack([b1, (inst.y - inst.x[0] * b1) / inst.x[1]], axis=1)


def zero_loss_curve(inst: Instance, num: int = 401, beta1: np.ndarray | None = None) -> ZeroLossCurve:
    """M for d = 2 sampled at ``num`` evenly spaced β_1 ∈ [0, y/x_1] (or at the given β_1), for drawing."""
    b1 = np.linspace(0.0, inst.y / inst.x[0], num) if beta1 is None else np.asarray(beta1, dtype=np.float64)
    beta = zero_loss_beta(inst, b1)
    pts = [point(b, inst) for b in beta]
    return ZeroLossCurve(b1, beta, w_of_beta(beta, inst.depth), np.array([p.l2_norm for p in pts]),
                         np.array([p.sharpness for p in pts]), np.array([p.gen_error for p in pts]))
