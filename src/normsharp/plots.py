"""Figures from runs.parquet and trajectories.parquet, one panel per setup.

Several seeds give the mean with a min–max band. Runs that did not converge are drawn, not dropped:
'max_steps' as open squares, 'diverged' as red crosses on the top edge of the panel.
Setups of the diagonal-linear-network counter-example get two more figures, drawn against
:mod:`normsharp.theory` (:data:`DIAGONAL_FIGURES`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FIGURES = ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories")
DIAGONAL_FIGURES = ("dln_zero_loss_set", "dln_vs_eta")


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


# ---------------------------------------------------------------------------------------------------
# The diagonal linear network: end points against the closed forms on the zero-loss set M

MINIMISER_STYLE = {  # kind → (marker, colour, label)
    "norm": ("s", "C0", "β_N: min ‖w‖"),
    "sharpness": ("^", "C3", "β_S: min S"),
    "generalisation": ("*", "C2", "β_G: min G"),
}


def diagonal_instance(spec: dict):
    """The theory instance of a diagonal setup ({'dataset': …, 'model': …}) at its model's depth."""
    from . import theory

    inst = theory.instance_of(spec["dataset"])
    depth = int(spec["model"].get("depth", 2))
    return inst if depth == inst.depth else dataclasses.replace(inst, depth=depth)


def _shared(spec: dict) -> bool:
    return spec["model"].get("variant", "shared") == "shared"


def _end_points(runs: pd.DataFrame, setup: str, method: str = "gd") -> pd.DataFrame:
    """Runs of a setup that ended at a finite β (not diverged), with β as a (n, d) array in column 'b'."""
    rows = runs[(runs.setup == setup) & (runs.method == method) & (runs.status != "diverged")].copy()
    rows["b"] = [np.asarray(b, dtype=float) for b in rows.beta]
    return rows[[len(b) > 0 and np.all(np.isfinite(b)) for b in rows.b]]


def _eta_colorbar(mappable, ax):
    axis = plt.colorbar(mappable, ax=ax, label="η").ax.yaxis
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))


def _eta_norm(runs: pd.DataFrame):
    gd = runs[runs.method == "gd"]
    return matplotlib.colors.LogNorm(gd.eta.min(), gd.eta.max())


def dln_zero_loss_set(runs: pd.DataFrame, axes, setup: str, spec: dict):
    """d = 2: M in the w-plane with the three minimisers and the GD end points coloured by η (top);
    ‖w‖₂, S and G along M, each rescaled to [0, 1], with the end points on the G curve (bottom)."""
    from . import theory

    inst = diagonal_instance(spec)
    curve = theory.zero_loss_curve(inst, num=400)
    mins = theory.minimisers(inst)
    gd, gf = _end_points(runs, setup), _end_points(runs, setup, "gf")
    norm = _eta_norm(runs[runs.setup == setup])
    top, bottom = axes
    power = str(inst.depth).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    top.plot(curve.w[:, 0], curve.w[:, 1], "k-", lw=1.2, label=f"M: x₁w₁{power} + x₂w₂{power} = y")
    if _shared(spec):
        alpha = float(spec["model"].get("init_scale", 1.0))
        top.plot([alpha], [alpha], "o", color="grey", ms=5, label="w₀")
    for p in (mins.norm, mins.sharpness, mins.generalisation):
        marker, color, label = MINIMISER_STYLE[p.kind]
        top.plot(*p.w, marker, color=color, ms=14 if marker == "*" else 9, mfc="none", mew=1.8, label=label,
                 zorder=4)
        bottom.axvline(p.beta[0], color=color, ls=":", lw=1.2)
    for _, r in gf.iterrows():
        top.plot(*theory.w_of_beta(r.b, inst.depth), "kx", ms=8, label="GF end")
    if len(gd):
        w = np.stack([theory.w_of_beta(b, inst.depth) for b in gd.b])
        sc = top.scatter(w[:, 0], w[:, 1], c=gd.eta, cmap="viridis", norm=norm, s=28, edgecolors="k",
                         linewidths=0.4, zorder=5, label="GD end")
        _eta_colorbar(sc, top)
        capped = (gd.status == "max_steps").to_numpy()
        if capped.any():
            top.scatter(w[capped, 0], w[capped, 1], facecolors="none", edgecolors="r", marker="s", s=70,
                        label="GD end: max_steps")
    top.set(xlabel="w₁", ylabel="w₂", title=f"{setup}: zero-loss set", aspect="equal")
    top.set_xlim(left=0)
    top.set_ylim(bottom=0)

    def unit(v):
        return (v - v.min()) / (v.max() - v.min())

    for values, label, color in ((curve.l2_norm, "‖w‖₂", "C0"), (curve.sharpness, "S", "C3"),
                                 (curve.gen_error, "G", "C2")):
        bottom.plot(curve.beta1, unit(values), color=color, label=label)
    if len(gd):
        g_lo, g_hi = curve.gen_error.min(), curve.gen_error.max()
        b1 = np.array([b[0] for b in gd.b])
        sc = bottom.scatter(b1, (gd.gen_error - g_lo) / (g_hi - g_lo), c=gd.eta, cmap="viridis", norm=norm, s=28,
                            edgecolors="k", linewidths=0.4, zorder=5)
        _eta_colorbar(sc, bottom)
    bottom.set(xlabel="β₁ along M  (β₂ = (y − x₁β₁)/x₂)", ylabel="rescaled to [0, 1] on M",
               title="dotted: the minimisers")


def _theory_vs_eta(inst, spec: dict, etas: np.ndarray, eta_c: float) -> list | None:
    """d = 2, shared weights: the predicted end point per η — the gradient-flow limit below η_c, the
    point of M with S = 2/η above it (None where that point does not exist)."""
    from . import theory

    if inst.d != 2 or not _shared(spec):
        return None
    flow = theory.gradient_flow_limit(inst, float(spec["model"].get("init_scale", 1.0)))
    return [flow if eta < eta_c else theory.eos_point(inst, eta) for eta in etas]


def dln_vs_eta(runs: pd.DataFrame, axes, setup: str, spec: dict):
    """‖w‖₂, sharpness and exact generalisation error G of the GD end points against η, with the values
    of the three minimisers on M (dotted) and, for d = 2, the predicted end points (thin grey)."""
    from . import theory

    inst = diagonal_instance(spec)
    mins = theory.minimisers(inst)
    gd = runs[(runs.setup == setup) & (runs.method == "gd")]
    etas = np.geomspace(gd.eta.min(), gd.eta.max(), 200)
    eta_c = float(gd.eta_c.mean())
    predicted = _theory_vs_eta(inst, spec, etas, eta_c)
    panels = (("l2_norm", "l2_norm", "‖w‖₂ (= ‖θ‖₂)"), ("sharpness", "sharpness", "sharpness S"),
              ("gen_error", "gen_error", "generalisation error G"))
    for ax, (column, attr, ylabel) in zip(axes, panels):
        _band(ax, gd, column, "GD end")
        if _shared(spec) or column == "gen_error":
            for p in (mins.norm, mins.sharpness, mins.generalisation):
                value = getattr(p, attr)
                if value > 0:
                    ax.axhline(value, color=MINIMISER_STYLE[p.kind][1], ls=":", lw=1.2,
                               label=f"{MINIMISER_STYLE[p.kind][2].split(':')[0]}")
        if predicted is not None:
            ax.plot(etas, [getattr(p, attr) if p is not None else math.nan for p in predicted], color="grey",
                    lw=0.8, label="predicted end point")
        _eta_c_line(ax, gd)
        _log_eta_axis(ax)
        # the sweep spans less than a decade: label 1, 2, 3, 5 × 10^k instead of the decades alone
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
        ax.set(xlabel="η", ylabel=ylabel)
    axes[0].set_title(setup)
    axes[1].plot(etas, 2 / etas, "k--", lw=1, label="2/η")
    s_lo, s_hi = mins.sharpness.sharpness, mins.norm.sharpness
    axes[1].set_ylim(s_lo - 0.1 * (s_hi - s_lo), s_hi + 0.1 * (s_hi - s_lo))
    g_ax = axes[2]
    finite = gd[gd.status != "diverged"]
    g_ax.plot(finite.eta, 2 * finite.test_loss, "o", mfc="none", color="C1", ms=6,
              label="2 × test loss (Monte Carlo)")
    ok = gd[(gd.status == "converged") & gd.gen_error.notna()]
    if len(ok):
        best = ok.loc[ok.gen_error.idxmin()]
        g_ax.plot([best.eta], [best.gen_error], "*", color="C2", ms=14, mec="k",
                  label=f"min G at η = {best.eta_over_eta_c:.3g} η_c")
    g_ax.axvline(mins.eta_star, color="C2", ls="-.", lw=0.8, label="η* = 2/S(β_G)")
    g_ax.set_yscale("log")


def draw_all(runs_path, trajectories_path, out_dir, options: dict, diagonal: dict | None = None) -> list[Path]:
    """Write every figure as PNG and PDF into ``out_dir``; returns the paths written.

    ``diagonal`` maps the setups of the diagonal-linear-network counter-example to their
    {'dataset': …, 'model': …} specs; when it is non-empty the :data:`DIAGONAL_FIGURES` are drawn too.
    """
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
    if diagonal:
        _draw_diagonal(runs, diagonal, save)
    return written


def _draw_diagonal(runs: pd.DataFrame, diagonal: dict, save) -> None:
    names = sorted(diagonal)
    fig, axes = _panels(names, 3)
    for j, setup in enumerate(names):
        dln_vs_eta(runs, axes[:, j], setup, diagonal[setup])
    save(fig, "dln_vs_eta")
    planar = [n for n in names if diagonal_instance(diagonal[n]).d == 2]
    fig, axes = _panels(planar or ["none"], 2)
    for j, setup in enumerate(planar):
        dln_zero_loss_set(runs, axes[:, j], setup, diagonal[setup])
    if not planar:
        axes[0, 0].text(0.5, 0.5, "no setup with d = 2", ha="center", va="center")
        for ax in axes[:, 0]:
            ax.set_axis_off()
    save(fig, "dln_zero_loss_set")
