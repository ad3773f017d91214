"""The workflow's stages: each reads its input files, calls the library or the analysis, writes its outputs.

Files of one run directory: ``result.json`` (status, steps, η, η_c, the optimiser and its edge, …), ``theta.pt``
(final θ), ``trajectory.parquet`` (step, time, train_loss, sharpness, test_loss, test_accuracy, opt_sharpness,
edge), then ``geometry.json`` and ``test.json`` (:func:`evaluate`). Writes are atomic (:mod:`normsharp.files`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .files import (
    atomic_write,
    load_init,
    load_prepared_fields,
    load_tensor,
    read_json,
    read_parquet,
    save_tensor,
    write_json,
    write_parquet,
    write_trajectory,
)
from .progress import NAME as PROGRESS
from .progress import ProgressFile
from .provenance import provenance

if TYPE_CHECKING:
    import torch

    from .checkpoint import Checkpoint
    from .data import Data

# Each stage imports what it uses inside its function: a job's process pays only for its own stage
# (torch ≈ 3 s, pandas ≈ 1 s, scipy ≈ 0.5 s on a 2-core CPU; benchmarks/bench_pipeline.py).

log = logging.getLogger("normsharp")


def download_data(names: list[str], data_dir) -> None:
    """Fetch each of ``names`` (image_data.DATASETS) into ``data_dir``; files already there are kept (no network)."""
    from .image_data import download

    if not names:
        log.info("download_data: the config uses no torchvision dataset; nothing to fetch")
    for name in names:
        download(name, str(data_dir))
        log.info("download_data: %s is in %s", name, os.path.abspath(data_dir))


def prepare_data(spec: dict, loss: str, out_path, data_dir="data") -> None:
    """Load, subset and standardise the dataset once (float64 on CPU); every later stage reads this file. A
    torchvision dataset is read from ``data_dir`` (an execution setting: where the files are, not what they are)."""
    import torch

    from .data import load_data
    from .registry import DOWNLOADABLE

    if spec["name"] in DOWNLOADABLE:
        spec = {**spec, "data_dir": str(data_dir)}
    data = load_data(spec, loss, dtype=torch.float64, device="cpu")
    atomic_write(out_path, lambda p: torch.save(vars(data), p))


def load_prepared(path, device: torch.device, dtype: torch.dtype) -> Data:
    """The prepared dataset on ``device`` (inputs and real targets in ``dtype``, labels stay integer)."""
    from .data import Data

    fields = load_prepared_fields(path)
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
    atomic_write(out_path, lambda p: torch.save({"theta0": model.theta0, "model": model_spec, "seed": seed,
                                                 "num_params": model.num_params}, p))
    log.info("init_model %s seed=%d: %d parameters", model_spec.get("arch"), seed, model.num_params)


class Problem:
    """Data, model and θ₀ of one (setup, seed) on the configured device, with the training objective.

    ``numerics``: the science of the numerics (``dtype``); ``execution``: how to compute (``device``, ``threads``,
    ``chunk_size``; :func:`normsharp.wfconfig.execution`), recorded by :meth:`execution_record`."""

    def __init__(self, data_path, init_path, loss: str, numerics: dict, execution: dict | None = None):
        from .models import build_model
        from .numerics import setup_numerics
        from .objective import NetObjective

        execution = execution or {}
        self.device, self.dtype = setup_numerics(execution.get("device", "auto"), numerics.get("dtype", "float64"),
                                                 execution.get("threads"))
        self.chunk_size = execution.get("chunk_size")
        self.data = load_prepared(data_path, self.device, self.dtype)
        saved = load_init(init_path)
        self.model_spec = saved["model"]
        self.model = build_model(saved["model"], self.data.input_shape, self.data.output_dim, saved["seed"])
        if self.model.num_params != saved["num_params"]:
            raise ConfigError(f"model: the module now has {self.model.num_params} parameters, θ₀ in {init_path} "
                              f"has {saved['num_params']} (the factory's code changed?): rerun init_model "
                              f"(snakemake --forcerun init_model)")
        self.model.to(self.dtype, self.device)
        self.theta0 = saved["theta0"].to(device=self.device, dtype=self.dtype)
        self.objective = NetObjective(self.model, self.data.x_train, self.data.y_train, loss,
                                      chunk_size=self.chunk_size)

    def execution_record(self) -> dict:
        """The execution settings this job used: torch's thread count and the chunk size (the device is in
        :func:`normsharp.provenance.provenance`)."""
        import torch

        return {"threads": torch.get_num_threads(), "chunk_size": self.chunk_size}

    def test_metrics(self, theta: torch.Tensor) -> dict:
        """Test loss and accuracy at θ (one forward pass over the test set; accuracy NaN for regression)."""
        from .metrics import evaluate

        out = evaluate(self.objective, theta, self.data.x_test, self.data.y_test, self.data.num_classes)
        return {"test_loss": out["loss"], "test_accuracy": out["accuracy"]}

    def load_theta(self, path) -> torch.Tensor:
        return load_tensor(path).to(device=self.device, dtype=self.dtype)


def _run_record(res, identity: dict, wall: float, p: Problem, ck: Checkpoint) -> dict:
    return {**identity, "status": res.status, "steps": res.steps, "train_loss": res.train_loss, "time": res.time,
            "n_grad": res.n_grad, "n_hvp": res.n_hvp, "wall_seconds": wall, **provenance(p.device, p.dtype),
            **p.execution_record(), "checkpoint_every": ck.every, "resumed_at_step": ck.resumed_at}


def _write_run(out: Path, res, record: dict, ck: Checkpoint) -> None:
    """A finished run's files (θ, trajectory, result.json, each written atomically), then drop its checkpoint."""
    save_tensor(out / "theta.pt", res.theta)
    write_trajectory(out / "trajectory.parquet", res.trajectory)
    write_json(out / "result.json", record)
    ck.remove()


def _progress(out: Path, execution: dict | None, stage: str, **fixed) -> ProgressFile:
    """The job's progress.json in ``out`` (:mod:`normsharp.progress`), every ``progress_seconds``."""
    return ProgressFile(out / PROGRESS, (execution or {}).get("progress_seconds", 10.0), stage=stage, **fixed)


def gradient_flow(data_path, init_path, loss: str, settings: dict, numerics: dict, identity: dict, out_dir,
                  execution: dict | None = None) -> None:
    """The gradient-flow reference: s_GF, η_c = 2/s_GF, t_ε, final θ and trajectory.

    ``settings`` and ``numerics`` are the run's science (the checkpoint is keyed by them); ``execution``
    (:func:`normsharp.wfconfig.execution`: device, threads, chunk_size, checkpoint_every, progress_seconds) is
    how it is computed, recorded in result.json."""
    from .checkpoint import Checkpoint
    from .flow import run_gradient_flow

    out, execution = Path(out_dir), execution or {}
    with _progress(out, execution, "gf", loss_threshold=settings.get("loss_threshold"),
                   max_steps=settings.get("max_steps")) as progress:
        p = Problem(data_path, init_path, loss, numerics, execution)
        ck = Checkpoint(out / "checkpoint.pt", execution.get("checkpoint_every", 0),
                        {**settings, **numerics, "loss": loss})
        start = time.monotonic()
        res = run_gradient_flow(p.objective, p.theta0, loss_threshold=settings["loss_threshold"],
                                max_steps=settings["max_steps"], method=settings["method"], tol=settings["tol"],
                                alpha=settings["alpha"],
                                sharpness_every=settings["sharpness_every"], sharpness_tol=settings["sharpness_tol"],
                                log_every=settings["log_every"],
                                divergence_factor=settings["divergence_factor"], checkpoint=ck,
                                progress_seconds=execution.get("progress_seconds", 10.0), report=progress.report,
                                observe=p.test_metrics, observe_every=settings.get("test_every", 0))
        record = {**_run_record(res, identity, time.monotonic() - start, p, ck), "method": "gf", "eta": math.nan,
                  "eta_c": res.eta_c, "s_gf": res.s_gf, "final_sharpness": res.final_sharpness}
        _write_run(out, res, record, ck)


def resolve_eta(eta_spec: dict, eta_c: float) -> float:
    """η from {'relative': r} (η = r·η_c, the optimiser's own η_c) or {'absolute': η}."""
    if "relative" in eta_spec:
        if math.isnan(eta_c):
            raise ConfigError(f"eta.relative {eta_spec['relative']}: this optimiser has no η_c (no flow limit "
                              f"gives one), so the grid must be absolute: eta.absolute")
        return float(eta_spec["relative"]) * eta_c
    return float(eta_spec["absolute"])


def train_gd(data_path, init_path, gf_result_path, loss: str, eta_spec: dict, settings: dict, numerics: dict,
             identity: dict, out_dir, execution: dict | None = None) -> None:
    """GD, or the optimiser of ``settings['optimizer']`` (absent: plain GD), at one η from θ₀ until L < ε (or
    max_steps, or divergence). η_c = the optimiser's c/(s_GF + shift) (GD: the flow's 2/s_GF); mini-batches
    are drawn from the setup's seed (``identity['seed']``), the same batch order at every η of the sweep.
    ``execution`` as for :func:`gradient_flow`."""
    import json

    from .checkpoint import Checkpoint
    from .dynamics import run_gd
    from .optimizers import check_batch_size, from_config

    out, execution = Path(out_dir), execution or {}
    opt = from_config(settings.get("optimizer"))
    gf = read_json(gf_result_path)
    eta_c = opt.critical_lr(gf["s_gf"])  # GD: 2/s_GF, bit for bit the flow's eta_c
    eta = resolve_eta(eta_spec, eta_c)
    with _progress(out, execution, "gd", loss_threshold=settings.get("loss_threshold"),
                   max_steps=settings.get("max_steps"), eta=eta, eta_c=eta_c, optimizer=opt.name) as progress:
        p = Problem(data_path, init_path, loss, numerics, execution)
        if not opt.full_batch:
            check_batch_size(opt.batch_size, p.objective.n)
        ck = Checkpoint(out / "checkpoint.pt", execution.get("checkpoint_every", 0),
                        {**settings, **numerics, "loss": loss, "eta": eta})
        start = time.monotonic()
        res = run_gd(p.objective, p.theta0, eta, loss_threshold=settings["loss_threshold"],
                     max_steps=settings["max_steps"], log_every=settings["log_every"],
                     sharpness_every=settings["sharpness_every"], sharpness_tol=settings["sharpness_tol"],
                     divergence_factor=settings["divergence_factor"], checkpoint=ck,
                     progress_seconds=execution.get("progress_seconds", 10.0), report=progress.report,
                     observe=p.test_metrics, observe_every=settings.get("test_every", 0), optimizer=opt,
                     seed=identity["seed"], batch_sharpness_batches=settings.get("batch_sharpness_batches", 8))
        record = {**_run_record(res, identity, time.monotonic() - start, p, ck), "method": "gd", "eta": eta,
                  "eta_c": eta_c, "s_gf": gf["s_gf"], **{f"eta_{k}": v for k, v in eta_spec.items()},
                  "optimizer": opt.name, "optimizer_settings": json.dumps(opt.as_config(), sort_keys=True),
                  "edge_measure": opt.edge_measure, "edge_constant": opt.edge_constant,
                  "sharpness_shift": opt.sharpness_shift, "edge": opt.threshold(eta),
                  "opt_sharpness": res.extra.get("opt_sharpness", math.nan)}
        _write_run(out, res, record, ck)


def evaluate(data_path, init_path, run_dir, loss: str, geometry_settings: dict, numerics: dict,
             geometry_path, test_path, dataset: dict | None = None, continuation: dict | None = None,
             execution: dict | None = None) -> None:
    """A run's end point θ, with the data and model loaded once (and a progress.json while it runs).

    ``geometry_path``: sharpness (signed max|λ|, Lanczos), the top-k eigenvalues, the Hutchinson trace, the
    norms (:func:`normsharp.metrics.norms`, :mod:`normsharp.parameter_norms`), the opt-in measures of
    :mod:`normsharp.sharpness_measures` (NaN and empty where the run diverged) and, with
    ``geometry.end_points.enabled``, the averaged and continued end points of :mod:`normsharp.end_points`
    (``continuation``: the setup's ε ``loss_threshold`` and its ``gf`` settings); its n_hvp counts every
    HVP spent here. ``test_path``: test loss and accuracy, train accuracy, and with the ``dataset`` spec
    of a setup that has a closed form (:func:`normsharp.theory.end_point`) the exact generalisation error
    ``gen_error`` and the end point's ``beta`` (otherwise NaN and empty). geometry.json also records the job's
    ``eval_device``, ``eval_threads`` and ``eval_chunk_size`` (``execution``: as for :func:`gradient_flow`).
    """
    with _progress(Path(run_dir), execution, "evaluate"):
        _evaluate(data_path, init_path, Path(run_dir), loss, geometry_settings, numerics, geometry_path, test_path,
                  dataset, continuation, execution)


def _evaluate(data_path, init_path, run_dir: Path, loss, geometry_settings, numerics, geometry_path, test_path,
              dataset, continuation, execution) -> None:
    from .dynamics import DIVERGED
    from .eigen import hutchinson_trace, lanczos
    from .metrics import evaluate as evaluate_on
    from .metrics import norms
    from .parameter_norms import measure as more_norms
    from .theory import end_point

    result = read_json(run_dir / "result.json")
    status = result["status"]
    p = Problem(data_path, init_path, loss, numerics, execution)
    theta = p.load_theta(run_dir / "theta.pt")
    geometry = {**norms(theta, p.theta0), **more_norms(p.model, theta), "sharpness": math.nan,
                "top_eigenvalues": [], "trace": math.nan, "trace_stderr": math.nan, "n_hvp": 0,
                "eval_device": p.device.type, **{f"eval_{k}": v for k, v in p.execution_record().items()}}
    if status != DIVERGED:
        hvp = p.objective.hessian_at(theta)
        eig = lanczos(hvp, p.objective.dim, k=geometry_settings["top_k"], tol=geometry_settings["tol"],
                      max_iter=geometry_settings["max_iter"], dtype=p.dtype, device=p.device)
        tr = hutchinson_trace(hvp, p.objective.dim, n_samples=geometry_settings["trace_samples"], dtype=p.dtype,
                              device=p.device)
        geometry.update(sharpness=eig.value, top_eigenvalues=[float(v) for v in eig.values], trace=tr.value,
                        trace_stderr=tr.stderr, n_hvp=eig.n_matvec + tr.n_matvec, sharpness_converged=eig.converged)
        log.info("geometry %s: sharpness=%.6g (%d HVPs) l1=%.6g", run_dir, eig.value, eig.n_matvec,
                 geometry["l1_norm"])
    geometry.update(_sharpness_measures(p, theta, geometry_settings, status != DIVERGED))
    geometry.update(_end_points(p, theta, result, geometry_settings, continuation or {}))
    geometry["n_hvp"] += geometry["density_n_hvp"] + geometry["layer_sharpness_n_hvp"]
    geometry["n_hvp"] += geometry["avg_n_hvp"] + geometry["cont_n_hvp"]
    write_json(geometry_path, geometry)
    test = evaluate_on(p.objective, theta, p.data.x_test, p.data.y_test, p.data.num_classes)
    train = evaluate_on(p.objective, theta, p.data.x_train, p.data.y_train, p.data.num_classes)
    write_json(test_path, {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
                           "train_accuracy": train["accuracy"], **end_point(dataset, p.model_spec, theta)})


def end_points_wanted(settings: dict, result: dict) -> bool:
    """Whether ``geometry.end_points`` is on and the run (its result.json) is a plain-GD, non-diverged 'eos' run."""
    import json

    from .analysis import regime
    from .dynamics import DIVERGED
    from .end_points import is_on
    from .optimizers import GD, from_config

    if not is_on(settings):
        return False
    if result["method"] != "gd" or result["status"] == DIVERGED:
        return False
    if from_config(json.loads(result.get("optimizer_settings", "null"))) != GD():
        return False
    return regime(result["method"], result["eta"], result["eta_c"]) == "eos"


def _end_points(p: Problem, theta, result: dict, settings: dict, continuation: dict) -> dict:
    """The averaged and continued end points (:mod:`normsharp.end_points`) of a plain-GD run at the Edge of
    Stability when ``geometry.end_points`` is on; not measured (NaN) for every other run."""
    from .end_points import measure, not_measured

    if not end_points_wanted(settings, result):
        return not_measured()
    if "loss_threshold" not in continuation or "gf" not in continuation:
        raise ConfigError("geometry.end_points.enabled: the evaluate job needs the setup's loss_threshold and gf "
                          "settings (the continuation param of the workflow's evaluate rule)")
    out = measure(p.objective, theta, result["eta"], result["steps"], continuation["loss_threshold"], settings,
                  continuation["gf"], lambda at: p.test_metrics(at)["test_loss"])
    log.info("end points: averaged over %d steps (%.2f s): S=%.6g l1=%.6g; continued by gf to %s (%d grads, "
             "%.2f s): S=%.6g l1=%.6g", settings["end_points"]["window"], out["avg_seconds"], out["avg_sharpness"],
             out["avg_l1_norm"], out["cont_status"], out["cont_n_grad"], out["cont_seconds"], out["cont_sharpness"],
             out["cont_l1_norm"])
    return out


def _sharpness_measures(p: Problem, theta, settings: dict, finite: bool) -> dict:
    """The opt-in measures of :mod:`normsharp.sharpness_measures` (density, adaptive, per layer) at θ; not
    measured (NaN, empty) where the run diverged."""
    from .sharpness_measures import measure, not_measured

    if not finite:
        return not_measured()
    out = measure(p.objective, p.model, theta, settings, p.dtype, p.device)
    log.info("sharpness measures: density %d HVPs %.2f s, adaptive %d grads %.2f s, layers %d HVPs %.2f s",
             out["density_n_hvp"], out["density_seconds"], out["adaptive_sharpness_n_grad"],
             out["adaptive_sharpness_seconds"], out["layer_sharpness_n_hvp"], out["layer_sharpness_seconds"])
    return out


def _records(run_dir: Path) -> tuple[dict, dict, dict]:
    """result.json, geometry.json and test.json of a run directory."""
    return tuple(read_json(run_dir / f"{name}.json") for name in ("result", "geometry", "test"))


def refine_eta(run_dirs: list, settings: dict, transition_tol: float, out_path) -> None:
    """One refinement round of a setup and seed's η sweep (its GD runs so far in ``run_dirs``, in the order
    of the previous round's list): :func:`normsharp.analysis.propose_refinement` with ``settings``
    (width, points, test_minimum, extend_factor), written to ``out_path``."""
    import pandas as pd

    from .analysis import propose_refinement

    rows = []
    for run_dir in map(Path, run_dirs):
        result, geometry, test = _records(run_dir)
        rows.append({"run": run_dir.name, "ratio": result["eta"] / result["eta_c"], "status": result["status"],
                     "sharpness": geometry["sharpness"], "test_loss": test["test_loss"]})
    proposal = propose_refinement(pd.DataFrame(rows), width=settings["width"], points=settings["points"],
                                  test_minimum=bool(settings.get("test_minimum")), tol=transition_tol,
                                  extend_factor=settings.get("extend_factor", 1.25))
    least = proposal["test_minimum"]
    log.info("refine_eta: bracket %s (width %.4g); least test loss at %.4g η_c (%s); adding %s", proposal["bracket"],
             proposal["width"], least["ratio"], least["status"], proposal["added"])
    write_json(out_path, proposal)


class _EndPoints:
    """θ of each run directory's ``theta.pt``, read when indexed (aggregate holds two at a time)."""

    def __init__(self, run_dirs: list[Path]):
        self.run_dirs = run_dirs

    def __getitem__(self, i: int):
        return load_tensor(self.run_dirs[i] / "theta.pt")

    def __len__(self) -> int:
        return len(self.run_dirs)


def aggregate(run_dirs: list, runs_path, trajectories_path, transition_tol: float = 0.1,
              spectra_path=None, correlations_path=None) -> None:
    """One row per run into ``runs_path`` (:func:`normsharp.analysis.runs_frame`: the records, each setup and
    seed's observed transition, the gaps to the flow); all trajectories, long form, into ``trajectories_path``;
    the spectral-density quadratures (:func:`normsharp.analysis.spectra_frame`, empty where geometry.density is
    off) into ``spectra_path``; each measure's Kendall τ with the test loss per setup and seed
    (:func:`normsharp.correlations.correlations_frame`) into ``correlations_path``. θ₀ of a setup and seed is
    the ``init.pt`` above its GF run."""
    from .analysis import run_row, runs_frame, spectra_frame, trajectories_frame
    from .correlations import correlations_frame

    run_dirs = list(map(Path, run_dirs))
    records = [_records(d) for d in run_dirs]
    rows = [run_row(*r) for r in records]
    theta0 = {(r["setup"], r["seed"]): load_init(d.parent / "init.pt")["theta0"]
              for r, d in zip(rows, run_dirs) if r["method"] == "gf"}
    runs = runs_frame(rows, _EndPoints(run_dirs), theta0, transition_tol)
    traj = trajectories_frame(rows, [read_parquet(d / "trajectory.parquet") for d in run_dirs])
    if spectra_path is not None:  # every input read: a corrupt one stops the job before anything is written
        write_parquet(spectra_path, spectra_frame(rows, [geometry.get("density") for _, geometry, _ in records]))
    write_parquet(runs_path, runs)
    write_parquet(trajectories_path, traj)
    if correlations_path is not None:
        write_parquet(correlations_path, correlations_frame(runs))
    log.info("aggregate: %d runs, %d trajectory rows", len(runs), len(traj))
