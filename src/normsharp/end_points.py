"""Is the growth real? An Edge-of-Stability end point measured two more ways (config ``geometry.end_points``).

GD at η ≥ η_c stops at the first θ_K with L(θ_K) < ε while it still oscillates across a valley, so S, ‖θ‖₁ …
of θ_K mix the drift of the end point with the phase of the oscillation. Two points take the oscillation out:

(a) *averaged*: continue GD at the run's η for W = ``window`` steps and average the iterates,
        θ̄ = (1/W) Σ_{k=0}^{W−1} θ_{K+k},   θ_{k+1} = θ_k − η∇L(θ_k)   (W − 1 gradients);
    a period-2 oscillation θ* ± δ is averaged exactly by an even W. On L = ½(θ − θ*)ᵀA(θ − θ*):
        θ̄ − θ* = (1/W)(ηA)⁻¹(I − (I − ηA)^W)(θ_K − θ*).
(b) *continued*: the gradient flow dθ/dt = −∇L(θ) from θ_K (:func:`normsharp.flow.run_gradient_flow`, the
    setup's ``gf`` integrator settings) until L < ``continue_factor``·ε, the point a vanishing step would
    settle at; at the latest at flow time t = ``max_time_factor``·K·η, K·η the time the K GD steps of the run
    took to reach ε (status 'max_time'), or after ``max_steps`` integrator steps (status 'max_steps'), measured
    where it stopped. On a quadratic θ(t) − θ* = e^{−At}(θ_K − θ*). The time cap bounds the cost where L
    creeps towards a floor near ε and the flow would need a time without end to go a factor below it.

Each point gets the raw end point's measures: S (signed max|λ| by Lanczos with ``geometry.tol``,
``max_iter``), ℓ1, ℓ2, train and test loss, its distance to θ_K, and its cost (gradients, HVPs, seconds).
Measured only for plain GD runs (no other optimiser: their iterates follow another map) in the regime 'eos'
(η ≥ η_c, :func:`normsharp.analysis.regime`) that did not diverge (:func:`normsharp.stages.end_points_wanted`);
every other run gets :func:`not_measured`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the solvers are imported where used: analysis reads the columns without them
    import torch

    from .objective import Objective

MEASURES = ("sharpness", "l1_norm", "l2_norm", "train_loss", "test_loss", "dist_to_end")
COSTS = {"n_grad": "int64", "n_hvp": "int64", "seconds": "float64"}
SCALAR_COLUMNS = {**{f"{p}_{m}": "float64" for p in ("avg", "cont") for m in MEASURES},
                  **{f"{p}_{c}": t for p in ("avg", "cont") for c, t in COSTS.items()},
                  "cont_time": "float64", "cont_status": "string"}


# the setup's gf settings the continued flow uses (the integrator and its tolerances; its steps are capped by
# geometry.end_points.max_steps instead of gf.max_steps)
FLOW_KEYS = ("method", "tol", "alpha", "sharpness_every", "sharpness_tol", "divergence_factor")


def is_on(settings: dict) -> bool:
    """Whether the ``geometry`` settings turn ``end_points`` on."""
    return bool((settings.get("end_points") or {}).get("enabled", False))


def not_measured() -> dict:
    """The entries for a run these points are not measured at: NaN, no status, zero cost."""
    out = {k: (0 if t == "int64" else math.nan) for k, t in SCALAR_COLUMNS.items()}
    return {**out, "avg_seconds": 0.0, "cont_seconds": 0.0, "cont_status": None}


@dataclass
class Averaged:
    """θ̄ over the window, the gradients spent and whether every iterate stayed finite."""

    theta: torch.Tensor
    n_grad: int
    finite: bool


def averaged(objective: Objective, theta: torch.Tensor, eta: float, window: int) -> Averaged:
    """θ̄ = (1/W) Σ_{k=0}^{W−1} θ_{K+k} of GD at step η from θ_K = ``theta`` (module docstring, (a))."""
    import torch

    current = theta.detach().clone()
    total = current.clone()
    for k in range(1, window):
        _, grad = objective.loss_and_grad(current)
        current = current - eta * grad
        if not torch.isfinite(current).all():
            return Averaged(current, k, False)
        total += current
    return Averaged(total / window, window - 1, True)


def continued(objective: Objective, theta: torch.Tensor, loss_threshold: float, gf: dict, max_steps: int,
              max_time: float = math.inf):
    """The gradient flow from ``theta`` until L < ``loss_threshold``, flow time ``max_time`` or ``max_steps``
    integrator steps, with the ``gf`` integrator settings (FLOW_KEYS; absent ones take run_gradient_flow's
    defaults): a FlowResult."""
    from .flow import run_gradient_flow

    return run_gradient_flow(objective, theta, loss_threshold=loss_threshold, max_steps=max_steps, log_every=10**9,
                             max_time=max_time, **{k: gf[k] for k in FLOW_KEYS if k in gf})


def _point(prefix: str, objective: Objective, at: torch.Tensor, end: torch.Tensor, settings: dict,
           test_loss: Callable[[torch.Tensor], float]) -> dict:
    """The measures of MEASURES at ``at`` (S by Lanczos to the geometry tol), and the HVPs spent on S."""
    from .eigen import sharpness
    from .metrics import norms

    eig = sharpness(objective.hessian_at(at), objective.dim, tol=settings["tol"], max_iter=settings["max_iter"],
                    dtype=at.dtype, device=at.device)
    lengths = norms(at, end)  # ℓ1, ℓ2 and the distance to θ_K (norms' dist_to_init with θ_K for θ₀)
    values = {"sharpness": eig.value, "l1_norm": lengths["l1_norm"], "l2_norm": lengths["l2_norm"],
              "train_loss": float(objective.loss(at)), "test_loss": test_loss(at),
              "dist_to_end": lengths["dist_to_init"]}
    return {**{f"{prefix}_{k}": v for k, v in values.items()}, f"{prefix}_n_hvp": eig.n_matvec}


def measure(objective: Objective, theta: torch.Tensor, eta: float, steps: int, loss_threshold: float,
            settings: dict, gf: dict, test_loss: Callable[[torch.Tensor], float]) -> dict:
    """The avg_* and cont_* entries of the end point θ_K = ``theta`` of a GD run at η that took K = ``steps``
    steps to reach its threshold ε: ``settings`` the geometry settings (``end_points``: window, continue_factor,
    max_time_factor, max_steps; tol, max_iter for S), ``gf`` the setup's flow settings, ``test_loss(θ)`` the test
    loss. A point that left the finite numbers reads NaN."""
    import torch

    ends = settings["end_points"]
    out = not_measured()
    start = time.monotonic()
    avg = averaged(objective, theta, eta, ends["window"])
    if avg.finite:
        out.update(_point("avg", objective, avg.theta, theta, settings, test_loss))
    out.update(avg_n_grad=avg.n_grad, avg_seconds=time.monotonic() - start)
    start = time.monotonic()
    flow = continued(objective, theta, ends["continue_factor"] * loss_threshold, gf, ends["max_steps"],
                     ends["max_time_factor"] * max(steps, 1) * eta)
    if torch.isfinite(flow.theta).all():
        out.update(_point("cont", objective, flow.theta, theta, settings, test_loss))
    out.update(cont_n_grad=flow.n_grad, cont_n_hvp=out["cont_n_hvp"] + flow.n_hvp, cont_time=flow.time,
               cont_status=flow.status, cont_seconds=time.monotonic() - start)
    return out
