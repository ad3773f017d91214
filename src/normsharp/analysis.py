"""The analysis of a sweep, as pure functions of tables and arrays (no files): regime, the observed
transition η and its bracket, the refinement proposal, the gaps to the gradient flow and the runs table.

A *run* is one row: its ``result.json``, ``geometry.json`` and ``test.json`` merged (:func:`run_row`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .end_points import SCALAR_COLUMNS as END_POINT_COLUMNS
from .end_points import not_measured as end_points_not_measured
from .files import TRAJECTORY_COLUMNS
from .parameter_norms import LIST_COLUMNS as NORM_LIST_COLUMNS
from .parameter_norms import SCALAR_COLUMNS as NORM_COLUMNS
from .provenance import COLUMNS as PROVENANCE_COLUMNS
from .sharpness_measures import LIST_COLUMNS as MEASURE_LIST_COLUMNS
from .sharpness_measures import SCALAR_COLUMNS as MEASURE_COLUMNS
from .sharpness_measures import not_measured

if TYPE_CHECKING:
    import pandas as pd
    import torch

# pandas is imported inside the functions: the stages module imports this one, and a training job does not need it.

GAP_COLUMNS = ["dist_to_gf", "rel_dist_to_gf", "train_loss_gap_gf", "sharpness_gap_gf"]
RUN_COLUMNS = {
    "experiment": "string", "setup": "string", "dataset": "string", "arch": "string", "loss": "string",
    "seed": "int64", "method": "string", "eta": "float64", "eta_c": "float64", "s_gf": "float64",
    "eta_transition": "float64",
    "eta_over_eta_c": "float64", "regime": "string", "status": "string", "steps": "int64",
    "train_loss": "float64", "test_loss": "float64", "test_accuracy": "float64", "sharpness": "float64",
    "l1_norm": "float64", "l2_norm": "float64", "dist_to_init": "float64", "trace": "float64",
    "train_accuracy": "float64", "gen_error": "float64", "time": "float64", "n_grad": "int64", "n_hvp": "int64",
    "wall_seconds": "float64", **dict.fromkeys(GAP_COLUMNS, "float64"),
    "optimizer": "string", "opt_sharpness": "float64", "edge": "float64", "edge_ratio": "float64",
    **PROVENANCE_COLUMNS, **MEASURE_COLUMNS, **NORM_COLUMNS, **END_POINT_COLUMNS,
}
LIST_COLUMNS = ["top_eigenvalues", "beta", *MEASURE_LIST_COLUMNS, *NORM_LIST_COLUMNS]
TRAJECTORY_KEYS = {"experiment": "string", "setup": "string", "seed": "int64", "method": "string", "eta": "float64"}
# spectra.parquet: one row per node of each run's stochastic Lanczos quadrature (geometry.density)
SPECTRA_COLUMNS = {**TRAJECTORY_KEYS, "probe": "int64", "node": "float64", "weight": "float64"}


def regime(method: str, eta: float, eta_c: float) -> str | None:
    """'gf' for the reference; 'flow-aligned' if η < η_c else 'eos'; None without an η_c (the adaptive
    optimisers: no η_c to be below or above)."""
    if method == "gf":
        return "gf"
    if math.isnan(eta_c):
        return None
    return "flow-aligned" if eta < eta_c else "eos"


def _departure(eta, sharpness, eta_c: float, tol: float):
    """The sweep sorted by η with |S|, the threshold (1 − tol)·P and the index of the first run below it
    (P = median |S| of the runs with η < η_c); None without a plateau or a departure."""
    eta, s = np.asarray(eta, dtype=float), np.abs(np.asarray(sharpness, dtype=float))
    keep = np.isfinite(eta) & np.isfinite(s) & (s > 0)
    order = np.argsort(eta[keep], kind="stable")
    eta, s = eta[keep][order], s[keep][order]
    if not np.any(eta < eta_c):
        return None
    threshold = (1 - tol) * np.median(s[eta < eta_c])
    below = np.flatnonzero(s < threshold)
    return None if len(below) == 0 else (eta, s, threshold, int(below[0]))


def eta_transition(eta, sharpness, eta_c: float, tol: float = 0.1) -> float:
    """The η at which the final sharpness of a GD sweep leaves the flow-aligned plateau (observed η_c).

    Plateau P = median |S| of the runs with η < η_c; the transition is the smallest η with |S| < (1 − tol)·P,
    interpolated linearly in (log η, log |S|) between that run and the next smaller η of the sweep (on the
    EoS branch S = 2/η is a line there); the smallest η itself if the sweep starts below. NaN when no run
    has η < η_c or none falls below. Pass converged runs only: an unfinished run's S is not a final S.
    """
    found = _departure(eta, sharpness, eta_c, tol)
    if found is None:
        return math.nan
    eta, s, threshold, j = found
    if j == 0:
        return float(eta[0])
    u = (math.log(s[j - 1]) - math.log(threshold)) / (math.log(s[j - 1]) - math.log(s[j]))
    return float(math.exp(math.log(eta[j - 1]) + u * (math.log(eta[j]) - math.log(eta[j - 1]))))


def transition_bracket(eta, sharpness, eta_c: float, tol: float = 0.1) -> tuple[float, float] | None:
    """(η_lo, η_hi): the neighbouring η of the sweep between which :func:`eta_transition` lies (the last
    run on the plateau, the first below it); None when there is no such pair."""
    found = _departure(eta, sharpness, eta_c, tol)
    if found is None or found[3] == 0:
        return None
    eta, _, _, j = found
    return float(eta[j - 1]), float(eta[j])


def _inside(lo: float, hi: float, points: int, taken) -> list[float]:
    """``points`` multiples of η_c spaced geometrically strictly inside (lo, hi), at 4 significant digits
    (readable run names), without those already ``taken``."""
    values = {float(f"{v:.4g}") for v in np.geomspace(lo, hi, points + 2)[1:-1]}
    return sorted(v for v in values if lo < v < hi and not any(math.isclose(v, t, rel_tol=1e-9) for t in taken))


def locate_test_minimum(ratio, test_loss, status) -> dict:
    """Where a sweep's least test loss lies, from its GD runs (``ratio`` = η/η_c or η, ``test_loss``, ``status``).

    Over the converged runs with a finite test loss: the run of least test loss, at ``ratio`` r*, and its
    ``status``: 'bracketed' (converged runs on both sides of r*), 'edge' (r* is the largest η of the sweep: the
    minimum may lie further out), 'blocked' (r* is the largest converged η but a larger η of the sweep did not
    converge: ``blocked_by`` is the smallest such ratio), 'lower_edge' (r* is the smallest η) or 'none' (no
    such run). Returns {ratio, test_loss, status, blocked_by}.
    """
    ratio, loss = np.asarray(ratio, dtype=float), np.asarray(test_loss, dtype=float)
    status = np.asarray(status, dtype=object)
    ok = (status == "converged") & np.isfinite(loss) & np.isfinite(ratio)
    if not ok.any():
        return {"ratio": math.nan, "test_loss": math.nan, "status": "none", "blocked_by": None}
    i = np.flatnonzero(ok)[np.argmin(loss[ok])]
    best = float(ratio[i])
    above, below = ok & (ratio > best), ok & (ratio < best)
    failed = ~ok & (ratio > best)
    blocked_by = float(ratio[failed].min()) if failed.any() else None
    if above.any():
        where = "bracketed" if below.any() else "lower_edge"
        blocked_by = None
    else:
        where = "blocked" if failed.any() else "edge"
    return {"ratio": best, "test_loss": float(loss[i]), "status": where, "blocked_by": blocked_by}


def propose_refinement(runs: pd.DataFrame, width: float, points: int, test_minimum: bool = False,
                       tol: float = 0.1, extend_factor: float = 1.25) -> dict:
    """One refinement round of a setup and seed's η sweep, from its GD runs so far.

    ``runs``: one row per run with ``run`` (its name), ``ratio`` = η/η_c, ``status``, final ``sharpness`` and
    ``test_loss``. From the converged runs: the bracket (η_lo, η_hi) of :func:`transition_bracket` in
    multiples of η_c; while its relative width η_hi/η_lo − 1 exceeds ``width``, ``points`` new multiples
    inside it (geometric). With ``test_minimum``, where the least test loss lies (:func:`locate_test_minimum`): at the
    sweep's largest η ('edge'), one multiple further out, r*·``extend_factor`` (so rounds extend the grid
    geometrically until the minimum is bracketed or a run fails to converge); otherwise one between r* and each
    converged neighbour where that gap is wider than ``width``. Returns {bracket, width, added, test_minimum,
    runs}: ``test_minimum`` is :func:`locate_test_minimum` of these runs (recorded with the option off too), ``runs``
    the run names after this round (``r<multiple>`` for the added ones).
    """
    ok = runs[runs.status == "converged"].sort_values("ratio")
    taken = list(runs.ratio)
    bracket = transition_bracket(ok.ratio, ok.sharpness, 1.0, tol)
    bracket_width = bracket[1] / bracket[0] - 1 if bracket else math.nan
    added = []
    if bracket and bracket_width > width:
        added += _inside(*bracket, points, taken)
    minimum = locate_test_minimum(runs.ratio, runs.test_loss, runs.status)
    finite = ok[np.isfinite(ok.test_loss)].reset_index(drop=True)
    if test_minimum and minimum["status"] == "edge":
        out = float(f"{minimum['ratio'] * extend_factor:.4g}")
        if not any(math.isclose(out, t, rel_tol=1e-9) for t in taken):
            added.append(out)
    elif test_minimum and len(finite) > 1:
        i = int(finite.test_loss.idxmin())
        for j in (i - 1, i + 1):
            if 0 <= j < len(finite):
                lo, hi = sorted((finite.ratio[i], finite.ratio[j]))
                if hi / lo - 1 > width:
                    added += _inside(lo, hi, 1, taken + added)
    added = sorted(set(added))
    names = list(runs.run) + [f"r{v!r}" for v in added]
    return {"bracket": list(bracket) if bracket else None, "width": bracket_width, "added": added,
            "test_minimum": minimum, "runs": list(dict.fromkeys(names))}


def transitions(runs: pd.DataFrame, tol: float = 0.1) -> pd.Series:
    """:func:`eta_transition` of each (setup, seed) from its converged GD runs, aligned with ``runs``' rows."""
    import pandas as pd

    gd = runs[(runs.method == "gd") & (runs.status == "converged")]
    per_key = {key: eta_transition(g.eta, g.sharpness, g.eta_c.iloc[0], tol)
               for key, g in gd.groupby(["setup", "seed"])}
    return pd.Series([per_key.get((s, seed), math.nan) for s, seed in zip(runs.setup, runs.seed)], index=runs.index,
                     dtype="float64")


def gaps_to_flow(runs: pd.DataFrame, theta: Sequence[torch.Tensor],
                 theta0: Mapping[tuple[str, int], torch.Tensor]) -> pd.DataFrame:
    """How far each run ends from its setup and seed's gradient-flow end point θ_GF, aligned with ``runs``:
    ‖θ − θ_GF‖₂, that over ‖θ_GF − θ₀‖₂, and the final L(θ) − L(θ_GF) and S(θ) − S(θ_GF) (signed).

    ``theta[i]`` is row i's end point (read only for rows that need it, so a lazy sequence keeps two θ
    in memory); ``theta0[(setup, seed)]`` the initial point. NaN for diverged runs and without a GF run.
    """
    import pandas as pd

    gf_rows = {(r.setup, r.seed): i for i, r in enumerate(runs.itertuples()) if r.method == "gf"}
    flow = {key: (theta[i], theta0[key]) for key, i in gf_rows.items()}
    out = pd.DataFrame(math.nan, index=runs.index, columns=GAP_COLUMNS)
    for i, r in enumerate(runs.itertuples()):
        key = (r.setup, r.seed)
        if key not in flow or r.status == "diverged":
            continue
        gf = runs.iloc[gf_rows[key]]
        theta_gf, theta_init = flow[key]
        dist = float((theta[i].to(theta_gf) - theta_gf).norm())
        out.iloc[i] = [dist, dist / float((theta_gf - theta_init).norm()), r.train_loss - gf.train_loss,
                       r.sharpness - gf.sharpness]
    return out


def run_row(result: dict, geometry: dict, test: dict) -> dict:
    """One run's row: its three records merged; n_hvp counts training and geometry, η/η_c and the regime added;
    a geometry.json written before a measure existed reads as that measure not measured (NaN, empty)."""
    row = {"gen_error": math.nan, "beta": [], **dict.fromkeys(PROVENANCE_COLUMNS), **not_measured(),
           **dict.fromkeys(NORM_COLUMNS, math.nan), **dict.fromkeys(NORM_LIST_COLUMNS, []),
           **end_points_not_measured(), **result, **test, **{k: v for k, v in geometry.items() if k != "n_hvp"}}
    row.pop("density")  # the quadrature nodes go to spectra.parquet (spectra_frame)
    row["n_hvp"] = result["n_hvp"] + geometry["n_hvp"]
    row["eta_over_eta_c"] = row["eta"] / row["eta_c"]
    row["regime"] = regime(row["method"], row["eta"], row["eta_c"])
    row.update(own_edge(row))
    return row


def own_edge(row: dict) -> dict:
    """optimizer, opt_sharpness, edge = c/η and edge_ratio = opt_sharpness/edge of a merged run row.

    A Hessian-measured optimiser's (GD, momentum) final own sharpness is the end point's S (geometry) plus its
    ``sharpness_shift``; the others' is the ``opt_sharpness`` its training job measured. Records written before
    the optimisers existed are plain GD (c = 2, no shift); the flow has none of these (NaN)."""
    if row["method"] == "gf":
        return {"optimizer": None, "opt_sharpness": math.nan, "edge": math.nan, "edge_ratio": math.nan}
    edge = row.get("edge_constant", 2.0) / row["eta"]
    if row.get("edge_measure", "hessian") == "hessian":
        own = row["sharpness"] + row.get("sharpness_shift", 0.0)
    else:
        own = row["opt_sharpness"]
    return {"optimizer": row.get("optimizer", "gd"), "opt_sharpness": own, "edge": edge, "edge_ratio": own / edge}


def runs_frame(rows: list[dict], theta: Sequence[torch.Tensor], theta0: Mapping[tuple[str, int], torch.Tensor],
               transition_tol: float = 0.1) -> pd.DataFrame:
    """The runs table: ``rows`` (:func:`run_row`) with each setup and seed's :func:`eta_transition` and
    :func:`gaps_to_flow` (``theta[i]`` the end point of ``rows[i]``), columns RUN_COLUMNS (typed), then the
    list columns and any others, sorted by setup, seed, method, η."""
    import pandas as pd

    runs = pd.DataFrame(rows)
    runs["eta_transition"] = transitions(runs, transition_tol)
    runs = runs.join(gaps_to_flow(runs, theta, theta0))
    extra = [c for c in runs.columns if c not in RUN_COLUMNS and c not in LIST_COLUMNS]
    runs = runs[list(RUN_COLUMNS) + LIST_COLUMNS + extra].astype(RUN_COLUMNS)
    return runs.sort_values(["setup", "seed", "method", "eta"], na_position="first").reset_index(drop=True)


def trajectories_frame(rows: list[dict], trajectories: list[pd.DataFrame]) -> pd.DataFrame:
    """All trajectories in long form: ``trajectories[i]`` (one run's steps) led by the TRAJECTORY_KEYS of
    ``rows[i]`` (in reverse order: η first, experiment last); every column of files.TRAJECTORY_COLUMNS."""
    import pandas as pd

    frames = []
    for row, traj in zip(rows, trajectories):
        traj = traj.copy()
        for key in TRAJECTORY_KEYS:
            traj.insert(0, key, row[key])
        frames.append(traj)
    out = pd.concat(frames, ignore_index=True).astype(TRAJECTORY_KEYS)
    for column in TRAJECTORY_COLUMNS:  # a trajectory written before a column existed has NaN there
        if column not in out:
            out[column] = math.nan
    return out


def spectra_frame(rows: list[dict], densities: list[dict | None]) -> pd.DataFrame:
    """The spectral densities in long form, columns SPECTRA_COLUMNS: for each run ``rows[i]`` whose geometry
    has a quadrature ``densities[i]`` ({nodes, weights}: one list per probe), one row per (probe, node) with
    its weight τ². Runs without one (geometry.density off, diverged) add no rows; none at all: an empty table."""
    import pandas as pd

    records = []
    for row, found in zip(rows, densities):
        if not found:
            continue
        keys = {k: row[k] for k in TRAJECTORY_KEYS}
        for probe, (nodes, weights) in enumerate(zip(found["nodes"], found["weights"])):
            records += [{**keys, "probe": probe, "node": t, "weight": w} for t, w in zip(nodes, weights)]
    return pd.DataFrame(records, columns=list(SPECTRA_COLUMNS)).astype(SPECTRA_COLUMNS)
