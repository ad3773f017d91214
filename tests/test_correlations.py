"""Kendall's τ-b against a hand count with ties and against scipy; the correlations table on a small runs frame;
the τ figure and the test-loss minimum marks drawn from such frames."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from normsharp.correlations import COLUMNS, MEASURES, correlations_frame, kendall_tau_b
from normsharp.figures_common import Study
from normsharp.figures_correlations import test_loss_correlations as draw_correlations
from normsharp.figures_sweep import test_loss_vs_eta as draw_test_loss


def test_tau_b_with_ties_by_hand():
    # pairs of x = (1, 2, 2, 3), y = (1, 3, 2, 2): (1,2) (1,3) (1,4) concordant, (2,4) discordant, (2,3) tied in x,
    # (3,4) tied in y: n_c = 3, n_d = 1, n₀ = 6, n₁ = n₂ = 1, τ_b = 2 / √(5·5) = 0.4 (τ_a would be 2/6)
    tau, p = kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2])
    assert tau == pytest.approx(0.4, abs=1e-15)
    # Var S = (4·3·13 − 2·1·9 − 2·1·9)/18 + 2·2/(2·4·3) + 0 = 6.6667 + 0.16667; p = erfc(2 / √(2 Var S))
    assert p == pytest.approx(math.erfc(2 / math.sqrt(2 * (120 / 18 + 4 / 24))), rel=1e-14)


def test_tau_b_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(3, 30))
        x, y = rng.integers(0, 5, n).astype(float), rng.normal(size=n)
        if trial % 2:
            y = np.round(y, 0)  # ties in both
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        tau, p = kendall_tau_b(x, y)
        ref = scipy.stats.kendalltau(x, y, variant="b", method="asymptotic")
        assert tau == pytest.approx(ref.statistic, abs=1e-13) and p == pytest.approx(ref.pvalue, rel=1e-10)


def test_tau_b_edge_cases():
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40])[0] == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1])[0] == -1.0
    assert all(math.isnan(v) for v in kendall_tau_b([1, 2, 3], [5, 5, 5]))  # constant: undefined
    assert math.isnan(kendall_tau_b([1, 2], [1, 2])[1])  # n < 3: no p-value
    assert kendall_tau_b([1, np.nan, 2, 3, np.inf], [1, 5, 2, 3, 0])[0] == 1.0  # non-finite pairs dropped
    with pytest.raises(ValueError, match="one length"):
        kendall_tau_b([1, 2], [1, 2, 3])


def sweep_frame():
    """Two setups; setup a with seeds 0 and 1 (a diverged run, a gf row), setup b with one converged run."""
    rows = []
    loss = [0.30, 0.25, 0.20, 0.22, 0.40]
    for seed in (0, 1):
        for i, r in enumerate([0.5, 1.0, 2.0, 4.0, 8.0]):
            rows.append({"experiment": "e", "setup": "a", "seed": seed, "method": "gd", "eta": r, "eta_c": 1.0,
                         "eta_over_eta_c": r, "status": "diverged" if r == 8.0 else "converged",
                         "test_loss": loss[i] + 0.01 * seed, "sharpness": 10.0 / max(r, 1.0),
                         "l1_norm": 100.0 + r, "l2_norm": 7.0, "trace": [5.0, 4.0, 4.0, 3.0, 1.0][i],
                         "adaptive_sharpness_max": math.nan})
        rows.append({**rows[-1], "method": "gf", "eta": math.nan, "status": "converged", "test_loss": 0.5})
    rows.append({**rows[0], "setup": "b", "seed": 0})
    return pd.DataFrame(rows)


def test_correlations_table_on_a_small_frame():
    got = correlations_frame(sweep_frame())
    assert got.dtypes.astype(str).to_dict() == COLUMNS
    a0 = got[(got.setup == "a") & (got.seed == 0)].set_index("measure")
    # absent columns (path_norm, …) and the all-NaN adaptive sharpness have no row; table order
    assert list(a0.index) == ["sharpness", "trace", "l1_norm", "l2_norm"]
    assert (a0.n == 4).all()  # the diverged run and the gf row are not counted
    # test loss 0.30, 0.25, 0.20, 0.22 at η = 0.5, 1, 2, 4: ℓ1 grows with η, so its pairs are those of η:
    # 5 of 6 pairs discordant (only (2, 4) concordant) → τ = (1 − 5)/6
    assert a0.tau["l1_norm"] == pytest.approx(-4 / 6)
    # sharpness 10, 10, 5, 2.5 (a tie at η ≤ η_c): n_c = 4, n_d = 1, n₁ = 1, τ_b = 3 / √(5·6)
    assert a0.tau["sharpness"] == pytest.approx(3 / math.sqrt(30))
    assert a0.tau["trace"] == pytest.approx(kendall_tau_b([5, 4, 4, 3], [0.30, 0.25, 0.20, 0.22])[0])
    assert math.isnan(a0.tau["l2_norm"]) and a0.kind["l2_norm"] == "norm"  # constant: τ undefined, row kept
    assert got[got.setup == "b"].n.tolist() == [1] * 4 and got[got.setup == "b"].tau.isna().all()
    assert set(got.kind) == {"sharpness", "norm"} and all(m.kind in ("sharpness", "norm") for m in MEASURES.values())
    assert correlations_frame(sweep_frame()[lambda f: f.method == "gf"]).empty


def test_the_figures_draw_tau_and_mark_the_test_minimum():
    runs = sweep_frame()
    study = Study(runs, correlations=correlations_frame(runs))
    fig, axes = plt.subplots(1, 2)
    draw_correlations(study, axes[:1], "a")
    ticks = axes[0].get_yticklabels()  # the table's order from the top
    assert [t.get_text() for t in sorted(ticks, key=lambda t: -t.get_position()[1])] == [
        "sharpness", "trace", "l1_norm", "l2_norm"]
    draw_test_loss(study, axes[1:], "a")
    labels = axes[1].get_legend_handles_labels()[1]
    # η = 8 diverged: the least loss at 2 η_c is bracketed by 1 and 4
    assert "least test loss (seed 0): 2 η_c, bracketed" in labels
    plt.close(fig)
    edge = runs[(runs.eta_over_eta_c <= 2.0) | (runs.method == "gf")]
    fig, axes = plt.subplots(1, 2)
    draw_test_loss(Study(edge), axes[:1], "a")
    assert "least test loss (seed 1): 2 η_c, at the largest η: not bracketed" in axes[0].get_legend_handles_labels()[1]
    draw_correlations(Study(edge), axes[1:], "a")  # no correlations table: says so, draws nothing
    assert "no Kendall τ" in axes[1].texts[0].get_text()
    plt.close(fig)
