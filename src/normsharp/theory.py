"""The diagonal linear network counter-example: norm, sharpness and generalisation disagree on M.

Model f_w(x) = ⟨β, x⟩ with β = w^{⊙D} (weight sharing, depth D ≥ 2), one training point (x, y), squared
loss L(w) = ½(f_w(x) − y)² — the library's MSE over n = 1 example. Throughout x > 0 and y > 0, and M is
taken in the orthant w ≥ 0 (all of M in β for even D; for odd D the part that gradient flow from
w₀ = α·1 can reach, since ∂L/∂w_i ∝ w_i^{D−1} vanishes at w_i = 0):

    M = {w ≥ 0 : ⟨w^{⊙D}, x⟩ = y}  ≅  Δ = {β ≥ 0 : ⟨β, x⟩ = y}   (β = w^{⊙D}),

a simplex with vertices (y/x_i)e_i.

For D = 2 the norm minimiser is the sharpest point of M and the sharpness minimiser the point of largest
norm: the two biases conflict, and G's minimiser can be a strict compromise. Gradient flow from
w₀ = α·1 has a closed-form limit (:func:`gradient_flow_limit`), close to β_N for small α; GD with η
beyond η_c = 2/s_GF ends near the point of M with S = 2/η (edge of stability, :func:`eos_point`),
so η moves the end point from β_N toward β_S, and G is smallest near η* = 2/S(β_G).

The maths lives in three modules, whose names this one gathers: :mod:`normsharp.dln_closed_form` (the
instance, L, its Hessian, S, ‖w‖, G and the three minimisers on M), :mod:`normsharp.dln_limits` (where
gradient flow and GD end) and :mod:`normsharp.dln_instances` (the shipped instances, the ``single_point``
dataset, the exact evaluation of a run's end point, the table of the docs). numpy only (scipy's root finder
inside two functions): importing it loads no torch.
"""

from .dln_closed_form import (
    Instance,
    Minimisers,
    Point,
    ZeroLossCurve,
    beta_of_theta,
    beta_of_w,
    generalisation_error,
    generalisation_minimiser,
    hessian,
    l2_norm_sq,
    loss,
    minimisers,
    norm_minimiser,
    point,
    sharpness,
    sharpness_minimiser,
    sharpness_of_w,
    simplex_qp,
    w_of_beta,
    zero_loss_beta,
    zero_loss_curve,
)
from .dln_instances import INSTANCES, end_point, has_closed_form, instance_of, markdown_table, single_point_raw
from .dln_limits import eos_point, gradient_flow_limit

__all__ = [
    "INSTANCES", "Instance", "Minimisers", "Point", "ZeroLossCurve", "beta_of_theta", "beta_of_w", "end_point",
    "eos_point", "generalisation_error", "generalisation_minimiser", "gradient_flow_limit", "has_closed_form",
    "hessian", "instance_of", "l2_norm_sq", "loss", "markdown_table", "minimisers", "norm_minimiser", "point",
    "sharpness", "sharpness_minimiser", "sharpness_of_w", "simplex_qp", "single_point_raw", "w_of_beta",
    "zero_loss_beta", "zero_loss_curve",
]
