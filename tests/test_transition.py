"""eta_transition: where the final sharpness of a GD sweep leaves the flow-aligned plateau (synthetic tables)."""

import math

import numpy as np
import pandas as pd
import pytest

from normsharp.analysis import eta_transition, transitions

# plateau S = 10 for η < η_c = 0.5, then the EoS branch S = 2/η
ETA = [0.1, 0.2, 0.4, 0.8, 1.6]
S = [10.0, 10.0, 10.0, 2.5, 1.25]


def test_interpolates_in_log_eta_and_log_s():
    # threshold 9 between (0.4, 10) and (0.8, 2.5): log η = log 0.4 + log 2 · log(10/9)/log 4, i.e. η = 0.4·√(10/9)
    assert eta_transition(ETA, S, 0.5, tol=0.1) == pytest.approx(0.4 * math.sqrt(10 / 9), rel=1e-14)
    # threshold 5 (tol 0.5): log(10/5)/log 4 = 1/2, η = 0.4·√2
    assert eta_transition(ETA, S, 0.5, tol=0.5) == pytest.approx(0.4 * math.sqrt(2), rel=1e-14)


def test_order_sign_and_non_finite_runs_do_not_matter():
    order = [3, 0, 4, 2, 1]
    eta = [ETA[i] for i in order] + [3.2]
    s = [-S[i] if i == 1 else S[i] for i in order] + [math.nan]  # a signed eigenvalue and a diverged run
    assert eta_transition(eta, s, 0.5) == pytest.approx(0.4 * math.sqrt(10 / 9), rel=1e-14)


def test_plateau_is_the_median_below_eta_c():
    # below η_c = 0.5: S = 8, 10, 12 → plateau 10, threshold 9; first below: η = 0.8 with S = 3
    eta, s = [0.1, 0.2, 0.4, 0.8], [8.0, 10.0, 12.0, 3.0]
    assert eta_transition(eta, s, 0.5) == 0.1  # S = 8 < 9 already at the smallest η: no neighbour to interpolate
    eta, s = [0.1, 0.2, 0.4, 0.8], [12.0, 10.0, 9.5, 3.0]
    expected = math.exp(math.log(0.4) + math.log(2) * math.log(9.5 / 9) / math.log(9.5 / 3))
    assert eta_transition(eta, s, 0.5) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("eta, s, eta_c", [
    ([0.1, 0.2, 0.4], [10.0, 9.5, 9.2], 0.5),  # no departure in the sweep
    ([0.8, 1.6], [2.5, 1.25], 0.5),  # no run below η_c: no plateau
    ([], [], 0.5),
])
def test_nan_without_a_plateau_or_a_departure(eta, s, eta_c):
    assert math.isnan(eta_transition(eta, s, eta_c))


def test_transitions_per_setup_and_seed_from_converged_runs():
    rows = []
    for seed, scale in ((0, 1.0), (1, 2.0)):  # seed 1: sharpness ×2, η_c / 2, every η / 2
        for eta, s in zip(ETA, S):
            rows.append(("a", seed, "gd", eta / scale, s * scale, 0.5 / scale, "converged"))
        rows.append(("a", seed, "gd", 0.05 / scale, 1.0, 0.5 / scale, "max_steps"))  # unfinished: ignored
        rows.append(("a", seed, "gd", 5.0 / scale, math.nan, 0.5 / scale, "diverged"))
        rows.append(("a", seed, "gf", math.nan, 10.0 * scale, 0.5 / scale, "converged"))
    rows.append(("b", 0, "gd", 0.1, 4.0, 0.5, "converged"))  # one run: no departure
    runs = pd.DataFrame(rows, columns=["setup", "seed", "method", "eta", "sharpness", "eta_c", "status"])
    got = transitions(runs)
    assert got.dtype == "float64" and got.index.equals(runs.index)
    expected = 0.4 * math.sqrt(10 / 9)
    np.testing.assert_allclose(got[runs.setup.eq("a") & runs.seed.eq(0)], expected, rtol=1e-14)
    np.testing.assert_allclose(got[runs.setup.eq("a") & runs.seed.eq(1)], expected / 2, rtol=1e-14)
    assert got[runs.setup.eq("b")].isna().all()
