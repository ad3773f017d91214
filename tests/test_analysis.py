"""The analysis of a sweep on tables and tensors in memory (no files): transition, bracket, refinement
proposal, gaps to the flow, the runs and trajectories tables."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from normsharp.analysis import (
    GAP_COLUMNS,
    LIST_COLUMNS,
    RUN_COLUMNS,
    eta_transition,
    gaps_to_flow,
    propose_refinement,
    regime,
    run_row,
    runs_frame,
    trajectories_frame,
    transition_bracket,
)

# η_c = 0.5: on the plateau S = 2/η_c = 4, above it the EoS branch S = 2/η (η = 0.5 lies on both)
ETA_C = 0.5
ETA = [0.1, 0.25, 0.5, 0.8, 1.6]
S = [4.0, 4.0, 4.0, 2.5, 1.25]


def test_regime():
    assert [regime("gf", math.nan, 1.0), regime("gd", 0.99, 1.0), regime("gd", 1.0, 1.0)] == \
        ["gf", "flow-aligned", "eos"]


@pytest.mark.parametrize("tol", [0.1, 0.3])
def test_transition_on_the_two_over_eta_branch_is_exact(tol):
    # both neighbours lie on S = 2/η, a line in (log η, log S): |S| = (1 − tol)·4 at η = η_c/(1 − tol)
    assert eta_transition(ETA, S, ETA_C, tol) == pytest.approx(ETA_C / (1 - tol), rel=1e-14)
    assert transition_bracket(ETA, S, ETA_C, tol) == (0.5, 0.8)


def test_bracket_and_transition_ignore_diverged_and_zero_sharpness():
    eta, s = [*ETA, 3.2, 6.4], [*S, math.nan, 0.0]
    assert transition_bracket(eta, s, ETA_C) == (0.5, 0.8)
    assert eta_transition(eta, s, ETA_C) == pytest.approx(ETA_C / 0.9, rel=1e-14)


def refinement_runs(ratios, sharpness, test_loss=None, status=None):
    n = len(ratios)
    return pd.DataFrame({"run": [f"r{r!r}" for r in ratios], "ratio": ratios,
                         "status": status or ["converged"] * n, "sharpness": sharpness,
                         "test_loss": test_loss or [1.0] * n})


def test_proposal_skips_eta_already_run_and_ignores_unfinished_runs():
    # the unfinished run at 1.118 η_c neither moves the bracket nor is proposed again
    runs = refinement_runs([0.5, 1.0, 1.118, 1.25, 2.0], [10.0, 10.0, 1.0, 1.6, 1.0],
                           status=["converged", "converged", "max_steps", "converged", "converged"])
    got = propose_refinement(runs, width=0.02, points=3)
    assert got["bracket"] == [1.0, 1.25] and got["width"] == pytest.approx(0.25)
    assert got["added"] == [1.057, 1.182]  # 1.25^(1/4), 1.25^(3/4) at 4 digits; 1.25^(1/2) = 1.118 taken
    assert got["runs"] == ["r0.5", "r1.0", "r1.118", "r1.25", "r2.0", "r1.057", "r1.182"]


def test_proposal_adds_nothing_inside_a_bracket_narrower_than_width():
    got = propose_refinement(refinement_runs([0.5, 1.0, 1.25, 2.0], [10.0, 10.0, 1.6, 1.0]), width=0.3, points=3)
    assert got["bracket"] == [1.0, 1.25] and got["added"] == []
    assert got["runs"] == ["r0.5", "r1.0", "r1.25", "r2.0"]


def test_test_minimum_adds_only_across_gaps_wider_than_width():
    # least test loss at 1.25 η_c: the gap to 1.0 (25 %) is narrower than width 0.5, the one to 2.0 (60 %) wider
    runs = refinement_runs([0.5, 1.0, 1.25, 2.0], [10.0, 10.0, 1.6, 1.0], test_loss=[0.3, 0.25, 0.2, math.nan])
    assert propose_refinement(runs, width=0.5, points=3, test_minimum=True)["added"] == []  # 2.0: NaN test loss
    runs["test_loss"] = [0.3, 0.25, 0.2, 0.22]
    got = propose_refinement(runs, width=0.5, points=3, test_minimum=True)
    assert got["added"] == [float(f"{math.sqrt(1.25 * 2.0):.4g}")] == [1.581]


def test_proposal_without_a_plateau():
    got = propose_refinement(refinement_runs([1.5, 2.0], [1.0, 0.5]), width=0.02, points=3)
    assert got["bracket"] is None and math.isnan(got["width"]) and got["added"] == []


class OnlyRows:
    """θ of some rows; reading any other row fails (gaps_to_flow must not read diverged runs' θ)."""

    def __init__(self, thetas: dict):
        self.thetas = thetas

    def __getitem__(self, i):
        return self.thetas[i]


def test_gaps_to_flow_on_small_tensors():
    runs = pd.DataFrame({
        "setup": ["a", "a", "a", "b"], "seed": [0, 0, 0, 0], "method": ["gd", "gf", "gd", "gd"],
        "status": ["converged", "converged", "diverged", "converged"],
        "train_loss": [0.01, 0.04, math.nan, 0.02], "sharpness": [2.0, 5.0, math.nan, 1.0]})
    theta_gf = torch.tensor([3.0, 4.0], dtype=torch.float64)  # θ₀ = 0: ‖θ_GF − θ₀‖ = 5
    theta = OnlyRows({0: torch.tensor([3.0, 0.0]), 1: theta_gf})  # row 0 in float32: compared in θ_GF's dtype
    got = gaps_to_flow(runs, theta, {("a", 0): torch.zeros(2, dtype=torch.float64)})
    assert list(got.columns) == GAP_COLUMNS and got.index.equals(runs.index)
    assert got.iloc[0].tolist() == pytest.approx([4.0, 0.8, 0.01 - 0.04, 2.0 - 5.0], rel=1e-15)
    assert got.iloc[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert got.iloc[2].isna().all()  # diverged
    assert got.iloc[3].isna().all()  # setup b has no gradient-flow run


def records(setup, method, eta, eta_c=0.5, sharpness=4.0, status="converged"):
    """result.json, geometry.json, test.json of one synthetic run."""
    result = {"experiment": "x", "setup": setup, "dataset": "digits", "arch": "fcn", "loss": "mse", "seed": 0,
              "status": status, "steps": 10, "train_loss": 1e-3, "time": 1.0, "n_grad": 10, "n_hvp": 7,
              "wall_seconds": 0.1, "method": method, "eta": eta, "eta_c": eta_c, "s_gf": 2 / eta_c,
              "git_dirty": False}
    geometry = {"l1_norm": 3.0, "l2_norm": 2.0, "dist_to_init": 1.0, "sharpness": sharpness,
                "top_eigenvalues": [sharpness, 1.0], "trace": 6.0, "trace_stderr": 0.1, "n_hvp": 5,
                "sharpness_converged": True}
    test = {"test_loss": 0.2, "test_accuracy": 0.9, "train_accuracy": 1.0}
    return result, geometry, test


def test_run_row_merges_the_records():
    row = run_row(*records("a", "gd", 0.8))
    assert row["n_hvp"] == 7 + 5 and row["eta_over_eta_c"] == 0.8 / 0.5 and row["regime"] == "eos"
    assert math.isnan(row["gen_error"]) and row["beta"] == [] and row["torch_version"] is None
    assert row["top_eigenvalues"] == [4.0, 1.0] and row["sharpness_converged"] is True


def test_own_edge_of_old_gd_records_momentum_and_adam():
    old = run_row(*records("a", "gd", 0.8))  # written before the optimisers: plain GD
    assert (old["optimizer"], old["opt_sharpness"], old["edge"]) == ("gd", old["sharpness"], 2 / 0.8)
    assert old["edge_ratio"] == old["sharpness"] * 0.8 / 2
    result, geometry, test = records("a", "gd", 0.8, sharpness=3.0)
    momentum = {"optimizer": "momentum", "edge_measure": "hessian", "edge_constant": 3.8, "sharpness_shift": 0.1,
                "opt_sharpness": math.nan}
    row = run_row({**result, **momentum}, geometry, test)
    assert row["opt_sharpness"] == 3.1 and row["edge"] == 3.8 / 0.8 and row["edge_ratio"] == 3.1 / (3.8 / 0.8)
    adam = {"optimizer": "adam", "edge_measure": "preconditioned", "edge_constant": 38.0, "sharpness_shift": 0.0,
            "opt_sharpness": 40.0, "eta_c": math.nan}
    row = run_row({**result, **adam}, geometry, test)
    assert row["opt_sharpness"] == 40.0 and row["edge_ratio"] == 40.0 * 0.8 / 38 and row["regime"] is None
    gf = run_row(*records("a", "gf", math.nan))
    assert gf["optimizer"] is None and math.isnan(gf["edge"]) and math.isnan(gf["edge_ratio"])


def test_runs_frame_types_orders_and_adds_transition_and_gaps():
    sweep = [records("a", "gd", eta, sharpness=s) for eta, s in zip(ETA, S)]
    rows = [run_row(*r) for r in [*reversed(sweep), records("a", "gf", math.nan, sharpness=4.0),
                                  records("b", "gd", 0.1, sharpness=1.0)]]
    theta = [torch.tensor([float(i), 0.0], dtype=torch.float64) for i in range(len(rows))]
    runs = runs_frame(rows, theta, {("a", 0): torch.tensor([1.0, 0.0], dtype=torch.float64)})  # θ_GF = θ[5] = (5, 0)
    assert list(runs.columns) == [*RUN_COLUMNS, *LIST_COLUMNS, "trace_stderr", "sharpness_converged"]
    assert {c: str(runs[c].dtype) for c in RUN_COLUMNS} == RUN_COLUMNS
    assert list(zip(runs.setup, runs.method)) == [("a", "gd")] * 5 + [("a", "gf")] + [("b", "gd")]
    assert list(runs.eta[:5]) == ETA
    a, b = runs[runs.setup == "a"], runs[runs.setup == "b"]
    np.testing.assert_allclose(a.eta_transition, ETA_C / 0.9, rtol=1e-14)
    assert b.eta_transition.isna().all() and b[GAP_COLUMNS].isna().all().all()
    # η = 0.1 was rows[4], θ = (4, 0): 1 from θ_GF, 1/4 of ‖θ_GF − θ₀‖
    first = runs[(runs.setup == "a") & (runs.eta == 0.1)].iloc[0]
    assert (first.dist_to_gf, first.rel_dist_to_gf, first.sharpness_gap_gf) == (1.0, 0.25, 0.0)
    assert runs.dist_to_gf.iloc[5] == 0.0  # the GF row


def test_trajectories_frame_leads_each_run_with_its_keys():
    rows = [run_row(*records("a", "gf", math.nan)), run_row(*records("a", "gd", 0.8))]
    steps = [pd.DataFrame({"step": [0, 1], "train_loss": [1.0, 0.5]}), pd.DataFrame({"step": [0], "train_loss": [1.0]})]
    traj = trajectories_frame(rows, steps)
    assert list(traj.columns) == ["eta", "method", "seed", "setup", "experiment", "step", "train_loss", "time",
                                  "sharpness", "test_loss", "test_accuracy", "opt_sharpness", "edge"]
    assert traj.opt_sharpness.isna().all()  # a column its files lack (written before it existed) is NaN
    assert list(traj.method) == ["gf", "gf", "gd"] and traj.eta.isna().tolist() == [True, True, False]
    assert str(traj.setup.dtype) == "string" and str(traj.seed.dtype) == "int64"
    assert list(steps[0].columns) == ["step", "train_loss"]  # the inputs are left as they were


def test_regime_is_none_without_eta_c():
    """An adaptive optimiser has no η_c: its runs are neither flow-aligned nor at the Edge of Stability."""
    assert regime("gd", 0.01, math.nan) is None and regime("gf", math.nan, math.nan) == "gf"
