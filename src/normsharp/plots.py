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

from .registry import DIAGONAL_FIGURES, FIGURES  # noqa: E402


def _plain(value, _pos=None) -> str:
    """Tick label without exponent notation: 0.25, 4, 1e+03 → 1000."""
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0e}"


def _plain_log(axis, subs=(1.0, 2.0, 5.0)):
    """Log-scaled ``axis`` (ax.xaxis or ax.yaxis) with plain labels at 1, 2, 5 × 10^k and unlabelled minors."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _log_eta_axis(ax):
    """Log raw-η axis with plain labels."""
    ax.set_xscale("log")
    _plain_log(ax.xaxis)


def _ratio_axis(ax, eta_c: float):
    """x = η/η_c on a log scale (ticks at powers of 2), η_c marked, raw η (at the seeds' mean η_c) on top."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(1.0, color="grey", ls=":", lw=1, label="η_c = 2/s_GF")
    top = ax.secondary_xaxis("top", functions=(lambda r: r * eta_c, lambda e: e / eta_c))
    _plain_log(top.xaxis)
    top.set_xlabel("η", fontsize=8)
    top.tick_params(labelsize=7)
    ax.set_xlabel("η / η_c")


def _ratio_secondary(ax, eta_c: float):
    """η/η_c on top of a raw-η axis."""
    top = ax.secondary_xaxis("top", functions=(lambda e: e / eta_c, lambda r: r * eta_c))
    top.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, subs=(1.0, 1.5)))
    top.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
    top.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    top.set_xlabel("η / η_c", fontsize=8)
    top.tick_params(labelsize=7)


def _panels(setups: list[str], rows: int = 1, height: float = 3.8):
    fig, axes = plt.subplots(rows, len(setups), figsize=(4.6 * len(setups), height * rows), squeeze=False)
    return fig, axes


def _grid_point(gd: pd.DataFrame) -> pd.Series:
    """The sweep's grid point of each GD run: its multiple of η_c if given so, else its absolute η. Seeds of a
    setup share grid points (not raw η: η_c differs by seed), so they are what seeds are averaged over."""
    rel = gd["eta_relative"] if "eta_relative" in gd else pd.Series(math.nan, index=gd.index)
    return pd.Series([f"r{r!r}" if pd.notna(r) else f"a{e!r}" for r, e in zip(rel, gd.eta)], index=gd.index)


def _band(ax, gd: pd.DataFrame, column: str, label: str, color=None, x: str = "eta_over_eta_c"):
    """Mean over seeds of converged runs with a min–max band, against ``x`` (averaged per grid point);
    max_steps runs as open squares, diverged ones as red crosses on the top edge (legend only if any)."""
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


def _eta_c_line(ax, gd: pd.DataFrame):
    """η_c on a raw-η axis, with η/η_c on top."""
    eta_c = gd.eta_c.mean()
    ax.axvline(eta_c, color="grey", ls=":", lw=1, label="η_c = 2/s_GF")
    _ratio_secondary(ax, eta_c)


def _setup_runs(runs: pd.DataFrame, setup: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    mine = runs[runs.setup == setup]
    return mine[mine.method == "gd"], mine[mine.method == "gf"]


def _two_over_eta(ax, gd: pd.DataFrame):
    """2/η against η/η_c: s_GF/(η/η_c) at the seeds' mean s_GF."""
    r = np.geomspace(gd.eta_over_eta_c.min(), gd.eta_over_eta_c.max(), 100)
    ax.plot(r, gd.s_gf.mean() / r, "k--", lw=1, label="2/η")


def _transition(ax, gd: pd.DataFrame):
    """The observed transition of each seed as η/η_c: mean line, min–max span."""
    if "eta_transition" not in gd or not gd.eta_transition.notna().any():
        return
    per_seed = (gd.eta_transition / gd.eta_c).groupby(gd.seed).first().dropna()
    ax.axvline(per_seed.mean(), color="C3", ls="-", lw=1, alpha=0.6,
               label=f"observed transition {per_seed.mean():.3g} η_c")
    if per_seed.nunique() > 1:
        ax.axvspan(per_seed.min(), per_seed.max(), color="C3", alpha=0.1, lw=0)


def sharpness_vs_eta(runs: pd.DataFrame, ax, setup: str):
    gd, gf = _setup_runs(runs, setup)
    _band(ax, gd, "sharpness", "GD final S")
    _two_over_eta(ax, gd)
    ax.axhline(gf.sharpness.mean(), color="C2", ls="-.", lw=1, label="GF final S")
    _transition(ax, gd)
    _ratio_axis(ax, gd.eta_c.mean())
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set(ylabel="sharpness S", title=setup)


def norms_vs_eta(runs: pd.DataFrame, axes, setup: str):
    gd, gf = _setup_runs(runs, setup)
    for ax, col, name in zip(axes, ("l1_norm", "l2_norm"), ("ℓ1", "ℓ2")):
        _band(ax, gd, col, f"GD {name} norm")
        ax.axhline(gf[col].mean(), color="C2", ls="-.", lw=1, label=f"GF {name} norm")
        _ratio_axis(ax, gd.eta_c.mean())
        ax.set(ylabel=f"{name} norm of θ", title=setup)


def test_loss_vs_eta(runs: pd.DataFrame, ax, setup: str):
    gd, gf = _setup_runs(runs, setup)
    _band(ax, gd, "test_loss", "GD test loss")
    ax.axhline(gf.test_loss.mean(), color="C2", ls="-.", lw=1, label="GF test loss")
    _ratio_axis(ax, gd.eta_c.mean())
    ax.set(ylabel="test loss", title=setup)


def tradeoff(runs: pd.DataFrame, ax, setup: str):
    gd, gf = _setup_runs(runs, setup)
    gd = gd[gd.status != "diverged"]
    # the GF end hollow and beneath: flow-aligned GD ends lie on it and must stay visible
    ax.plot(gf.l1_norm, gf.sharpness, "*", mfc="none", mec="C3", mew=1.5, ms=18, zorder=1, label="GF end")
    sc = ax.scatter(gd.l1_norm, gd.sharpness, c=gd.eta_over_eta_c, cmap="viridis",
                    norm=matplotlib.colors.LogNorm(), marker="o", s=30, zorder=3, label="GD end")
    capped = gd[gd.status == "max_steps"]
    if len(capped):
        ax.scatter(capped.l1_norm, capped.sharpness, facecolors="none", edgecolors="k", marker="s", s=60,
                   label="max_steps")
    bar = plt.colorbar(sc, ax=ax, label="η / η_c")
    _plain_log(bar.ax.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 5.0))
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set(xlabel="ℓ1 norm of θ", ylabel="sharpness S", title=setup)


def phase_diagram(runs: pd.DataFrame, axes, setup: str):
    """The paper's main figure: final S, ℓ1 norm and test loss against η/η_c, GF values dash-dotted."""
    gd, gf = _setup_runs(runs, setup)
    for ax, column, ylabel in zip(axes, ("sharpness", "l1_norm", "test_loss"),
                                  ("sharpness S", "ℓ1 norm of θ", "test loss")):
        _band(ax, gd, column, "GD end")
        ax.axhline(gf[column].mean(), color="C2", ls="-.", lw=1, label="GF end")
        _transition(ax, gd)
        _ratio_axis(ax, gd.eta_c.mean())
        ax.set_ylabel(ylabel)
    _two_over_eta(axes[0], gd)
    axes[0].set_yscale("log")
    _plain_log(axes[0].yaxis)
    axes[0].set_title(setup)


def gap_to_flow(runs: pd.DataFrame, axes, setup: str):
    """How far GD ends from the gradient flow's end point, against η/η_c."""
    gd, gf = _setup_runs(runs, setup)
    at_flow = gf.set_index("seed").reindex(gd.seed)
    gd = gd.assign(rel_sharpness_gap=gd.sharpness_gap_gf / at_flow.sharpness.to_numpy(),
                   loss_gap_percent=100 * gd.train_loss_gap_gf / at_flow.train_loss.to_numpy())
    panels = (("rel_dist_to_gf", "‖θ − θ_GF‖ / ‖θ_GF − θ₀‖", True),
              ("rel_sharpness_gap", "(S − S_GF) / S_GF", False),
              ("loss_gap_percent", "(L − L_GF) / L_GF in %\n(final train loss)", False))
    for ax, (column, ylabel, log) in zip(axes, panels):
        _band(ax, gd, column, "GD")
        if log:
            ax.set_yscale("log")
            _plain_log(ax.yaxis)
        else:
            ax.axhline(0.0, color="C2", ls="-.", lw=1, label="GF")
        _transition(ax, gd)
        _ratio_axis(ax, gd.eta_c.mean())
        ax.set_ylabel(ylabel)
    r = np.geomspace(gd.eta_over_eta_c.min(), gd.eta_over_eta_c.max(), 100)
    axes[1].plot(r, np.minimum(1 / r - 1, 0), "k--", lw=1, label="(2/η) / S_GF − 1")
    axes[0].set_title(setup)


def trajectories(runs: pd.DataFrame, traj: pd.DataFrame, axes, setup: str, ratios: list[float]):
    """Train loss, sharpness and (where recorded) test loss along the GD runs whose η/η_c is nearest each
    requested ratio (seed: the first), against the step; dashed: 2/η in the run's colour."""
    gd = runs[(runs.setup == setup) & (runs.method == "gd") & (runs.status != "diverged")]
    seed = gd.seed.min()
    gd = gd[gd.seed == seed]
    picked = sorted({int((gd.eta_over_eta_c - r).abs().to_numpy().argmin()) for r in ratios},
                    key=lambda i: gd.eta.iloc[i])
    has_test = "test_loss" in traj and traj.test_loss.notna().any()
    for i, row in enumerate(gd.iloc[picked].itertuples()):
        t = traj[(traj.setup == setup) & (traj.seed == seed) & (traj.method == "gd") & np.isclose(traj.eta, row.eta)]
        label = f"η = {row.eta_over_eta_c:.3g} η_c"
        axes[0].plot(t.step, t.train_loss, color=f"C{i}", lw=1, label=label)
        s = t[t.sharpness.notna()]
        axes[1].plot(s.step, s.sharpness, ".-", color=f"C{i}", lw=0.8, ms=2)
        axes[1].axhline(2 / row.eta, color=f"C{i}", ls="--", lw=0.8)
        if has_test and len(axes) > 2:
            e = t[t.test_loss.notna()]
            axes[2].plot(e.step, e.test_loss, color=f"C{i}", lw=1)
    axes[0].set(yscale="log", ylabel="train loss", title=f"{setup} (seed {seed})")
    _plain_log(axes[0].yaxis)
    axes[1].set(ylabel="sharpness S (dashed: 2/η)")
    if len(axes) > 2:
        axes[2].set(ylabel="test loss")
        if not has_test:
            axes[2].text(0.5, 0.5, "no test loss recorded\n(gd.test_every = 0)", ha="center", va="center",
                         transform=axes[2].transAxes, color="grey")
    for ax in axes:
        ax.set_xlim(left=0)
        ax.set_xlabel("GD step")


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
        _band(ax, gd, column, "GD end", x="eta")
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
        shown = set()  # a legend only where it names something no legend above it named
        for ax in fig.axes:
            labels = set(ax.get_legend_handles_labels()[1])
            if labels and not labels <= shown:
                ax.legend(fontsize=7)
                shown |= labels
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
        ("trajectories", 3, lambda col, s: trajectories(runs, traj, col, s, ratios)),
        ("phase_diagram", 3, lambda col, s: phase_diagram(runs, col, s)),
        ("gap_to_flow", 3, lambda col, s: gap_to_flow(runs, col, s)),
    ]
    for name, rows, draw in drawers:
        fig, axes = _panels(setups, rows, 3.8 if rows < 3 else 3.0)
        for j, setup in enumerate(setups):
            draw(axes[:, j], setup)
        save(fig, name)
    if diagonal:
        _draw_diagonal(runs, diagonal, save)
    drawn = sorted({p.stem for p in written})
    expected = sorted(FIGURES + (DIAGONAL_FIGURES if diagonal else ()))
    if drawn != expected:  # the workflow declares the registry's list as the figures rule's outputs
        raise RuntimeError(f"drew {drawn}, but normsharp.registry lists {expected}")
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
