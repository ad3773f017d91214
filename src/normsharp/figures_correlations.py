"""Which measure tracks the test loss: Kendall's τ-b of each sharpness and norm measure with the test loss across
η (correlations.parquet, :mod:`normsharp.correlations`), one panel per setup."""

from __future__ import annotations

import numpy as np

from .correlations import MEASURES
from .figures_common import Study, figure

KIND_COLORS = {"sharpness": "C0", "norm": "C1"}


@figure("test_loss_correlations", rows=1)
def test_loss_correlations(study: Study, axes, setup: str):
    """One row per measure: each seed's τ as a dot, their mean as a bar coloured by kind, the mean and n written
    beside; measures in the order of normsharp.correlations.MEASURES, those the study lacks left out."""
    ax = axes[0]
    table = study.correlations
    mine = table[table.setup == setup] if len(table) else table
    names = [name for name in MEASURES if len(mine) and name in set(mine.measure)]
    if not names:
        ax.text(0.5, 0.5, "no Kendall τ: fewer than two converged\nGD runs with a finite test loss", ha="center",
                va="center", transform=ax.transAxes, color="grey")
        ax.set(title=setup, xlim=(-1.05, 1.05))
        return
    y = np.arange(len(names))[::-1]
    labelled = set()
    for yi, name in zip(y, names):
        rows = mine[mine.measure == name]
        kind = rows.kind.iloc[0]
        color = KIND_COLORS.get(kind, "grey")
        mean = rows.tau.mean()
        ax.barh(yi, mean, color=color, alpha=0.35, height=0.7,
                label=None if kind in labelled else f"{kind}: mean over seeds")
        ax.plot(rows.tau, np.full(len(rows), yi), "o", color=color, ms=4,
                label=None if "seed" in labelled else "τ of one seed")
        labelled |= {kind, "seed"}
        note = "n/a" if np.isnan(mean) else f"{mean:+.2f}"
        ax.text(1.1, yi, f"{note} (n={int(rows.n.max())})", va="center", fontsize=7)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xticks([-1, -0.5, 0, 0.5, 1])
    ax.set(xlim=(-1.05, 1.6), ylim=(-0.7, len(names) + 1.4), xlabel="Kendall τ-b with the test loss across η",
           title=setup)
