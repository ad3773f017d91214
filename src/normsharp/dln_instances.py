"""The shipped diagonal-network instances, the ``single_point`` dataset, and the exact value of a run's end point.

Also the table of the instances' minimisers that docs/diagonal-linear-network.md shows (:func:`markdown_table`).
"""

from __future__ import annotations

import math

import numpy as np

from .containers import RawSplit
from .dln_closed_form import Instance, beta_of_theta, generalisation_error, minimisers
from .errors import ConfigError

# ---------------------------------------------------------------------------------------------------
# Shipped instances (their names, in this order, are normsharp.registry.SINGLE_POINT_INSTANCES)


def _toeplitz(d: int, rho: float) -> np.ndarray:
    idx = np.arange(d)
    return rho ** np.abs(idx[:, None] - idx[None, :])


INSTANCES: dict[str, Instance] = {
    "d2": Instance(
        name="d2", x=np.array([2.0, 1.0]), y=1.0, sigma=np.eye(2), beta_star=np.array([0.25, 0.5]),
        note="noiseless teacher β* ∈ M halfway between β_N = (1/2, 0) and β_S = (0, 1); η* = 2/S(β*) = 1/3",
    ),
    "d5": Instance(
        name="d5", x=np.array([2.0, 1.7, 1.4, 1.2, 1.0]), y=1.0, sigma=_toeplitz(5, 0.5),
        beta_star=np.array([0.1, 0.15, 0.1, 0.05, 0.3]),
        note="anisotropic test design Σ_ij = 0.5^|i−j| and a noisy training label (y ≠ ⟨β*, x⟩)",
    ),
    "d2-depth3": Instance(
        name="d2-depth3", x=np.array([2.0, 1.0]), y=1.0, sigma=np.eye(2), beta_star=np.array([0.3, 0.4]),
        depth=3, note="depth D = 3: the sharpness minimiser is interior, β_S ∝ x^{⊙−3}",
    ),
}


def _fmt_vec(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{c:.4g}" for c in v) + ")"


def markdown_table(instances: dict[str, Instance] | None = None) -> str:
    """A markdown table of the three minimisers of each instance: β, ‖w‖₂, S, G, and betweenness."""
    instances = INSTANCES if instances is None else instances
    lines = ["| instance | d | D | minimiser | β | ‖w‖₂ | sharpness S | generalisation G |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for inst in instances.values():
        m = minimisers(inst)
        for p in (m.norm, m.sharpness, m.generalisation):
            lines.append(f"| {inst.name} | {inst.d} | {inst.depth} | {p.kind} | {_fmt_vec(p.beta)} | "
                         f"{p.l2_norm:.4f} | {p.sharpness:.4f} | {p.gen_error:.4g} |")
        where = f"t_norm = {m.t_norm:.3f}, t_sharp = {m.t_sharp:.3f}"
        if inst.d == 2:
            where += f", position on the arc β_N→β_S = {m.position:.3f}"
        noise = inst.y - float(inst.beta_star @ inst.x)
        notes.append(f"- **{inst.name}**: x = {_fmt_vec(inst.x)}, y = {inst.y:g}, β* = {_fmt_vec(inst.beta_star)}, "
                     f"y − ⟨β*, x⟩ = {noise:.4g}; "
                     f"{inst.note}. Generalisation optimum strictly between: {m.between} ({where}; "
                     f"η* = 2/S(β_G) = {m.eta_star:.4f}).")
    return "\n".join(lines + [""] + notes)


# ---------------------------------------------------------------------------------------------------
# Dataset for the pipeline


def instance_of(spec: dict) -> Instance:
    """The :class:`Instance` a ``single_point`` dataset spec names.

    spec keys: ``instance`` (a name in :data:`INSTANCES`) or explicit ``x``, ``y``, ``beta_star`` and
    optional ``sigma`` (default I); the model depth is not part of the dataset (see :func:`end_point`).
    """
    if "instance" in spec:
        name = spec["instance"]
        if name not in INSTANCES:
            raise ConfigError(f"dataset.instance is {name!r}; allowed: {sorted(INSTANCES)}")
        return INSTANCES[name]
    if "x" in spec and "y" in spec:
        if "beta_star" not in spec:
            raise ConfigError("dataset with explicit x, y needs beta_star (the teacher of the test labels)")
        x = np.asarray(spec["x"], dtype=np.float64)
        return Instance("custom", x, float(spec["y"]), np.asarray(spec.get("sigma", np.eye(len(x))), dtype=np.float64),
                        np.asarray(spec["beta_star"], dtype=np.float64))
    raise ConfigError("dataset 'single_point' needs 'instance' (one of "
                      f"{sorted(INSTANCES)}) or explicit 'x', 'y', 'beta_star'")


def single_point_raw(spec: dict) -> RawSplit:
    """Training set = the one point (x, y); test set = n_test draws x' ~ N(0, Σ) labelled ⟨β*, x'⟩.

    spec keys: those of :func:`instance_of`; ``n_test`` (default 2000); ``data_seed`` (default 0).
    The config MUST set ``standardise: false`` in the dataset spec (:func:`normsharp.data.load_data`
    refuses otherwise): with one training point the training std is 0 and centring maps x to 0,
    destroying the problem. The pipeline's test loss (mean ½(f − y)²) is then a Monte-Carlo estimate
    of G(β)/2.
    """
    inst = instance_of(spec)
    n_test = int(spec.get("n_test", 2000))
    rng = np.random.default_rng(int(spec.get("data_seed", 0)))
    chol = np.linalg.cholesky(inst.sigma)
    x_test = rng.standard_normal((n_test, inst.d)) @ chol.T
    return RawSplit(inst.x[None, :].copy(), np.array([[inst.y]]), x_test, (x_test @ inst.beta_star)[:, None],
                    num_classes=None)


def has_closed_form(dataset: dict | None, model: dict) -> bool:
    """Whether a setup is the counter-example: a ``single_point`` dataset and a ``diagonal_linear`` model."""
    return bool(dataset) and dataset.get("name") == "single_point" and model.get("arch") == "diagonal_linear"


def end_point(dataset: dict | None, model: dict, theta) -> dict:
    """Exact quantities of a run's end point θ: its β and G(β) = (β − β*)ᵀΣ(β − β*).

    For a setup without a closed form (:func:`has_closed_form` false) G is NaN and β is empty; so is G
    for a non-finite θ (a diverged run). ``model`` is the model spec (depth, variant).
    """
    if not has_closed_form(dataset, model):
        return {"gen_error": math.nan, "beta": []}
    inst = instance_of(dataset)
    beta = beta_of_theta(theta, int(model.get("depth", 2)), model.get("variant", "shared"))
    gen = generalisation_error(beta, inst) if np.all(np.isfinite(beta)) else math.nan
    return {"gen_error": gen if math.isfinite(gen) else math.nan, "beta": [float(b) for b in beta]}
