"""The figures of the diagonal-linear-network counter-example: GD end points against the closed forms on M.

Drawn for the setups on ``single_point`` data with a ``diagonal_linear`` model, against :mod:`normsharp.theory`.
"""

from __future__ import annotations

import dataclasses
import math

import matplotlib.colors
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from . import theory
from .figures_common import band, eta_c_line, log_eta_axis, panels

MINIMISER_STYLE = {  # kind → (marker, colour, label)
    "norm": ("s", "C0", "β_N: min ‖w‖"),
    "sharpness": ("^", "C3", "β_S: min S"),
    "generalisation": ("*", "C2", "β_G: min G"),
}


def diagonal_instance(spec: dict):
    """The theory instance of a diagonal setup ({'dataset': …, 'model': …}) at its model's depth."""
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
    if inst.d != 2 or not _shared(spec):
        return None
    flow = theory.gradient_flow_limit(inst, float(spec["model"].get("init_scale", 1.0)))
    return [flow if eta < eta_c else theory.eos_point(inst, eta) for eta in etas]


def dln_vs_eta(runs: pd.DataFrame, axes, setup: str, spec: dict):
    """‖w‖₂, sharpness and exact generalisation error G of the GD end points against η, with the values
    of the three minimisers on M (dotted) and, for d = 2, the predicted end points (thin grey)."""
    inst = diagonal_instance(spec)
    mins = theory.minimisers(inst)
    gd = runs[(runs.setup == setup) & (runs.method == "gd")]
    etas = np.geomspace(gd.eta.min(), gd.eta.max(), 200)
    eta_c = float(gd.eta_c.mean())
    predicted = _theory_vs_eta(inst, spec, etas, eta_c)
    quantities = (("l2_norm", "l2_norm", "‖w‖₂ (= ‖θ‖₂)"), ("sharpness", "sharpness", "sharpness S"),
                  ("gen_error", "gen_error", "generalisation error G"))
    for ax, (column, attr, ylabel) in zip(axes, quantities):
        band(ax, gd, column, "GD end", x="eta")
        if _shared(spec) or column == "gen_error":
            for p in (mins.norm, mins.sharpness, mins.generalisation):
                value = getattr(p, attr)
                if value > 0:
                    ax.axhline(value, color=MINIMISER_STYLE[p.kind][1], ls=":", lw=1.2,
                               label=f"{MINIMISER_STYLE[p.kind][2].split(':')[0]}")
        if predicted is not None:
            ax.plot(etas, [getattr(p, attr) if p is not None else math.nan for p in predicted], color="grey",
                    lw=0.8, label="predicted end point")
        eta_c_line(ax, gd)
        log_eta_axis(ax)
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


def draw_diagonal_figures(runs: pd.DataFrame, diagonal: dict, save) -> None:
    """Draw normsharp.registry.DIAGONAL_FIGURES for the setups of ``diagonal`` (setup → {'dataset': …, 'model': …});
    ``save(fig, name)`` writes each."""
    names = sorted(diagonal)
    fig, axes = panels(names, 3)
    for j, setup in enumerate(names):
        dln_vs_eta(runs, axes[:, j], setup, diagonal[setup])
    save(fig, "dln_vs_eta")
    planar = [n for n in names if diagonal_instance(diagonal[n]).d == 2]
    fig, axes = panels(planar or ["none"], 2)
    for j, setup in enumerate(planar):
        dln_zero_loss_set(runs, axes[:, j], setup, diagonal[setup])
    if not planar:
        axes[0, 0].text(0.5, 0.5, "no setup with d = 2", ha="center", va="center")
        for ax in axes[:, 0]:
            ax.set_axis_off()
    save(fig, "dln_zero_loss_set")
