"""The opt-in sharpness measures of an end point beyond max|λ| (config ``geometry``), each with its cost.

``geometry.density`` (probes > 0): the Hessian's spectral density by stochastic Lanczos quadrature
(:mod:`normsharp.spectrum`), probes × steps HVPs; ``geometry.adaptive_sharpness`` (enabled): worst- and
average-case adaptive sharpness (:mod:`normsharp.adaptive_sharpness`), steps gradients + samples losses;
``geometry.layer_sharpness`` (true): the top-|λ| of each layer's Hessian block (:mod:`normsharp.layer_sharpness`),
one Lanczos per layer. :func:`measure` returns the geometry.json entries of those turned on; :func:`not_measured`
the same keys for a measure that is off or a run that diverged (values NaN, lists empty, costs 0).
"""

from __future__ import annotations

import math
import time

# the runs.parquet columns these entries become (density's nodes and weights go to spectra.parquet instead)
SCALAR_COLUMNS = {
    "density_n_hvp": "int64", "density_seconds": "float64",
    "adaptive_sharpness_max": "float64", "adaptive_sharpness_avg": "float64",
    "adaptive_sharpness_avg_stderr": "float64", "adaptive_sharpness_n_grad": "int64",
    "adaptive_sharpness_seconds": "float64",
    "layer_sharpness_n_hvp": "int64", "layer_sharpness_seconds": "float64",
}
LIST_COLUMNS = ["layer_sharpness"]  # in the order of the layer_names of normsharp.parameter_norms


def not_measured() -> dict:
    """The entries of every measure, as for one not computed: NaN values, empty lists, zero cost, no density."""
    out = {k: (0 if t == "int64" else math.nan) for k, t in SCALAR_COLUMNS.items()}
    out.update({k: 0.0 for k in SCALAR_COLUMNS if k.endswith("_seconds")})
    return {**out, **{k: [] for k in LIST_COLUMNS}, "density": None}


def enabled(settings: dict) -> dict[str, bool]:
    """Which of the measures the ``geometry`` settings turn on."""
    return {"density": int((settings.get("density") or {}).get("probes", 0)) > 0,
            "adaptive_sharpness": bool((settings.get("adaptive_sharpness") or {}).get("enabled", False)),
            "layer_sharpness": bool(settings.get("layer_sharpness", False))}


def measure(objective, model, theta, settings: dict, dtype, device) -> dict:
    """The geometry.json entries of the measures ``settings`` turns on, at the end point θ (not diverged)."""
    from .adaptive_sharpness import average_case, worst_case
    from .layer_sharpness import layer_blocks, layer_sharpness
    from .spectrum import slq

    out = not_measured()
    on = enabled(settings)
    hvp = objective.hessian_at(theta) if on["density"] or on["layer_sharpness"] else None
    if on["density"]:
        d = settings["density"]
        start = time.monotonic()
        quad = slq(hvp, objective.dim, probes=d["probes"], steps=d["steps"], seed=d.get("seed", 0),
                   distribution=d.get("distribution", "rademacher"), dtype=dtype, device=device)
        out.update(density={"nodes": quad.nodes, "weights": quad.weights}, density_n_hvp=quad.n_matvec,
                   density_seconds=time.monotonic() - start)
    if on["adaptive_sharpness"]:
        a = settings["adaptive_sharpness"]
        start = time.monotonic()
        worst = worst_case(objective, theta, rho=a["rho"], p=a["p"], steps=a["steps"], step_size=a["step_size"],
                           seed=a.get("seed", 0))
        avg = average_case(objective, theta, rho=a["rho"], samples=a["samples"], seed=a.get("seed", 0))
        out.update(adaptive_sharpness_max=worst.value, adaptive_sharpness_avg=avg.value,
                   adaptive_sharpness_avg_stderr=avg.stderr, adaptive_sharpness_n_grad=worst.n_grad,
                   adaptive_sharpness_seconds=time.monotonic() - start)
    if on["layer_sharpness"]:
        start = time.monotonic()
        layers = layer_sharpness(hvp, objective.dim, layer_blocks(model.names, model.numels),
                                 tol=settings["tol"], max_iter=settings["max_iter"], dtype=dtype, device=device)
        out.update(layer_sharpness=layers.values, layer_sharpness_n_hvp=layers.n_matvec,
                   layer_sharpness_seconds=time.monotonic() - start)
    return out
