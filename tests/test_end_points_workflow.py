"""The norms and the "is the growth real?" end points through the workflow: setup b of the reduced quickstart with
geometry.end_points on writes the avg_* and cont_* columns (finite at the Edge of Stability, NaN below η_c and for
the flow), the norm columns for every run and the end_points_vs_eta figure; turning it off re-evaluates only."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import finished_workdir, planned_jobs, setup_b

from normsharp.end_points import SCALAR_COLUMNS

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def config(enabled=True):
    return setup_b({"end_points": {"enabled": enabled, "window": 40, "continue_factor": 0.8,
                                   "max_steps": 2000}})  # L of setup b stalls near 0.0375


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_workdir(tmp_path_factory.mktemp("end_points"), config())


def test_end_point_columns_norms_and_figure(finished):
    results = finished / "results/mini"
    runs = pd.read_parquet(results / "runs.parquet")
    assert len(runs) == 3 and (runs.status == "converged").all()
    assert set(SCALAR_COLUMNS) <= set(runs.columns)
    eos = runs[runs.regime == "eos"]
    assert len(eos) == 1 and eos.eta_over_eta_c.iloc[0] == pytest.approx(2.0)
    row = eos.iloc[0]
    for prefix in ("avg", "cont"):
        for measure in ("sharpness", "l1_norm", "l2_norm", "train_loss", "test_loss", "dist_to_end"):
            assert math.isfinite(row[f"{prefix}_{measure}"]), f"{prefix}_{measure}"
        assert row[f"{prefix}_n_hvp"] > 0 and row[f"{prefix}_seconds"] > 0
    assert row.avg_n_grad == 39 and row.cont_n_grad > 0 and row.cont_status == "converged" and row.cont_time > 0
    assert row.cont_train_loss < 0.8 * 0.05  # continued below continue_factor × ε
    assert row.avg_dist_to_end > 0 and row.cont_dist_to_end > 0
    geometry = json.loads((results / "b/seed0/r2.0/geometry.json").read_text())
    assert geometry["n_hvp"] >= geometry["avg_n_hvp"] + geometry["cont_n_hvp"]
    for regime in ("gf", "flow-aligned"):  # the flow and the run at 0.5 η_c: not measured
        r = runs[runs.regime == regime].iloc[0]
        assert all(np.isnan(r[f"{p}_{m}"]) for p in ("avg", "cont") for m in ("sharpness", "l1_norm", "test_loss"))
        assert r.avg_n_grad == 0 and r.cont_n_grad == 0 and pd.isna(r.cont_status)
    # the norms of every run: layer blocks (depth 1: hidden layer and head), path norm and spectral product
    for r in runs.itertuples():
        assert list(r.layer_names) == ["net.1", "net.3"]
        assert sum(r.layer_l1_norms) == pytest.approx(r.l1_norm, rel=1e-12)
        assert math.hypot(*r.layer_l2_norms) == pytest.approx(r.l2_norm, rel=1e-12)
        assert r.path_norm > 0 and r.spectral_norm_product > 0
    assert (results / "figures/end_points_vs_eta.png").stat().st_size > 1000


def test_turning_end_points_off_re_evaluates_only(finished):
    assert planned_jobs(finished, config(enabled=False)) == {"all": 1, "evaluate": 3, "aggregate": 1, "figures": 1}
