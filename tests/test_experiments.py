"""The paper's experiment configs: each validates and builds its DAG; reduced versions of them run end to end
on CPU through the snakemake CLI on tiny MNIST/CIFAR-10 stand-ins in torchvision's on-disk formats."""

import copy
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from conftest import REPO, job_counts, snakemake
from fake_image_data import write_fake_cifar10, write_fake_mnist

from normsharp.figures_common import Study
from normsharp.figures_sweep import sharpness_vs_eta

pytestmark = [pytest.mark.workflow, pytest.mark.slow]  # nine dry runs in one process; a reduced sweep
# The paper's eight network studies; diagonal-linear.yaml (one deterministic init, closed forms) has its own
# end-to-end test in test_diagonal_linear_experiment.py; the optimiser studies (issue 22: digits-sized, one seed,
# measured CPU times) have theirs below.
OPTIMIZER_STUDIES = sorted((REPO / "config" / "experiments").glob("optimizers-*.yaml"))
EXPERIMENTS = sorted(p for p in (REPO / "config" / "experiments").glob("*.yaml")
                     if p.stem != "diagonal-linear" and p not in OPTIMIZER_STUDIES)

# One process dry-runs every config: snakemake's start-up (plugin discovery) is paid once, not per config.
DRY_RUNS = """
import sys
from snakemake.cli import main
for args in map(str.split, sys.argv[1:]):
    print("=== " + " ".join(args), flush=True)
    sys.argv = ["snakemake", "-n", "--cores", "1", *args]
    try:
        main()
    except SystemExit as stop:
        print(f"=== exit {stop.code}", flush=True)
"""


def dry_runs(workdir: Path, arg_lists: list[list[str]]) -> list[tuple[int, str]]:
    """(exit code, output) of `snakemake -n` for each argument list, in one Python process."""
    common = ["-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    out = subprocess.run([sys.executable, "-u", "-c", DRY_RUNS, *(" ".join(common + a) for a in arg_lists)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)  # -u: in order
    sections = out.stdout.split("=== ")[1:]
    results = [(int(end.split()[1]), text) for text, end in zip(sections[0::2], sections[1::2])]
    assert len(results) == len(arg_lists), out.stdout[-3000:]
    return results


def test_the_eight_experiment_configs_validate_and_build_their_dags(tmp_path):
    names = [p.stem for p in EXPERIMENTS]
    assert names == sorted(["mnist5k-fcn-mse", "cifar10-5k-fcn-ce", "cifar10-5k-fcn-mse", "architectures",
                            "init-scale", "loss-threshold", "mup-width", "dataset-size"])
    args = [["--configfile", str(p)] for p in EXPERIMENTS] + [["download_data", "--configfile", str(EXPERIMENTS[0])]]
    results = dry_runs(tmp_path, args)  # no data is needed to plan the jobs
    for path, (code, text) in zip(EXPERIMENTS, results):
        assert code == 0, f"{path.name}:\n{text[-3000:]}"
        header = path.read_text().split("\nexperiment:")[0]
        assert "Wall time" in header and "GPU" in header and "2-core CPU" in header and "WALLTIME" not in header
        assert f"snakemake --cores N --configfile config/experiments/{path.name}" in header
        cfg = yaml.safe_load(path.read_text())
        assert cfg["experiment"] == path.stem and cfg["dtype"] == "float64"
        setups = cfg["setups"].values()
        runs = sum(len(s["seeds"]) * len(s.get("eta", cfg["eta"])["relative"]) for s in setups)
        assert all(len(s["seeds"]) >= 2 for s in setups)  # mean and spread bands in every figure
        counts = job_counts(text)
        assert counts["train_gd"] == runs and counts["gradient_flow"] == sum(len(s["seeds"]) for s in setups)
        assert counts["prepare_data"] == len(cfg["setups"]) and "download_data" not in counts
    code, text = results[-1]  # the download is a job of its own, run by name only
    assert code == 0 and job_counts(text) == {"download_data": 1}


OPTIMIZER_FAMILIES = {  # config → the optimiser names its setups use
    "optimizers-momentum": {"gd", "momentum"},
    "optimizers-sgd": {"gd", "sgd"},
    "optimizers-adaptive": {"gd", "rmsprop", "adam"},
    "optimizers-weight-decay": {"gd", "momentum"},
}


def test_the_optimizer_study_configs_validate_and_build_their_dags(tmp_path):
    assert [p.stem for p in OPTIMIZER_STUDIES] == sorted(OPTIMIZER_FAMILIES)
    results = dry_runs(tmp_path, [["--configfile", str(p)] for p in OPTIMIZER_STUDIES])
    for path, (code, text) in zip(OPTIMIZER_STUDIES, results):
        assert code == 0, f"{path.name}:\n{text[-3000:]}"
        header = path.read_text().split("\nexperiment:")[0]
        assert "MEASURED" in header and "2-core CPU" in header and "WALLTIME" not in header
        assert f"snakemake --cores N --configfile config/experiments/{path.name}" in header
        cfg = yaml.safe_load(path.read_text())
        assert cfg["experiment"] == path.stem and cfg["dtype"] == "float64" and cfg["device"] == "cpu"
        setups = cfg["setups"].values()
        assert {s.get("optimizer", {"name": "gd"})["name"] for s in setups} == OPTIMIZER_FAMILIES[path.stem]
        assert all(s["dataset"] == {"name": "digits", "n_train": 200} for s in setups)  # minutes on a CPU
        assert cfg["gd"]["max_steps"] <= 50000
        grids = [s.get("eta", cfg["eta"]) for s in setups]
        for setup, grid in zip(setups, grids):  # adaptive: no η_c, so absolute; the others reach past η_c
            adaptive = setup.get("optimizer", {}).get("name") in ("rmsprop", "adam")
            assert ("absolute" in grid) == adaptive and (adaptive or max(grid["relative"]) >= 2)
        runs = sum(len(s["seeds"]) * len(next(iter(g.values()))) for s, g in zip(setups, grids))
        counts = job_counts(text)
        assert counts["train_gd"] == runs and counts["gradient_flow"] == len(cfg["setups"])


# ---- reduced configs end to end ------------------------------------------------------------------------

TINY_MODELS = {  # the architectures of config/experiments/architectures.yaml shrunk: (model, parametrisation,
    # dataset, loss, ε, seeds); ε is a little below L(θ₀), reached in tens of RK4 steps on 20 noise images
    "cifar10-5k-cnn": ({"width": 4, "depth": 2}, "ntk", "cifar10", "mse", 0.5, [0]),
    "cifar10-5k-resnet": ({"width": 4, "depth": 1}, "standard", "cifar10", "ce", 2.25, [0]),
    "cifar10-5k-vit": ({"width": 8, "depth": 1, "heads": 2, "patch_size": 7}, "mup", "mnist", "mse", 0.4, [0, 1]),
}


def reduced_architectures(data_dir: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config/experiments/architectures.yaml").read_text())
    setups = {}
    for name, (shrink, parametrization, dataset, loss, eps, seeds) in TINY_MODELS.items():
        setup = copy.deepcopy(cfg["setups"][name])
        setup["model"].update(shrink, parametrization=parametrization, activation="tanh")
        setup["dataset"] = {"name": dataset, "n_train": 20, "verify_checksums": False}
        setup.update(loss=loss, loss_threshold=eps, seeds=seeds)
        setups[name] = setup
    for name in ("cifar10-5k-cnn", "cifar10-5k-resnet"):  # one EoS run each: every job costs a torch start-up
        setups[name]["eta"] = {"relative": [2.0]}
    return {**cfg, "experiment": "reduced", "device": "cpu", "data_dir": str(data_dir), "setups": setups,
            "eta": {"relative": [0.5, 2.0]}, "gd": {"max_steps": 2000, "sharpness_every": 50},
            "gf": {"max_steps": 2000, "sharpness_tol": 1e-3},
            "geometry": {"top_k": 2, "trace_samples": 2}}


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("experiments")
    write_fake_mnist(workdir / "data", 40, 10)
    write_fake_cifar10(workdir / "data", 40, 10)
    cfg = reduced_architectures(workdir / "data")
    (workdir / "reduced.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(workdir, "--configfile", str(workdir / "reduced.yaml"), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def test_reduced_architectures_run_end_to_end(reduced_run):
    runs = pd.read_parquet(reduced_run / "results/reduced/runs.parquet")
    assert str(runs.eta_transition.dtype) == "float64"
    assert sorted(runs.arch.unique()) == ["cnn", "resnet", "vit"]
    assert set(runs.dataset) == {"cifar10", "mnist"}
    assert len(runs) == 2 + 2 + 2 * 3 and set(runs.method) == {"gd", "gf"}
    assert set(runs.status) <= {"converged", "max_steps"}
    gf = runs[runs.method == "gf"]
    assert (gf.status == "converged").all() and (gf.eta_c * gf.s_gf).round(12).eq(2).all()
    assert runs[runs.status == "converged"].sharpness.notna().all()
    for name in ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories"):
        assert (reduced_run / f"results/reduced/figures/{name}.png").stat().st_size > 1000


def test_two_seeds_give_a_band(reduced_run):
    runs = pd.read_parquet(reduced_run / "results/reduced/runs.parquet")
    fig, ax = plt.subplots()
    sharpness_vs_eta(Study(runs), [ax], "cifar10-5k-vit")  # two seeds: mean line with a min–max band
    assert len(ax.collections) == 1 and len(ax.collections[0].get_paths()[0].vertices) > 4
    plt.close(fig)
