"""The opt-in sharpness measures through the workflow: setup b of the reduced quickstart with every measure on
writes their columns, spectra.parquet and figures; turning one off re-evaluates, it never retrains."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import finished_workdir, planned_jobs, setup_b

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

MEASURES = {"density": {"probes": 3, "steps": 12}, "layer_sharpness": True,
            "adaptive_sharpness": {"enabled": True, "rho": 0.05, "steps": 5, "samples": 5}}


def config():
    return setup_b(MEASURES)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return finished_workdir(tmp_path_factory.mktemp("measures"), config())


def test_columns_spectra_and_figures(finished):
    results = finished / "results/mini"
    runs = pd.read_parquet(results / "runs.parquet")
    assert len(runs) == 3 and (runs.status == "converged").all()
    assert (runs.density_n_hvp == 3 * 12).all() and (runs.density_seconds > 0).all()
    assert (runs.adaptive_sharpness_max > 0).all() and runs.adaptive_sharpness_avg.notna().all()
    assert (runs.adaptive_sharpness_n_grad == 5).all()
    assert (runs.layer_names.map(len) == 2).all()  # depth 1: the hidden layer and the head, weight + bias each
    for r in runs.itertuples():  # the blocks never exceed the whole Hessian's S (PSD-dominated at a minimum)
        assert len(r.layer_sharpness) == 2 and max(abs(v) for v in r.layer_sharpness) <= abs(r.sharpness) * 1.001
    spectra = pd.read_parquet(results / "spectra.parquet")
    assert list(spectra.columns) == ["experiment", "setup", "seed", "method", "eta", "probe", "node", "weight"]
    assert len(spectra) == 3 * 3 * 12
    sums = spectra.groupby(["method", spectra.eta.fillna(-1), "probe"]).weight.sum()
    assert np.allclose(sums, 1.0)
    geometry = json.loads((results / "b/seed0/r2.0/geometry.json").read_text())
    assert len(geometry["density"]["nodes"]) == 3 and geometry["n_hvp"] >= 36 + geometry["layer_sharpness_n_hvp"]
    for name in ("trace_vs_eta", "spectral_density", "adaptive_sharpness_vs_eta", "layer_sharpness_vs_eta"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000


def test_a_measure_turned_off_re_evaluates_only(finished):
    cfg = config()
    cfg["geometry"]["density"] = {"probes": 0}
    assert planned_jobs(finished, cfg) == {"all": 1, "evaluate": 3, "aggregate": 1, "figures": 1}
