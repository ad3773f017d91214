"""Which measure tracks the test loss: Kendall's τ-b of every recorded sharpness and norm measure with the test
loss across η, per setup and seed, in the spirit of Jiang et al. 2020 ("Fantastic generalization measures and
where to find them", ICLR 2020, arXiv:1912.02178), who rank measures by their Kendall τ with the generalisation
gap over trained models.

Here the models are one sweep's converged GD end points (one per η), so τ = +1 means the measure orders the
end points exactly as their test loss does, −1 exactly reversed, 0 no rank association.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Measure(NamedTuple):
    column: str  # the runs.parquet column
    kind: str  # "sharpness" or "norm"
    description: str


# The measures whose rank correlation with the test loss is computed: name → (runs.parquet column, kind, what it
# is). A column that a study does not have (a measure that is off, a column of a later release) is skipped.
MEASURES: dict[str, Measure] = {
    "sharpness": Measure("sharpness", "sharpness", "S = the Hessian's eigenvalue of largest magnitude"),
    "trace": Measure("trace", "sharpness", "tr ∇²L, Hutchinson"),
    "adaptive_sharpness_max": Measure("adaptive_sharpness_max", "sharpness",
                                      "worst-case adaptive sharpness (Andriushchenko et al. 2023)"),
    "adaptive_sharpness_avg": Measure("adaptive_sharpness_avg", "sharpness",
                                      "average-case adaptive sharpness (Andriushchenko et al. 2023)"),
    "avg_sharpness": Measure("avg_sharpness", "sharpness", "S at the average of the last oscillation window"),
    "cont_sharpness": Measure("cont_sharpness", "sharpness", "S at the end point continued by gradient flow"),
    "l1_norm": Measure("l1_norm", "norm", "‖θ‖₁"),
    "l2_norm": Measure("l2_norm", "norm", "‖θ‖₂"),
    "dist_to_init": Measure("dist_to_init", "norm", "‖θ − θ₀‖₂"),
    "path_norm": Measure("path_norm", "norm", "path norm of the layered network"),
    "spectral_norm_product": Measure("spectral_norm_product", "norm", "∏ of the layers' spectral norms"),
    "avg_l1_norm": Measure("avg_l1_norm", "norm", "‖θ‖₁ of the average of the last oscillation window"),
    "avg_l2_norm": Measure("avg_l2_norm", "norm", "‖θ‖₂ of the average of the last oscillation window"),
    "cont_l1_norm": Measure("cont_l1_norm", "norm", "‖θ‖₁ of the end point continued by gradient flow"),
    "cont_l2_norm": Measure("cont_l2_norm", "norm", "‖θ‖₂ of the end point continued by gradient flow"),
}
TARGET = "test_loss"
COLUMNS = {"experiment": "string", "setup": "string", "seed": "int64", "measure": "string", "kind": "string",
           "column": "string", "tau": "float64", "p_value": "float64", "n": "int64"}


def _ties(values: np.ndarray) -> np.ndarray:
    """The sizes t of the groups of equal values (groups of one included: they add 0 to every tie sum)."""
    return np.unique(values, return_counts=True)[1].astype(float)


def kendall_tau_b(x, y) -> tuple[float, float]:
    """Kendall's τ-b of the pairs (x_i, y_i) and its two-sided p-value; pairs with a non-finite value dropped.

    τ_b = (n_c − n_d) / √((n₀ − n₁)(n₀ − n₂)) (Kendall 1945, "The treatment of ties in ranking problems";
    Kendall 1970, *Rank Correlation Methods*; Agresti 2010, p. 188), with n_c, n_d the concordant and discordant
    pairs, n₀ = n(n − 1)/2, n₁ = Σ t(t − 1)/2 over the groups of tied x, n₂ = Σ u(u − 1)/2 over the groups of
    tied y; a pair tied in x or y is neither concordant nor discordant. Without ties it is Kendall's τ-a.

    The p-value is the normal approximation to S = n_c − n_d under independence with Kendall's tie-corrected
    variance Var S = [v₀ − v_t − v_u]/18 + Σt(t−1)·Σu(u−1) / (2n(n−1)) + Σt(t−1)(t−2)·Σu(u−1)(u−2) /
    (9n(n−1)(n−2)), v₀ = n(n−1)(2n+5), v_t = Σt(t−1)(2t+5) (v_u likewise): p = erfc(|S|/√(2 Var S)), which
    is scipy.stats.kendalltau(variant="b", method="asymptotic"). NaN τ when n < 2 or x or y is constant; NaN
    p-value also when n < 3.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau_b: x and y must be 1-d of one length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    upper = np.triu_indices(n, k=1)
    s = float(np.sum(np.sign(x[:, None] - x[None, :])[upper] * np.sign(y[:, None] - y[None, :])[upper]))
    t, u = _ties(x), _ties(y)
    n0, n1, n2 = n * (n - 1) / 2, np.sum(t * (t - 1)) / 2, np.sum(u * (u - 1)) / 2
    if n1 == n0 or n2 == n0:
        return math.nan, math.nan
    tau = s / math.sqrt((n0 - n1) * (n0 - n2))
    if n < 3:
        return tau, math.nan
    var = ((n * (n - 1) * (2 * n + 5) - np.sum(t * (t - 1) * (2 * t + 5)) - np.sum(u * (u - 1) * (2 * u + 5))) / 18
           + np.sum(t * (t - 1)) * np.sum(u * (u - 1)) / (2 * n * (n - 1))
           + np.sum(t * (t - 1) * (t - 2)) * np.sum(u * (u - 1) * (u - 2)) / (9 * n * (n - 1) * (n - 2)))
    return tau, (math.erfc(abs(s) / math.sqrt(2 * var)) if var > 0 else math.nan)


def correlations_frame(runs: pd.DataFrame, measures: dict[str, Measure] = MEASURES) -> pd.DataFrame:
    """Kendall's τ-b (:func:`kendall_tau_b`) of each measure with the test loss over the converged GD runs of
    each setup and seed (one run per η), columns COLUMNS, sorted by setup, seed and the order of ``measures``.

    A measure whose column ``runs`` lacks, or that has no finite value in a sweep, has no row there; ``n`` is the
    number of runs with both the measure and the test loss finite (τ NaN below 2 or for a constant measure).
    """
    import pandas as pd

    gd = runs[(runs.method == "gd") & (runs.status == "converged")]
    records = []
    for (setup, seed), sweep in gd.groupby(["setup", "seed"], sort=True):
        loss = sweep[TARGET].to_numpy(dtype=float)
        for name, m in measures.items():
            if m.column not in sweep:
                continue
            values = sweep[m.column].to_numpy(dtype=float)
            if not np.isfinite(values).any():
                continue
            both = np.isfinite(values) & np.isfinite(loss)
            tau, p = kendall_tau_b(values[both], loss[both])
            records.append({"experiment": sweep.experiment.iloc[0], "setup": setup, "seed": seed, "measure": name,
                            "kind": m.kind, "column": m.column, "tau": tau, "p_value": p, "n": int(both.sum())})
    return pd.DataFrame(records, columns=list(COLUMNS)).astype(COLUMNS)
