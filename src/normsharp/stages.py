"""The workflow's stages as plain functions over paths and dicts (the Snakemake scripts only call these).

Files of one run directory: ``result.json`` (status, steps, η, η_c, …), ``theta.pt`` (final θ),
``trajectory.parquet`` (step, time, train_loss, sharpness, test_loss, test_accuracy), then ``geometry.json`` and ``test.json``.
Every file is written to a temporary name and renamed, so a killed job leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError
from .provenance import COLUMNS as PROVENANCE_COLUMNS
from .provenance import provenance

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from .checkpoint import Checkpoint
    from .data import Data

# Each stage imports what it uses inside its function: a job's process pays only for its own stage
# (torch ≈ 3 s, pandas ≈ 1 s, scipy ≈ 0.5 s on a 2-core CPU; benchmarks/bench_pipeline.py).

log = logging.getLogger("normsharp")

TRAJECTORY_COLUMNS = ["step", "time", "train_loss", "sharpness", "test_loss", "test_accuracy"]


def log_to(path) -> None:
    """Send the library's log, and the traceback of an uncaught error, to a job's log file."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.info("job started (imports done)")  # benchmarks/bench_pipeline.py times each job's start from this line

    def hook(kind, value, tb):
        from .image_data import DataMissingError

        log.error("".join(traceback.format_exception(kind, value, tb)))
        if isinstance(value, (ConfigError, DataMissingError)):  # the message says what to do; no traceback
            print(f"{kind.__name__}: {value}", file=sys.stderr)
        else:
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = hook


def _atomic(path: str | os.PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj: dict) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=float)))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def save_tensor(path, theta: torch.Tensor) -> None:
    import torch

    _atomic(path, lambda p: torch.save(theta.detach().cpu(), p))


def write_trajectory(path, rows: list[dict]) -> None:
    """Columns step (int64), then float64 columns (NaN where a row lacks them), written with pyarrow (no pandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"step": pa.array([int(r["step"]) for r in rows], pa.int64())}
    for k in TRAJECTORY_COLUMNS[1:]:
        columns[k] = pa.array([float(r.get(k, math.nan)) for r in rows], pa.float64())
    _atomic(path, lambda p: pq.write_table(pa.table(columns), p))


def download_data(names: list[str], data_dir) -> None:
    """Fetch each of ``names`` (image_data.DATASETS) into ``data_dir``; files already there are kept (no network)."""
    from .image_data import download

    if not names:
        log.info("download_data: the config uses no torchvision dataset; nothing to fetch")
    for name in names:
        download(name, str(data_dir))
        log.info("download_data: %s is in %s", name, os.path.abspath(data_dir))


def prepare_data(spec: dict, loss: str, out_path) -> None:
    """Load, subset and standardise the dataset once (float64 on CPU); every later stage reads this file."""
    import torch

    from .data import load_data

    data = load_data(spec, loss, dtype=torch.float64, device="cpu")
    _atomic(out_path, lambda p: torch.save(vars(data), p))


def load_prepared(path, device: torch.device, dtype: torch.dtype) -> Data:
    """The prepared dataset on ``device`` (inputs and real targets in ``dtype``, labels stay integer)."""
    import torch

    from .data import Data

    fields = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        t = fields[key]
        fields[key] = t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return Data(**fields)


def init_model(data_path, model_spec: dict, seed: int, out_path) -> None:
    """θ₀ for (model, seed), saved with the model spec so later stages rebuild the same function."""
    import torch

    from .models import build_model

    data = load_prepared(data_path, torch.device("cpu"), torch.float64)
    model = build_model(model_spec, data.input_shape, data.output_dim, seed)
    if model_spec.get("arch") == "custom":  # the user's module: stop now if it is random or batch-dependent
        from .custom import check_full_batch

        check_full_batch(model, data.x_train[:256], data.output_dim)
    _atomic(out_path, lambda p: torch.save({"theta0": model.theta0, "model": model_spec, "seed": seed,
                                            "num_params": model.num_params}, p))
    log.info("init_model %s seed=%d: %d parameters", model_spec.get("arch"), seed, model.num_params)


class Problem:
    """Data, model and θ₀ of one (setup, seed) on the configured device, with the training objective."""

    def __init__(self, data_path, init_path, loss: str, numerics: dict):
        import torch

        from .models import build_model
        from .numerics import setup_numerics
        from .objective import NetObjective

        self.device, self.dtype = setup_numerics(numerics.get("device", "auto"), numerics.get("dtype", "float64"),
                                                 numerics.get("threads"))
        self.data = load_prepared(data_path, self.device, self.dtype)
        saved = torch.load(init_path, map_location="cpu", weights_only=False)
        self.model_spec = saved["model"]
        self.model = build_model(saved["model"], self.data.input_shape, self.data.output_dim, saved["seed"])
        if self.model.num_params != saved["num_params"]:
            raise ConfigError(f"model: the module now has {self.model.num_params} parameters, θ₀ in {init_path} "
                              f"has {saved['num_params']} (the factory's code changed?): rerun init_model "
                              f"(snakemake --forcerun init_model)")
        self.model.to(self.dtype, self.device)
        self.theta0 = saved["theta0"].to(device=self.device, dtype=self.dtype)
        self.objective = NetObjective(self.model, self.data.x_train, self.data.y_train, loss,
                                      chunk_size=numerics.get("chunk_size"))

    def test_metrics(self, theta: torch.Tensor) -> dict:
        """Test loss and accuracy at θ (one forward pass over the test set; accuracy NaN for regression)."""
        from .metrics import evaluate

        out = evaluate(self.objective, theta, self.data.x_test, self.data.y_test, self.data.num_classes)
        return {"test_loss": out["loss"], "test_accuracy": out["accuracy"]}

    def load_theta(self, path) -> torch.Tensor:
        import torch

        return torch.load(path, map_location="cpu", weights_only=True).to(device=self.device, dtype=self.dtype)


def _run_record(res, identity: dict, wall: float, p: Problem) -> dict:
    return {**identity, "status": res.status, "steps": res.steps, "train_loss": res.train_loss, "time": res.time,
            "n_grad": res.n_grad, "n_hvp": res.n_hvp, "wall_seconds": wall, **provenance(p.device, p.dtype)}


def _write_run(out: Path, res, record: dict, ck: Checkpoint) -> None:
    """A finished run's files (θ, trajectory, result.json, each written atomically), then drop its checkpoint."""
    save_tensor(out / "theta.pt", res.theta)
    write_trajectory(out / "trajectory.parquet", res.trajectory)
    write_json(out / "result.json", record)
    ck.remove()


def gradient_flow(data_path, init_path, loss: str, settings: dict, numerics: dict, identity: dict, out_dir) -> None:
    """The gradient-flow reference: s_GF, η_c = 2/s_GF, t_ε, final θ and trajectory."""
    from .checkpoint import Checkpoint
    from .dynamics import run_gradient_flow

    out = Path(out_dir)
    p = Problem(data_path, init_path, loss, numerics)
    ck = Checkpoint(out / "checkpoint.pt", settings.get("checkpoint_every", 0),
                    {**settings, **numerics, "loss": loss})
    start = time.monotonic()
    res = run_gradient_flow(p.objective, p.theta0, loss_threshold=settings["loss_threshold"],
                            max_steps=settings["max_steps"], method=settings["method"], tol=settings["tol"],
                            alpha=settings["alpha"],
                            sharpness_every=settings["sharpness_every"], sharpness_tol=settings["sharpness_tol"],
                            log_every=settings["log_every"],
                            divergence_factor=settings["divergence_factor"], checkpoint=ck,
                            observe=p.test_metrics, observe_every=settings.get("test_every", 0))
    record = {**_run_record(res, identity, time.monotonic() - start, p), "method": "gf", "eta": math.nan,
              "eta_c": res.eta_c, "s_gf": res.s_gf, "final_sharpness": res.final_sharpness}
    _write_run(out, res, record, ck)


def resolve_eta(eta_spec: dict, eta_c: float) -> float:
    """η from {'relative': r} (η = r·η_c) or {'absolute': η}."""
    if "relative" in eta_spec:
        return float(eta_spec["relative"]) * eta_c
    return float(eta_spec["absolute"])


def train_gd(data_path, init_path, gf_result_path, loss: str, eta_spec: dict, settings: dict, numerics: dict,
             identity: dict, out_dir) -> None:
    """Full-batch GD at one η from θ₀ until L < ε (or max_steps, or divergence)."""
    from .checkpoint import Checkpoint
    from .dynamics import run_gd

    out = Path(out_dir)
    gf = read_json(gf_result_path)
    eta = resolve_eta(eta_spec, gf["eta_c"])
    p = Problem(data_path, init_path, loss, numerics)
    ck = Checkpoint(out / "checkpoint.pt", settings.get("checkpoint_every", 0),
                    {**settings, **numerics, "loss": loss, "eta": eta})
    start = time.monotonic()
    res = run_gd(p.objective, p.theta0, eta, loss_threshold=settings["loss_threshold"],
                 max_steps=settings["max_steps"], log_every=settings["log_every"],
                 sharpness_every=settings["sharpness_every"], sharpness_tol=settings["sharpness_tol"],
                 divergence_factor=settings["divergence_factor"], checkpoint=ck,
                 observe=p.test_metrics, observe_every=settings.get("test_every", 0))
    record = {**_run_record(res, identity, time.monotonic() - start, p), "method": "gd", "eta": eta,
              "eta_c": gf["eta_c"], "s_gf": gf["s_gf"], **{f"eta_{k}": v for k, v in eta_spec.items()}}
    _write_run(out, res, record, ck)


def evaluate_geometry(data_path, init_path, run_dir, loss: str, settings: dict, numerics: dict, out_path) -> None:
    """Sharpness (signed max|λ|), top-k eigenvalues, Hutchinson trace and norms of a run's end point."""
    from .dynamics import DIVERGED
    from .eigen import hutchinson_trace, lanczos
    from .metrics import norms

    run_dir = Path(run_dir)
    status = read_json(run_dir / "result.json")["status"]
    p = Problem(data_path, init_path, loss, numerics)
    theta = p.load_theta(run_dir / "theta.pt")
    record = {**norms(theta, p.theta0), "sharpness": math.nan, "top_eigenvalues": [], "trace": math.nan,
              "trace_stderr": math.nan, "n_hvp": 0}
    if status != DIVERGED:
        hvp = p.objective.hessian_at(theta)
        eig = lanczos(hvp, p.objective.dim, k=settings["top_k"], tol=settings["tol"], max_iter=settings["max_iter"],
                      dtype=p.dtype, device=p.device)
        tr = hutchinson_trace(hvp, p.objective.dim, n_samples=settings["trace_samples"], dtype=p.dtype,
                              device=p.device)
        record.update(sharpness=eig.value, top_eigenvalues=[float(v) for v in eig.values], trace=tr.value,
                      trace_stderr=tr.stderr, n_hvp=eig.n_matvec + tr.n_matvec, sharpness_converged=eig.converged)
        log.info("geometry %s: sharpness=%.6g (%d HVPs) l1=%.6g", run_dir, eig.value, eig.n_matvec, record["l1_norm"])
    write_json(out_path, record)


def evaluate_test(data_path, init_path, run_dir, loss: str, numerics: dict, out_path,
                  dataset: dict | None = None) -> None:
    """Train and test loss and accuracy of a run's end point (NaN where the run diverged to non-finite θ).

    With the ``dataset`` spec of a setup that has a closed form (single point, diagonal linear network,
    :func:`normsharp.theory.end_point`) also the exact generalisation error ``gen_error`` and the end
    point's ``beta``; otherwise gen_error is NaN and beta empty.
    """
    from .metrics import evaluate
    from .theory import end_point

    run_dir = Path(run_dir)
    p = Problem(data_path, init_path, loss, numerics)
    theta = p.load_theta(run_dir / "theta.pt")
    test = evaluate(p.objective, theta, p.data.x_test, p.data.y_test, p.data.num_classes)
    train = evaluate(p.objective, theta, p.data.x_train, p.data.y_train, p.data.num_classes)
    write_json(out_path, {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
                          "train_accuracy": train["accuracy"], **end_point(dataset, p.model_spec, theta)})


GAP_COLUMNS = ["dist_to_gf", "rel_dist_to_gf", "train_loss_gap_gf", "sharpness_gap_gf"]
RUN_COLUMNS = {
    "experiment": "string", "setup": "string", "dataset": "string", "arch": "string", "loss": "string",
    "seed": "int64", "method": "string", "eta": "float64", "eta_c": "float64", "s_gf": "float64",
    "eta_transition": "float64",
    "eta_over_eta_c": "float64", "regime": "string", "status": "string", "steps": "int64",
    "train_loss": "float64", "test_loss": "float64", "test_accuracy": "float64", "sharpness": "float64",
    "l1_norm": "float64", "l2_norm": "float64", "dist_to_init": "float64", "trace": "float64",
    "train_accuracy": "float64", "gen_error": "float64", "time": "float64", "n_grad": "int64", "n_hvp": "int64",
    "wall_seconds": "float64", **dict.fromkeys(GAP_COLUMNS, "float64"), **PROVENANCE_COLUMNS,
}


def regime(method: str, eta: float, eta_c: float) -> str:
    """'gf' for the reference; 'flow-aligned' if η < η_c else 'eos'."""
    if method == "gf":
        return "gf"
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


def refine_eta(run_dirs: list, settings: dict, tol: float, out_path) -> None:
    """One refinement round of a setup and seed's η sweep (its GD runs so far in ``run_dirs``).

    From the converged runs' final S: the bracket (η_lo, η_hi) of :func:`transition_bracket`, as multiples
    of η_c; while its relative width η_hi/η_lo − 1 exceeds ``settings['width']``, ``settings['points']``
    new multiples of η_c inside it (geometric). With ``settings['test_minimum']`` also one between the run of
    least test loss and each neighbour, where that gap is wider than the width. Writes
    {bracket, width, added, runs}: ``runs`` are the run names after this round (``r<multiple>``).
    """
    import pandas as pd

    runs = []
    for run_dir in map(Path, run_dirs):
        result, geometry = read_json(run_dir / "result.json"), read_json(run_dir / "geometry.json")
        test = read_json(run_dir / "test.json")
        runs.append({"run": run_dir.name, "ratio": result["eta"] / result["eta_c"], "status": result["status"],
                     "sharpness": geometry["sharpness"], "test_loss": test["test_loss"]})
    frame = pd.DataFrame(runs)
    ok = frame[frame.status == "converged"].sort_values("ratio")
    taken = list(frame.ratio)
    bracket = transition_bracket(ok.ratio, ok.sharpness, 1.0, tol)
    width = bracket[1] / bracket[0] - 1 if bracket else math.nan
    added = []
    if bracket and width > settings["width"]:
        added += _inside(*bracket, settings["points"], taken)
    finite = ok[np.isfinite(ok.test_loss)].reset_index(drop=True)
    if settings.get("test_minimum") and len(finite) > 1:
        i = int(finite.test_loss.idxmin())
        for j in (i - 1, i + 1):
            if 0 <= j < len(finite):
                lo, hi = sorted((finite.ratio[i], finite.ratio[j]))
                if hi / lo - 1 > settings["width"]:
                    added += _inside(lo, hi, 1, taken + added)
    added = sorted(set(added))
    names = [r["run"] for r in runs] + [f"r{v!r}" for v in added]
    log.info("refine_eta: bracket %s (width %.4g), adding %s", bracket, width, added)
    write_json(out_path, {"bracket": list(bracket) if bracket else None, "width": width, "added": added,
                          "runs": list(dict.fromkeys(names))})


def transitions(runs: pd.DataFrame, tol: float = 0.1) -> pd.Series:
    """:func:`eta_transition` of each (setup, seed) from its converged GD runs, aligned with ``runs``' rows."""
    import pandas as pd

    gd = runs[(runs.method == "gd") & (runs.status == "converged")]
    per_key = {key: eta_transition(g.eta, g.sharpness, g.eta_c.iloc[0], tol) for key, g in gd.groupby(["setup", "seed"])}
    return pd.Series([per_key.get((s, seed), math.nan) for s, seed in zip(runs.setup, runs.seed)], index=runs.index,
                     dtype="float64")


def gaps_to_flow(runs: pd.DataFrame, run_dirs: list[Path]) -> pd.DataFrame:
    """How far each run ends from its setup and seed's gradient-flow end point θ_GF, aligned with ``runs``:
    ‖θ − θ_GF‖₂, that over ‖θ_GF − θ₀‖₂, and the final L(θ) − L(θ_GF) and S(θ) − S(θ_GF) (signed).

    ``run_dirs[i]`` holds row i's ``theta.pt``; θ₀ is ``init.pt`` one folder up. NaN for diverged runs and
    without a GF run.
    """
    import pandas as pd
    import torch  # θ files are torch's: the one part of aggregate that needs it

    def theta(path):
        return torch.load(path, map_location="cpu", weights_only=False)

    gf_rows = {(r.setup, r.seed): i for i, r in enumerate(runs.itertuples()) if r.method == "gf"}
    flow = {key: (theta(run_dirs[i] / "theta.pt"), theta(run_dirs[i].parent / "init.pt")["theta0"])
            for key, i in gf_rows.items()}
    out = pd.DataFrame(math.nan, index=runs.index, columns=GAP_COLUMNS)
    for i, r in enumerate(runs.itertuples()):
        key = (r.setup, r.seed)
        if key not in flow or r.status == "diverged":
            continue
        gf = runs.iloc[gf_rows[key]]
        theta_gf, theta0 = flow[key]
        dist = float((theta(run_dirs[i] / "theta.pt").to(theta_gf) - theta_gf).norm())
        out.iloc[i] = [dist, dist / float((theta_gf - theta0).norm()), r.train_loss - gf.train_loss,
                       r.sharpness - gf.sharpness]
    return out


def aggregate(run_dirs: list, out_runs, out_trajectories, transition_tol: float = 0.1) -> None:
    """One row per run into runs.parquet (with each setup and seed's :func:`eta_transition`); all trajectories,
    long form, into trajectories.parquet."""
    import pandas as pd

    rows, trajectories = [], []
    for run_dir in map(Path, run_dirs):
        result = read_json(run_dir / "result.json")
        geometry = read_json(run_dir / "geometry.json")
        test = read_json(run_dir / "test.json")
        row = {"gen_error": math.nan, "beta": [], **dict.fromkeys(PROVENANCE_COLUMNS), **result, **test,
               **{k: v for k, v in geometry.items() if k != "n_hvp"}}
        row["n_hvp"] = result["n_hvp"] + geometry["n_hvp"]
        row["eta_over_eta_c"] = row["eta"] / row["eta_c"]
        row["regime"] = regime(row["method"], row["eta"], row["eta_c"])
        rows.append(row)
        traj = pd.read_parquet(run_dir / "trajectory.parquet")
        for key in ("experiment", "setup", "seed", "method", "eta"):
            traj.insert(0, key, row[key])
        trajectories.append(traj)
    runs = pd.DataFrame(rows)
    runs["eta_transition"] = transitions(runs, transition_tol)
    runs = runs.join(gaps_to_flow(runs, list(map(Path, run_dirs))))
    lists = ["top_eigenvalues", "beta"]
    extra = [c for c in runs.columns if c not in RUN_COLUMNS and c not in lists]
    runs = runs[list(RUN_COLUMNS) + lists + extra].astype(RUN_COLUMNS)
    runs = runs.sort_values(["setup", "seed", "method", "eta"], na_position="first").reset_index(drop=True)
    traj = pd.concat(trajectories, ignore_index=True).astype(
        {"experiment": "string", "setup": "string", "seed": "int64", "method": "string", "eta": "float64"})
    _atomic(out_runs, lambda p: runs.to_parquet(p, index=False))
    _atomic(out_trajectories, lambda p: traj.to_parquet(p, index=False))
    log.info("aggregate: %d runs, %d trajectory rows", len(runs), len(traj))
