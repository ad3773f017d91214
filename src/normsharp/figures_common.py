"""What every figure shares: the study it draws from, the registration of a figure, its axes and its bands.

A figure draws one setup into a column of ``rows`` panels; :func:`figure` registers such a function under its
name in :data:`normsharp.registry.FIGURES`, and :func:`normsharp.plots.draw_all` lays out one column per setup.
Several seeds give the mean with a min–max band (:func:`band`); runs that did not converge are drawn, not
dropped: 'max_steps' as open squares, 'diverged' as red crosses on the top edge of the panel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only, never a window (pyplot picks its backend at the first figure, not at import)


@dataclass(frozen=True)
class Study:
    """What a figure draws from: runs.parquet, trajectories.parquet, the config's ``figures`` options,
    spectra.parquet (the spectral densities; empty without geometry.density) and correlations.parquet (each
    measure's Kendall τ with the test loss)."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame = field(default_factory=pd.DataFrame)
    options: dict = field(default_factory=dict)
    spectra: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlations: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Figure:
    """A registered figure: ``rows`` panels per setup, filled by ``draw(study, axes, setup)`` (axes: one column)."""

    rows: int
    draw: Callable[[Study, np.ndarray, str], None]


# figure name → its drawing, filled by @figure in the modules that normsharp.plots imports
DRAWINGS: dict[str, Figure] = {}


def figure(name: str, rows: int = 1):
    """Register ``draw(study, axes, setup)`` as the figure ``name`` (a name of normsharp.registry.FIGURES)."""

    def register(draw):
        known = DRAWINGS.get(name)
        if known and (known.draw.__module__, known.draw.__qualname__) != (draw.__module__, draw.__qualname__):
            raise ValueError(f"figure {name!r} is drawn by {known.draw.__module__}.{known.draw.__qualname__} already")
        DRAWINGS[name] = Figure(rows, draw)
        return draw

    return register


def panels(setups: list[str], rows: int = 1, height: float = 3.8):
    """One column of ``rows`` panels per setup."""
    fig, axes = plt.subplots(rows, len(setups), figsize=(4.6 * len(setups), height * rows), squeeze=False)
    return fig, axes


def save(fig, out_dir: Path, name: str, dpi: float) -> list[Path]:
    """Write ``fig`` as out_dir/NAME.png and .pdf and close it; a legend only in the panels that name something
    no legend above them named."""
    shown = set()
    for ax in fig.axes:
        labels = set(ax.get_legend_handles_labels()[1])
        if labels and not labels <= shown:
            ax.legend(fontsize=7)
            shown |= labels
    fig.tight_layout()
    paths = [out_dir / f"{name}.{fmt}" for fmt in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return paths


def setup_runs(runs: pd.DataFrame, setup: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(GD runs, GF runs) of a setup."""
    mine = runs[runs.setup == setup]
    return mine[mine.method == "gd"], mine[mine.method == "gf"]


# ---------------------------------------------------------------------------------------------------
# Axes


def plain(value, _pos=None) -> str:
    """Tick label without exponent notation: 0.25, 4, 1e+03 → 1000."""
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0e}"


def plain_log(axis, subs=(1.0, 2.0, 5.0)):
    """Log-scaled ``axis`` (ax.xaxis or ax.yaxis) with plain labels at 1, 2, 5 × 10^k and unlabelled minors."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def log_eta_axis(ax):
    """Log raw-η axis with plain labels."""
    ax.set_xscale("log")
    plain_log(ax.xaxis)


def ratio_axis(ax, eta_c: float):
    """x = η/η_c on a log scale (ticks at powers of 2), η_c marked, raw η (at the seeds' mean η_c) on top."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(1.0, color="grey", ls=":", lw=1, label="η_c = 2/s_GF")
    top = ax.secondary_xaxis("top", functions=(lambda r: r * eta_c, lambda e: e / eta_c))
    plain_log(top.xaxis)
    top.set_xlabel("η", fontsize=8)
    top.tick_params(labelsize=7)
    ax.set_xlabel("η / η_c")


def has_eta_c(gd: pd.DataFrame) -> bool:
    """Whether the sweep has a predicted η_c (not the adaptive optimisers, whose grid is absolute)."""
    return bool(np.isfinite(gd.eta_c.to_numpy(dtype=float)).any())


def uses_optimizer(gd: pd.DataFrame) -> bool:
    """Whether the runs used an optimiser other than plain GD (runs written before the key are plain GD)."""
    return "optimizer" in gd and bool((gd.optimizer.fillna("gd") != "gd").any())


def sweep_x(gd: pd.DataFrame) -> str:
    """The column a sweep is drawn against: η/η_c, or η where the optimiser has no η_c."""
    return "eta_over_eta_c" if has_eta_c(gd) else "eta"


def sweep_axis(ax, gd: pd.DataFrame):
    """:func:`ratio_axis` at the seeds' mean η_c, or a log η axis for a sweep without η_c."""
    if has_eta_c(gd):
        ratio_axis(ax, gd.eta_c.mean())
    else:
        log_eta_axis(ax)
        ax.set_xlabel("η (absolute grid: this optimiser has no η_c)")


def _ratio_secondary(ax, eta_c: float):
    """η/η_c on top of a raw-η axis."""
    top = ax.secondary_xaxis("top", functions=(lambda e: e / eta_c, lambda r: r * eta_c))
    top.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, subs=(1.0, 1.5)))
    top.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain))
    top.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    top.set_xlabel("η / η_c", fontsize=8)
    top.tick_params(labelsize=7)


def eta_c_line(ax, gd: pd.DataFrame):
    """η_c on a raw-η axis, with η/η_c on top."""
    eta_c = gd.eta_c.mean()
    ax.axvline(eta_c, color="grey", ls=":", lw=1, label="η_c = 2/s_GF")
    _ratio_secondary(ax, eta_c)


# ---------------------------------------------------------------------------------------------------
# Seeds: a mean line with a min–max band; the observed transition


def _grid_point(gd: pd.DataFrame) -> pd.Series:
    """The sweep's grid point of each GD run: its multiple of η_c if given so, else its absolute η. Seeds of a
    setup share grid points (not raw η: η_c differs by seed), so they are what seeds are averaged over."""
    rel = gd["eta_relative"] if "eta_relative" in gd else pd.Series(math.nan, index=gd.index)
    return pd.Series([f"r{r!r}" if pd.notna(r) else f"a{e!r}" for r, e in zip(rel, gd.eta)], index=gd.index)


def band(ax, gd: pd.DataFrame, column: str, label: str, color=None, x: str | None = None):
    """Mean over seeds of converged runs with a min–max band, against ``x`` (default :func:`sweep_x`; averaged
    per grid point); max_steps runs as open squares, diverged ones as red crosses on the top edge (legend only if
    any)."""
    x = x or sweep_x(gd)
    ok = gd[gd.status == "converged"]
    stats = ok.groupby(_grid_point(ok)).agg(x=(x, "mean"), mean=(column, "mean"), min=(column, "min"),
                                            max=(column, "max")).sort_values("x")
    line = ax.plot(stats.x, stats["mean"], "o-", ms=3.5, lw=1.2, label=label, color=color)[0]
    if ok.seed.nunique() > 1:
        ax.fill_between(stats.x, stats["min"], stats["max"], alpha=0.25, color=line.get_color(), lw=0)
    capped = gd[gd.status == "max_steps"]
    if len(capped):
        ax.plot(capped[x], capped[column], "s", mfc="none", color=line.get_color(), label=f"{label}: max_steps")
    diverged = gd[gd.status == "diverged"]
    if len(diverged):
        ax.plot(diverged[x], np.ones(len(diverged)), "x", color="red", ms=8, transform=ax.get_xaxis_transform(),
                clip_on=False, label="diverged")
    return line


def transition(ax, gd: pd.DataFrame):
    """The observed transition of each seed as η/η_c: mean line, min–max span."""
    if "eta_transition" not in gd or not gd.eta_transition.notna().any():
        return
    per_seed = (gd.eta_transition / gd.eta_c).groupby(gd.seed).first().dropna()
    ax.axvline(per_seed.mean(), color="C3", ls="-", lw=1, alpha=0.6,
               label=f"observed transition {per_seed.mean():.3g} η_c")
    if per_seed.nunique() > 1:
        ax.axvspan(per_seed.min(), per_seed.max(), color="C3", alpha=0.1, lw=0)
