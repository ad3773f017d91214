"""The optimisers through the snakemake CLI: one reduced setup per family (.test/config/optimizers.yaml), and
bad optimiser settings stopping the workflow before any job with one line naming the key."""

import copy

import numpy as np
import pandas as pd
import pytest
from conftest import finished_workdir, reduced_config, snakemake

pytestmark = pytest.mark.workflow

REDUCED = reduced_config("optimizers")
NEW_COLUMNS = {"optimizer": "string", "opt_sharpness": "float64", "edge": "float64", "edge_ratio": "float64"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    # everything `all` asks for, the figures included
    return finished_workdir(tmp_path_factory.mktemp("optimizers"), REDUCED)


@pytest.mark.slow
def test_each_optimizer_runs_and_records_its_own_edge(finished):
    runs = pd.read_parquet(finished / "results/optimizers/runs.parquet")
    for column, dtype in NEW_COLUMNS.items():
        assert str(runs[column].dtype) == dtype, column
    gd = runs[runs.method == "gd"]
    assert dict(zip(gd.setup, gd.optimizer)) == {"gd": "gd", "momentum": "momentum", "nesterov": "momentum",
                                                 "sgd": "sgd", "adam": "adam"}
    assert runs[runs.method == "gf"].optimizer.isna().all()
    s_gf = gd.s_gf
    constants = {"gd": 2.0, "momentum": 3.0, "nesterov": 3.0 / 2.0, "sgd": 2.0, "adam": 38.0}  # β = 0.5, β₁ = 0.9
    c = gd.setup.map(constants)
    assert np.allclose(gd.edge, c / gd.eta, rtol=1e-12)
    assert np.allclose(gd.edge_ratio, gd.opt_sharpness / gd.edge, rtol=1e-12, equal_nan=True)
    full = gd[gd.setup != "adam"]  # η_c = c/s_GF: the relative grid is in multiples of each optimiser's own
    assert np.allclose(full.eta_c, c[full.index] / s_gf[full.index], rtol=1e-12)
    assert np.allclose(full.eta / full.eta_c, full.eta_relative, rtol=1e-12)
    hessian = gd[gd.setup.isin(["gd", "momentum", "nesterov"])]
    assert (hessian.opt_sharpness == hessian.sharpness).all()  # no weight decay: S itself meets the edge
    adam = gd[gd.setup == "adam"]
    assert adam.eta_c.isna().all() and adam.regime.isna().all() and sorted(adam.eta) == [0.001, 0.003]
    ok = gd[gd.status == "converged"]
    assert (ok[ok.setup.isin(["sgd", "adam"])].opt_sharpness > 0).all()  # measured in the job (batch, P⁻¹H)
    eos = ok[ok.setup.isin(["gd", "momentum"]) & (ok.eta_over_eta_c >= 1.5)]
    assert len(eos) == 4 and np.allclose(eos.edge_ratio, 1, atol=0.1), eos[["setup", "eta_over_eta_c", "edge_ratio"]]
    traj = pd.read_parquet(finished / "results/optimizers/trajectories.parquet")
    assert {"opt_sharpness", "edge"} <= set(traj.columns)
    assert traj[traj.method == "gd"].edge.notna().all() and traj[traj.method == "gf"].edge.isna().all()


@pytest.mark.slow
def test_the_figures_draw_every_optimizer_and_the_side_by_side_figure(finished):
    """Every sweep figure is drawn with the adaptive setup (no η_c: against its absolute η), and the study gets
    optimizer_edges, which a plain-GD study does not (tests/test_workflow.py: the quickstart's figure list)."""
    figures = {p.name for p in (finished / "results/optimizers/figures").iterdir()}
    assert {"optimizer_edges.png", "optimizer_edges.pdf", "phase_diagram.png", "trajectories.png"} <= figures


BAD = [
    ({"name": "lbfgs"}, "setups.a.optimizer.name is 'lbfgs'; allowed: adam, gd, momentum, rmsprop, sgd"),
    ({"name": "momentum", "betas": 0.9}, "setups.a.optimizer.betas: unknown key 'betas'"),
    ({"name": "momentum", "beta": 1.0}, "setups.a.optimizer.beta is 1.0 (momentum); allowed: 0 ≤ beta < 1"),
    ({"name": "adam", "beta1": -0.1}, "setups.a.optimizer.beta1 is -0.1 (adam); allowed: 0 ≤ beta1 < 1"),
    ({"name": "sgd", "batch_size": 51}, "setups.a.optimizer.batch_size is 51, larger than the training set "
                                        "(n_train = 50)"),
    ({"name": "sgd"}, "setups.a.optimizer.batch_size is required"),
    ({"name": "gd", "l2": -0.1}, "setups.a.optimizer.l2 is -0.1 (gd); must be a finite number ≥ 0"),
    ({"name": "adam", "decoupled_weight_decay": -1}, "setups.a.optimizer.decoupled_weight_decay is -1.0 (adam)"),
    ({"name": "adam", "weight_decay": 0.1}, "setups.a.optimizer.weight_decay is ambiguous"),
    ({"name": "rmsprop"}, "setups.a.eta: rmsprop has no predicted η_c (no flow limit gives one), so the grid must "
                          "be absolute"),
]


@pytest.mark.parametrize("optimizer, message", BAD, ids=[str(o) for o, _ in BAD])
def test_bad_optimizer_stops_before_any_job_with_one_line_naming_the_key(tmp_path, optimizer, message):
    cfg = copy.deepcopy(reduced_config("mini"))
    cfg["setups"]["a"]["optimizer"] = optimizer
    out = snakemake(tmp_path, "-n", config=cfg)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and any(message in line for line in text.splitlines()), text[-3000:]
    assert not (tmp_path / "results").exists()


def test_a_top_level_optimizer_is_inherited_and_a_setups_own_replaces_it(tmp_path):
    cfg = copy.deepcopy(reduced_config("mini"))
    cfg["optimizer"] = {"name": "momentum", "beta": 1.5}
    out = snakemake(tmp_path, "-n", config=cfg)
    assert out.returncode != 0 and "setups.a.optimizer.beta is 1.5" in out.stdout + out.stderr
    cfg["setups"]["a"]["optimizer"] = {"name": "gd"}
    out = snakemake(tmp_path, "-n", config=cfg)
    assert out.returncode != 0 and "setups.b.optimizer.beta is 1.5" in out.stdout + out.stderr
