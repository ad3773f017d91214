"""The optimisers of a study side by side (issue 22): one line per setup, each against its own η_c.

Rows: the final sharpness over the flow's, S/s_GF (where GD leaves the flow's plateau only past η_c, momentum
may leave it long before); the optimiser's own sharpness over its own edge, S_opt·η/c (1 = at its edge:
``edge_ratio``); the ℓ1 norm of θ; the test loss. Columns: the setups with a predicted η_c = c/(s_GF + shift)
against η/η_c, and the adaptive ones (no η_c, absolute grids) against η.
"""

from __future__ import annotations

import matplotlib.ticker
import pandas as pd

from .figures_common import band, has_eta_c, log_eta_axis, panels, plain

ROWS = (("sharpness_over_s_gf", "final S / s_GF"), ("edge_ratio", "S_opt · η / c  (1 = its edge)"),
        ("l1_norm", "ℓ1 norm of θ"), ("test_loss", "test loss"))


def label(gd: pd.DataFrame, setup: str) -> str:
    """The setup's name, and its optimiser where the name does not say it."""
    names = gd.optimizer.dropna().unique() if "optimizer" in gd else []
    return f"{setup} ({names[0]})" if len(names) and names[0] not in setup else setup


def _own_ratio_axis(ax):
    """η over each setup's own η_c, log base 2, η_c dotted (no raw-η axis: each optimiser has its own η_c)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(1.0, color="grey", ls=":", lw=1, label="its own η_c")
    ax.set_xlabel("η / η_c (each optimiser's own)")


def optimizer_edges(runs: pd.DataFrame):
    """The figure: a column per kind of grid (η/η_c; absolute η), the rows of :data:`ROWS`, a line per setup."""
    gd = runs[runs.method == "gd"].assign(sharpness_over_s_gf=lambda r: r.sharpness / r.s_gf)
    setups = sorted(gd.setup.unique())
    kinds = {"relative": [s for s in setups if has_eta_c(gd[gd.setup == s])]}
    kinds["absolute"] = [s for s in setups if s not in kinds["relative"]]
    kinds = {kind: members for kind, members in kinds.items() if members}
    fig, axes = panels(list(kinds), rows=len(ROWS), height=3.0)
    for j, members in enumerate(kinds.values()):
        for i, setup in enumerate(members):
            mine = gd[gd.setup == setup]
            for ax, (column, _) in zip(axes[:, j], ROWS):
                band(ax, mine, column, label(mine, setup), color=f"C{i}")
        relative = has_eta_c(gd[gd.setup == members[0]])
        for ax, (column, ylabel) in zip(axes[:, j], ROWS):
            if relative:
                _own_ratio_axis(ax)
            else:
                log_eta_axis(ax)
                ax.set_xlabel("η (absolute: no η_c for these)")
            ax.set_ylabel(ylabel)
            if column == "edge_ratio":
                ax.axhline(1.0, color="k", ls="--", lw=1, label="at its edge")
            if column == "sharpness_over_s_gf":
                ax.axhline(1.0, color="C2", ls="-.", lw=1, label="the flow's s_GF")
        axes[0, j].set_title("against each optimiser's own η_c" if relative else "adaptive methods: absolute η")
    return fig
