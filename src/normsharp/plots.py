"""Figures from runs.parquet and trajectories.parquet, one panel per setup.

Several seeds give the mean with a min–max band. Runs that did not converge are drawn, not dropped:
'max_steps' as open squares, 'diverged' as red crosses on the top edge of the panel.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FIGURES = ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories")


def _log_eta_axis(ax):
    """Log η axis with labels on the decades only (minor labels overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _panels(setups: list[str], rows: int = 1):
    fig, axes = plt.subplots(rows, len(setups), figsize=(4.6 * len(setups), 3.8 * rows), squeeze=False)
    return fig, axes


def _band(ax, gd: pd.DataFrame, column: str, label: str, color=None):
    """Mean over seeds of converged runs with a min–max band; max_steps and diverged runs marked."""
    ok = gd[gd.status == "converged"]
    stats = ok.groupby("eta")[column].agg(["mean", "min", "max"]).sort_index()
    line = ax.plot(stats.index, stats["mean"], "o-", ms=4, label=label, color=color)[0]
    if ok.seed.nunique() > 1:
        ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.25, color=line.get_color())
    capped = gd[gd.status == "max_steps"]
    if len(capped):
        ax.plot(capped.eta, capped[column], "s", mfc="none", color=line.get_color(), label=f"{label}: max_steps")
    diverged = gd[gd.status == "diverged"]
    if len(diverged):
        ax.plot(diverged.eta, np.ones(len(diverged)), "x", color="red", ms=8, transform=ax.get_xaxis_transform(),
                clip_on=False, label="diverged")
    return line


def _eta_c_line(ax, gd: pd.DataFrame):
    eta_c = gd.eta_c.mean()
    ax.axvline(eta_c, color="grey", ls=":", lw=1)
    ax.text(eta_c, 0.02, " η_c", transform=ax.get_xaxis_transform(), color="grey")


def sharpness_vs_eta(runs: pd.DataFrame, ax, setup: str):
    gd, gf = runs[(runs.setup == setup) & (runs.method == "gd")], runs[(runs.setup == setup) & (runs.method == "gf")]
    _band(ax, gd, "sharpness", "GD final S")
    etas = np.geomspace(gd.eta.min(), gd.eta.max(), 100)
    ax.plot(etas, 2 / etas, "k--", lw=1, label="2/η")
    ax.axhline(gf.sharpness.mean(), color="C2", ls="-.", lw=1, label="GF final S")
    if "eta_transition" in gd and gd.eta_transition.notna().any():
        per_seed = gd.groupby("seed").eta_transition.first().dropna()  # mean line, min–max span over seeds
        ax.axvline(per_seed.mean(), color="C3", ls="-", lw=1, alpha=0.6, label="observed transition")
        if per_seed.nunique() > 1:
            ax.axvspan(per_seed.min(), per_seed.max(), color="C3", alpha=0.1, lw=0)
    _eta_c_line(ax, gd)
    _log_eta_axis(ax)
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(yscale="log", xlabel="η", ylabel="sharpness S", title=setup)


def norms_vs_eta(runs: pd.DataFrame, axes, setup: str):
    gd = runs[(runs.setup == setup) & (runs.method == "gd")]
    for ax, col, name in zip(axes, ("l1_norm", "l2_norm"), ("ℓ1", "ℓ2")):
        _band(ax, gd, col, f"{name} norm")
        _eta_c_line(ax, gd)
        _log_eta_axis(ax)
        ax.set(xlabel="η", ylabel=f"{name} norm of θ", title=setup)


def test_loss_vs_eta(runs: pd.DataFrame, ax, setup: str):
    gd = runs[(runs.setup == setup) & (runs.method == "gd")]
    _band(ax, gd, "test_loss", "test loss")
    _eta_c_line(ax, gd)
    _log_eta_axis(ax)
    ax.set(xlabel="η", ylabel="test loss", title=setup)


def tradeoff(runs: pd.DataFrame, ax, setup: str):
    gd = runs[(runs.setup == setup) & (runs.method == "gd") & (runs.status != "diverged")]
    sc = ax.scatter(gd.l1_norm, gd.sharpness, c=gd.eta, cmap="viridis",
                    norm=matplotlib.colors.LogNorm(), marker="o", s=30)
    capped = gd[gd.status == "max_steps"]
    ax.scatter(capped.l1_norm, capped.sharpness, facecolors="none", edgecolors="k", marker="s", s=60,
               label="max_steps")
    plt.colorbar(sc, ax=ax, label="η")
    ax.set(yscale="log", xlabel="ℓ1 norm", ylabel="sharpness S", title=setup)


def trajectories(runs: pd.DataFrame, traj: pd.DataFrame, axes, setup: str, ratios: list[float]):
    """Loss and sharpness along the runs whose η/η_c is nearest each requested ratio (seed: the first)."""
    gd = runs[(runs.setup == setup) & (runs.method == "gd")]
    seed = gd.seed.min()
    picked = sorted({float(gd.eta.iloc[(gd.eta_over_eta_c - r).abs().argmin()]) for r in ratios})
    for i, eta in enumerate(picked):
        t = traj[(traj.setup == setup) & (traj.seed == seed) & (traj.method == "gd") & np.isclose(traj.eta, eta)]
        axes[0].plot(t.step, t.train_loss, color=f"C{i}", lw=1, label=f"η={eta:.3g}")
        s = t[t.sharpness.notna()]
        axes[1].plot(s.step, s.sharpness, color=f"C{i}", lw=1)
        axes[1].axhline(2 / eta, color=f"C{i}", ls="--", lw=0.8)
    axes[0].set(yscale="log", xscale="symlog", xlabel="step", ylabel="train loss", title=setup)
    axes[1].set(xscale="symlog", xlabel="step", ylabel="sharpness (dashed: 2/η)")


def draw_all(runs_path, trajectories_path, out_dir, options: dict) -> list[Path]:
    """Write every figure as PNG and PDF into ``out_dir``; returns the paths written."""
    runs, traj = pd.read_parquet(runs_path), pd.read_parquet(trajectories_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setups = sorted(runs.setup.unique())
    written = []

    def save(fig, name):
        for ax in fig.axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        for fmt in ("png", "pdf"):
            fig.savefig(out_dir / f"{name}.{fmt}", dpi=options.get("dpi", 130))
            written.append(out_dir / f"{name}.{fmt}")
        plt.close(fig)

    ratios = options.get("trajectory_ratios", [0.5, 1.0, 2.0, 4.0])
    drawers = [  # (figure, panel rows, draw(column of axes, setup))
        ("sharpness_vs_eta", 1, lambda col, s: sharpness_vs_eta(runs, col[0], s)),
        ("norms_vs_eta", 2, lambda col, s: norms_vs_eta(runs, col, s)),
        ("test_loss_vs_eta", 1, lambda col, s: test_loss_vs_eta(runs, col[0], s)),
        ("sharpness_norm_tradeoff", 1, lambda col, s: tradeoff(runs, col[0], s)),
        ("trajectories", 2, lambda col, s: trajectories(runs, traj, col, s, ratios)),
    ]
    for name, rows, draw in drawers:
        fig, axes = _panels(setups, rows)
        for j, setup in enumerate(setups):
            draw(axes[:, j], setup)
        save(fig, name)
    return written
