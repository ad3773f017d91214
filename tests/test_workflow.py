"""The workflow through the snakemake CLI: a reduced quickstart, its outputs, and what a config edit reruns."""

import copy
import json
import platform
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

# SNAKEMAKE: test modules of other branches import it from here (conftest holds it now)
from conftest import REPO, SNAKEMAKE, finished_workdir, planned_jobs, reduced_config, snakemake  # noqa: F401

import normsharp

pytestmark = pytest.mark.workflow  # and slow: the tests that wait for the reduced quickstart (`finished`)

REDUCED = reduced_config("mini")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_workdir(tmp_path_factory.mktemp("workflow"), REDUCED)


@pytest.mark.slow
def test_runs_parquet_follows_the_contract(finished):
    runs = pd.read_parquet(finished / "results/mini/runs.parquet")
    contract = {
        "experiment": "string", "setup": "string", "dataset": "string", "arch": "string", "loss": "string",
        "seed": "int64", "method": "string", "eta": "float64", "eta_c": "float64", "s_gf": "float64",
        "eta_over_eta_c": "float64", "regime": "string", "status": "string", "steps": "int64",
        "train_loss": "float64", "test_loss": "float64", "test_accuracy": "float64", "sharpness": "float64",
        "l1_norm": "float64", "l2_norm": "float64",
    }
    for column, dtype in contract.items():
        assert str(runs[column].dtype) == dtype, column
    assert len(runs) == (1 + 3) + (1 + 2)
    gf = runs[runs.method == "gf"]
    assert set(gf.regime) == {"gf"} and gf.eta.isna().all() and (gf.status == "converged").all()
    assert (gf.eta_c * gf.s_gf).round(12).eq(2).all()
    gd = runs[runs.method == "gd"]
    assert set(gd.regime) == {"flow-aligned", "eos"}
    assert ((gd.eta_over_eta_c < 1) == (gd.regime == "flow-aligned")).all()
    diverged = gd[gd.eta_over_eta_c > 10]
    assert list(diverged.status) == ["diverged"] and diverged.sharpness.isna().all()
    ok = gd[gd.status == "converged"]
    assert (ok.train_loss < 0.05).all() and ok.sharpness.notna().all() and (ok.test_accuracy > 0.3).all()
    assert runs.gen_error.isna().all() and (runs.beta.map(len) == 0).all()  # no closed form for digits
    eos = ok[ok.eta_over_eta_c == 2.0]
    assert (eos.sharpness < 0.8 * eos.s_gf).all()  # GD above η_c ends flatter than the flow ever was


@pytest.mark.slow
def test_gd_to_gf_gaps(finished):
    runs = pd.read_parquet(finished / "results/mini/runs.parquet")
    gf = runs[runs.method == "gf"].set_index(["setup", "seed"])
    assert (gf[["dist_to_gf", "rel_dist_to_gf", "train_loss_gap_gf", "sharpness_gap_gf"]] == 0).all().all()
    base = finished / "results/mini/a/seed0"
    theta0 = torch.load(base / "init.pt", weights_only=True)["theta0"]
    theta_gf = torch.load(base / "gf/theta.pt")
    row = runs[(runs.setup == "a") & (runs.eta_over_eta_c == 0.5)].iloc[0]
    dist = float((torch.load(base / "r0.5/theta.pt") - theta_gf).norm())
    assert row.dist_to_gf == pytest.approx(dist, rel=1e-12)
    assert row.rel_dist_to_gf == pytest.approx(dist / float((theta_gf - theta0).norm()), rel=1e-12)
    assert row.train_loss_gap_gf == pytest.approx(row.train_loss - gf.loc[("a", 0)].train_loss, rel=1e-12)
    assert row.sharpness_gap_gf == pytest.approx(row.sharpness - gf.loc[("a", 0)].sharpness, rel=1e-12)
    gd = runs[(runs.method == "gd") & (runs.status == "converged")]
    flow, eos = gd[gd.regime == "flow-aligned"], gd[gd.regime == "eos"]
    assert (flow.rel_dist_to_gf < 0.5).all() and (eos.sharpness_gap_gf < 0).all()  # near the flow; flatter
    assert runs[runs.status == "diverged"][["dist_to_gf", "sharpness_gap_gf"]].isna().all().all()


@pytest.mark.slow
def test_runs_record_what_produced_them(finished):
    runs = pd.read_parquet(finished / "results/mini/runs.parquet")
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else None
    assert (runs.git_commit == commit).all() if commit else runs.git_commit.isna().all()
    assert str(runs.git_dirty.dtype) == "boolean" and runs.git_dirty.notna().all() == bool(commit)
    expected = {"normsharp_version": normsharp.__version__, "torch_version": torch.__version__,
                "python_version": platform.python_version(), "device": "cpu", "dtype": "float64"}
    assert {k: set(runs[k]) for k in expected} == {k: {v} for k, v in expected.items()}
    assert runs.device_name.str.len().min() > 0
    result = json.loads((finished / "results/mini/a/seed0/gf/result.json").read_text())
    assert result["git_commit"] == commit and result["dtype"] == "float64"


@pytest.mark.slow
def test_trajectories_parquet(finished):
    traj = pd.read_parquet(finished / "results/mini/trajectories.parquet")
    for column in ("setup", "seed", "method", "eta", "step", "time", "train_loss", "sharpness"):
        assert column in traj
    assert set(traj.method) == {"gd", "gf"} and traj.sharpness.notna().any()
    first = traj[(traj.setup == "a") & (traj.method == "gd")].groupby("eta").step.min()
    assert (first == 0).all()


@pytest.mark.slow
def test_test_loss_along_the_trajectory(finished):
    """gd.test_every = 100 (all setups), gf.test_every = 10 (setup b only): test loss exactly at those steps
    and at the end, NaN elsewhere; at the end it is the evaluate job's test loss of the end point."""
    traj = pd.read_parquet(finished / "results/mini/trajectories.parquet")
    runs = pd.read_parquet(finished / "results/mini/runs.parquet")
    assert str(traj.test_loss.dtype) == "float64" and str(traj.test_accuracy.dtype) == "float64"
    ok = runs[runs.status == "converged"]
    checked = 0
    for r in ok.itertuples():
        t = traj[(traj.setup == r.setup) & (traj.method == r.method)
                 & (traj.eta.isna() if r.method == "gf" else np.isclose(traj.eta, r.eta))]
        every = {"gd": 100, "gf": 10 if r.setup == "b" else 0}[r.method]
        tested = t[t.test_loss.notna()]
        if every == 0:
            assert tested.empty
            continue
        assert set(tested.step) == {k for k in t.step if k % every == 0} | {r.steps}
        assert (tested.test_accuracy > 0).all()
        end = tested[tested.step == r.steps].iloc[0]
        assert end.test_loss == pytest.approx(r.test_loss, rel=1e-10)
        assert end.test_accuracy == pytest.approx(r.test_accuracy, rel=1e-12)
        checked += 1
    assert checked == 5  # a: GD 0.5, 2 η_c; b: GF, GD 0.5, 2 η_c


@pytest.mark.slow
def test_correlations_parquet_ranks_every_recorded_measure(finished):
    from normsharp.correlations import COLUMNS, MEASURES, kendall_tau_b

    table = pd.read_parquet(finished / "results/mini/correlations.parquet")
    runs = pd.read_parquet(finished / "results/mini/runs.parquet")
    assert table.dtypes.astype(str).to_dict() == COLUMNS
    recorded = [n for n, m in MEASURES.items() if m.column in runs and runs[m.column].notna().any()]
    assert "adaptive_sharpness_max" not in recorded and {"sharpness", "trace", "l1_norm"} <= set(recorded)
    for (setup, seed), rows in table.groupby(["setup", "seed"]):
        assert list(rows.measure) == recorded  # every recorded measure, in the table's order
        gd = runs[(runs.setup == setup) & (runs.seed == seed) & (runs.method == "gd") & (runs.status == "converged")]
        for r in rows.itertuples():
            both = np.isfinite(gd[r.column].to_numpy(float)) & np.isfinite(gd.test_loss.to_numpy(float))
            assert r.n == both.sum() >= 1
            expected = kendall_tau_b(gd[r.column], gd.test_loss)[0]
            assert r.tau == expected or (np.isnan(r.tau) and np.isnan(expected))
            if r.measure in ("sharpness", "trace", "l1_norm", "l2_norm", "dist_to_init"):
                assert r.n == len(gd) == 2 and abs(r.tau) == 1  # 0.5 and 2 η_c converge, 40 η_c diverges


@pytest.mark.slow
def test_figures_and_report(finished):
    figures = finished / "results/mini/figures"
    for name in ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories",
                 "phase_diagram", "gap_to_flow", "test_loss_correlations"):
        for ext in ("png", "pdf"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000
    assert not list(figures.glob("dln_*"))  # the diagonal-linear-network figures only for such setups
    assert not list(figures.glob("optimizer_*"))  # the side-by-side optimiser figure only with optimisers
    out = snakemake(finished, "--report", str(finished / "report.html"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (finished / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_logs_show_progress(finished):
    gd_log = next((finished / "results/mini/logs/train_gd/a/seed0").glob("*.log")).read_text()
    assert "step=0 " in gd_log and "sharpness=" in gd_log and "converged" not in gd_log.split("step=0")[0]


@pytest.mark.slow
def test_no_change_schedules_nothing(finished):
    assert planned_jobs(finished, REDUCED) == {}


def reversed_keys(mapping: dict) -> dict:
    return dict(reversed(mapping.items()))


def equivalent_configs() -> dict[str, str]:
    """Configs that mean what REDUCED means, spelled otherwise (YAML text each)."""
    keys = copy.deepcopy(REDUCED)
    for setup in keys["setups"].values():
        setup.update(dataset=reversed_keys(setup["dataset"]), model=reversed_keys(setup["model"]))
    keys.update(gd=reversed_keys(keys["gd"]), gf=reversed_keys(keys["gf"]))
    defaults = copy.deepcopy(REDUCED)
    defaults.update(results_dir="results", threads=1, chunk_size=None, transition_tol=0.1, figures={"dpi": 130})
    defaults["gd"].update(log_every=10, sharpness_tol=1e-4, divergence_factor=1000)
    defaults["gf"].update(max_steps=200000)
    defaults["geometry"].update(max_iter=200)
    for setup in defaults["setups"].values():
        setup["dataset"].update(subset="first", standardise=True)
        setup["model"].update(parametrization="standard", init_scale=1.0)
        setup["seeds"] = [0]
    defaults["setups"]["b"]["gd"] = {"max_steps": 20000}  # the experiment's value, repeated in a setup
    integers = copy.deepcopy(REDUCED)
    integers["eta"]["relative"] = [0.5, 2, 40]
    integers["gd"].update(max_steps=20000.0, checkpoint_every=500.0)  # integral floats at integer places
    integers["gf"].update(alpha=1)
    plain_gd = copy.deepcopy(REDUCED)  # the default optimiser written out, at the top and in a setup
    plain_gd["optimizer"] = {"name": "gd"}
    plain_gd["setups"]["b"]["optimizer"] = {"name": "gd", "l2": 0, "decoupled_weight_decay": 0.0}
    plain = yaml.safe_dump(REDUCED, sort_keys=False, default_flow_style=None)
    assert plain.count("loss_threshold: 0.05") == 2
    return {
        "safe_dump, sorted keys": yaml.safe_dump(REDUCED),
        "block style": yaml.dump(REDUCED, sort_keys=False, default_flow_style=False),
        "setups and η in another order": yaml.safe_dump(
            {**REDUCED, "setups": reversed_keys(REDUCED["setups"]), "eta": {"relative": [40.0, 0.5, 2.0]}},
            sort_keys=False, default_flow_style=None),
        "keys of model, dataset, gd, gf in another order": yaml.safe_dump(
            keys, sort_keys=False, default_flow_style=None),
        "defaults written out": yaml.safe_dump(defaults, sort_keys=False, default_flow_style=None),
        "loss_threshold: 5e-2 (a string to PyYAML)": plain.replace("loss_threshold: 0.05", "loss_threshold: 5e-2"),
        "1 for 1.0, 2 for 2.0": yaml.safe_dump(integers, sort_keys=False, default_flow_style=None),
        "optimizer: plain GD written out": yaml.safe_dump(plain_gd, sort_keys=False, default_flow_style=None),
    }


@pytest.mark.slow
def test_equivalent_configs_schedule_nothing(finished):
    configs = equivalent_configs()
    assert {name: planned_jobs(finished, text) for name, text in configs.items()} == dict.fromkeys(configs, {})


@pytest.mark.slow
def test_adding_one_eta_schedules_only_its_jobs(finished):
    cfg = copy.deepcopy(REDUCED)
    cfg["setups"]["b"]["eta"]["relative"].append(1.0)
    assert planned_jobs(finished, cfg) == {
        "train_gd": 1, "evaluate": 1, "aggregate": 1, "figures": 1, "all": 1}


@pytest.mark.slow
def test_figure_option_schedules_only_figures(finished):
    cfg = copy.deepcopy(REDUCED)
    cfg["figures"] = {"dpi": 90}
    assert planned_jobs(finished, cfg) == {"figures": 1, "all": 1}


@pytest.mark.slow
def test_geometry_option_schedules_only_evaluation_and_downstream(finished):
    cfg = copy.deepcopy(REDUCED)
    cfg["geometry"]["top_k"] = 2
    assert planned_jobs(finished, cfg) == {"evaluate": (1 + 3) + (1 + 2), "aggregate": 1, "figures": 1, "all": 1}


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["loss_threshold", "width"])
def test_setup_edit_schedules_that_setup_alone(finished, edit):
    cfg = copy.deepcopy(REDUCED)
    if edit == "loss_threshold":
        cfg["setups"]["b"]["loss_threshold"] = 0.04
        expected = {"gradient_flow": 1, "train_gd": 2, "evaluate": 3}
    else:
        cfg["setups"]["b"]["model"]["width"] = 9
        expected = {"init_model": 1, "gradient_flow": 1, "train_gd": 2, "evaluate": 3}
    assert planned_jobs(finished, cfg) == {**expected, "aggregate": 1, "figures": 1, "all": 1}


# Execution settings (x-kind: execution in the schema): how a result is computed, no job's params.
EXECUTION_EDITS = {
    "threads: 2": lambda c: c.update(threads=2),
    "device: auto": lambda c: c.update(device="auto"),  # cpu here; on a GPU machine cuda, and no rerun either
    "chunk_size: 16": lambda c: c.update(chunk_size=16),
    "progress_seconds: 1": lambda c: c.update(progress_seconds=1),
    "data_dir: elsewhere": lambda c: c.update(data_dir="elsewhere"),
    "gd.checkpoint_every: 0": lambda c: c["gd"].update(checkpoint_every=0),
    "gf.checkpoint_every: 7": lambda c: c["gf"].update(checkpoint_every=7),
    "setups.b.gd.checkpoint_every: 3": lambda c: c["setups"]["b"].update(gd={"checkpoint_every": 3}),
}
# Science settings: what each reruns in the reduced run (a: GF + 3 GD runs, b: GF + 2; evaluate per run).
ALL_RUNS = {"gradient_flow": 2, "train_gd": 5, "evaluate": 7}
DOWNSTREAM = {"aggregate": 1, "figures": 1, "all": 1}
SCIENCE_EDITS = {
    "dtype: float32": (lambda c: c.update(dtype="float32"), ALL_RUNS),
    "transition_tol: 0.2": (lambda c: c.update(transition_tol=0.2), {}),
    "gd.log_every: 5": (lambda c: c["gd"].update(log_every=5), {"train_gd": 5, "evaluate": 5}),
    "gd.max_steps: 30000": (lambda c: c["gd"].update(max_steps=30000), {"train_gd": 5, "evaluate": 5}),
    "gf.log_every: 5": (lambda c: c["gf"].update(log_every=5), ALL_RUNS),
    "gf.tol: 1e-6": (lambda c: c["gf"].update(tol=1e-6), ALL_RUNS),
    "setups.a.dataset.n_train: 49": (lambda c: c["setups"]["a"]["dataset"].update(n_train=49), {
        "prepare_data": 1, "init_model": 1, "gradient_flow": 1, "train_gd": 3, "evaluate": 4}),
    "setups.a.seeds: [0, 1]": (lambda c: c["setups"]["a"].update(seeds=[0, 1]), {
        "init_model": 1, "gradient_flow": 1, "train_gd": 3, "evaluate": 4}),
    "experiment: other": (lambda c: c.update(experiment="other"), {
        "prepare_data": 2, "init_model": 2, **ALL_RUNS}),
}


@pytest.mark.slow
def test_execution_settings_plan_nothing(finished):
    planned = {}
    for name, edit in EXECUTION_EDITS.items():
        cfg = copy.deepcopy(REDUCED)
        edit(cfg)
        planned[name] = planned_jobs(finished, cfg)
    planned["--config threads=2"] = planned_jobs(finished, REDUCED, "--config", "threads=2")
    planned["--config device=auto chunk_size=8"] = planned_jobs(finished, REDUCED, "--config", "device=auto",
                                                                "chunk_size=8")
    print(planned)
    assert planned == dict.fromkeys(planned, {})


@pytest.mark.slow
def test_a_moved_results_folder_plans_nothing(finished):
    """results_dir is where results are kept: a copy elsewhere (mtimes kept) is found there and nothing reruns."""
    import shutil

    shutil.copytree(finished / "results", finished / "moved", copy_function=shutil.copy2)
    try:
        assert planned_jobs(finished, {**REDUCED, "results_dir": "moved"}) == {}
    finally:
        shutil.rmtree(finished / "moved")


@pytest.mark.slow
@pytest.mark.parametrize("name", SCIENCE_EDITS)
def test_science_settings_plan_what_they_change(finished, name):
    edit, jobs = SCIENCE_EDITS[name]
    cfg = copy.deepcopy(REDUCED)
    edit(cfg)
    planned = planned_jobs(finished, cfg)
    print(name, planned)
    assert planned == {**jobs, **DOWNSTREAM}


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: c["setups"]["a"]["model"].update(arch="fcnx"), "arch"),
        (lambda c: c["setups"]["a"].pop("loss_threshold"), "loss_threshold"),
        (lambda c: c.update(eta={"relative": [-1.0]}), "relative"),
        (lambda c: c["gd"].update(max_step=10), "max_step"),
        # wrong types where setups inherit: named by validation, not a TypeError from the inheritance
        (lambda c: c.update(gd=100), "['gd']"),
        (lambda c: c["setups"]["a"].update(gf="fast"), "'fast' is not of type 'object'"),
        (lambda c: c.update(setups=["a"]), "['setups']"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, needle):
    cfg = copy.deepcopy(REDUCED)
    edit(cfg)
    out = snakemake(tmp_path, "-n", config=cfg)
    assert out.returncode != 0 and needle in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
