"""The diagonal-linear-network experiment end to end: a reduced config/experiments/diagonal-linear.yaml through
the snakemake CLI, its end points checked against normsharp.theory, and the shipped config's DAG."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TEST_CONFIGS, job_counts, reduced_config, snakemake

from normsharp import theory

CONFIG = REPO / "config/experiments/diagonal-linear.yaml"
SHIPPED = yaml.safe_load(CONFIG.read_text())
RELATIVE = [0.5, 1.25, 1.8]  # flow-aligned, near η* = 2/S(β_G) ≈ 1.29 η_c, near the largest stable η


def reduced() -> dict:
    """The shipped experiment, d = 2 setup only, three learning rates and a small budget."""
    cfg = copy.deepcopy(SHIPPED)
    cfg["experiment"] = "dln-mini"
    cfg["setups"] = {"d2": cfg["setups"]["d2"]}
    cfg["eta"] = {"relative": RELATIVE}
    cfg["gd"].update(max_steps=2000, sharpness_every=50)
    cfg["geometry"] = {"top_k": 2, "trace_samples": 2}
    cfg["figures"] = {"trajectory_ratios": [0.5, 1.8], "dpi": 60}
    return cfg


def test_the_reduced_config_file_is_the_shipped_experiment_reduced():
    assert reduced_config("dln-mini") == reduced()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dln")
    out = snakemake(workdir, "--configfile", str(TEST_CONFIGS / "dln-mini.yaml"))
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


@pytest.fixture(scope="module")
def runs(finished):
    return pd.read_parquet(finished / "results/dln-mini/runs.parquet")


@pytest.mark.workflow
@pytest.mark.slow
def test_gd_end_points_are_on_the_zero_loss_set(runs):
    inst = theory.INSTANCES["d2"]
    eps = SHIPPED["setups"]["d2"]["loss_threshold"]
    assert list(runs.setup) == ["d2"] * 4 and (runs.status == "converged").all()
    for row in runs.itertuples():
        beta = np.asarray(row.beta)
        w = np.sqrt(beta)  # shared weights, D = 2, w₀ > 0 keeps w > 0
        assert theory.loss(w, inst) == pytest.approx(row.train_loss, rel=1e-6) and row.train_loss < eps
        assert abs(beta @ inst.x - inst.y) < np.sqrt(2 * eps)
        # the exact generalisation error of the end point, and its Monte-Carlo estimate 2 × test loss
        assert row.gen_error == pytest.approx(theory.generalisation_error(beta, inst), rel=1e-12, abs=1e-15)
        assert 2 * row.test_loss == pytest.approx(row.gen_error, rel=0.15)


@pytest.mark.workflow
@pytest.mark.slow
def test_sharpness_sits_at_two_over_eta_beyond_eta_c(runs):
    gd, gf = runs[runs.method == "gd"], runs[runs.method == "gf"].iloc[0]
    # gradient flow ends at the closed-form limit of the flow from w₀ = α·1
    limit = theory.gradient_flow_limit(theory.INSTANCES["d2"], SHIPPED["setups"]["d2"]["model"]["init_scale"])
    assert gf.s_gf == pytest.approx(limit.sharpness, rel=2e-3)
    for row in gd.itertuples():
        if row.eta_over_eta_c > 1:
            assert 0.95 <= row.sharpness * row.eta / 2 <= 1.01, row  # edge of stability: S ≈ 2/η
        else:
            assert row.sharpness == pytest.approx(gf.sharpness, rel=0.02)  # flow-aligned: the flow's S


@pytest.mark.workflow
@pytest.mark.slow
def test_generalisation_is_best_strictly_inside_the_eta_range(runs):
    gd = runs[runs.method == "gd"].sort_values("eta")
    assert list(gd.eta_over_eta_c.round(12)) == RELATIVE
    best = int(np.argmin(gd.gen_error.to_numpy()))
    assert 0 < best < len(gd) - 1, gd.gen_error.tolist()
    # the norm end (small η) and the sharpness end (largest stable η) are both far worse
    assert gd.gen_error.iloc[best] < 0.1 * min(gd.gen_error.iloc[0], gd.gen_error.iloc[-1])
    # small η ends near the norm minimiser, the largest η near the sharpness minimiser
    m = theory.minimisers(theory.INSTANCES["d2"])
    b1 = [np.asarray(b)[0] for b in gd.beta]
    assert abs(b1[0] - m.norm.beta[0]) < 0.05 and abs(b1[-1] - m.sharpness.beta[0]) < 0.05


@pytest.mark.workflow
@pytest.mark.slow
def test_diagonal_figures_exist(finished):
    figures = finished / "results/dln-mini/figures"
    names = ["sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories",
             "dln_zero_loss_set", "dln_vs_eta"]
    for name in names:
        for ext in ("png", "pdf"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000, name


@pytest.mark.workflow
def test_shipped_config_plans_its_own_setups_only(tmp_path):
    """The documented command: --configfile replaces the quickstart config instead of extending it."""
    out = snakemake(tmp_path, "-n", "--configfile", str(CONFIG))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "digits" not in text and "results/diagonal-linear/d5/data.pt" in text
    jobs = job_counts(text)
    n_eta = len(SHIPPED["eta"]["relative"]) + len(SHIPPED["setups"]["d5"]["eta"]["relative"])
    assert jobs["train_gd"] == n_eta and jobs["gradient_flow"] == 2 and jobs["figures"] == 1


def test_docs_print_the_current_instance_table():
    assert theory.markdown_table() in (REPO / "docs/diagonal-linear-network.md").read_text()
