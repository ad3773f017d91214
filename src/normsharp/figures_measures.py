"""The figures of the sharpness measures beyond max|λ| (docs/measures.md), one column of panels per setup.

The Hutchinson trace against η/η_c (always: the trace is always computed), and, only where the config turns the
measure on (normsharp.registry.MEASURE_FIGURES): the spectral density at a few η, the adaptive sharpness and
the per-layer block sharpness against η/η_c, and S and ℓ1 of the raw, averaged and continued end points.
"""

from __future__ import annotations

import math

import numpy as np

from .figures_common import Study, band, figure, has_eta_c, plain_log, setup_runs, sweep_axis, sweep_x, transition
from .spectrum import density


@figure("trace_vs_eta", rows=1)
def trace_vs_eta(study: Study, axes, setup: str):
    """Hutchinson trace tr(H) of the end point against η/η_c, each run's ±1 standard error as a bar."""
    ax = axes[0]
    gd, gf = setup_runs(study.runs, setup)
    line = band(ax, gd, "trace", "GD trace tr(H)")
    ok = gd[gd.status == "converged"]
    if "trace_stderr" in ok and len(ok):
        ax.errorbar(ok[sweep_x(gd)], ok.trace, yerr=ok.trace_stderr, fmt="none", ecolor=line.get_color(),
                    elinewidth=0.8, capsize=2)
    ax.axhline(gf.trace.mean(), color="C2", ls="-.", lw=1, label="GF trace")
    transition(ax, gd)
    sweep_axis(ax, gd)
    ax.set(ylabel="trace of the Hessian (Hutchinson, ±1 s.e.)", title=setup)


def _drawn_runs(gd, ratios):
    """The converged GD runs of the first seed nearest each η/η_c of ``ratios`` (spread over η without η_c)."""
    gd = gd[(gd.status != "diverged") & (gd.seed == gd.seed.min())]
    if gd.empty:
        return gd
    if has_eta_c(gd):
        picked = {int((gd.eta_over_eta_c - r).abs().to_numpy().argmin()) for r in ratios}
    else:
        order = np.argsort(gd.eta.to_numpy())
        picked = {int(order[j]) for j in np.linspace(0, len(order) - 1, len(ratios)).round().astype(int)}
    return gd.iloc[sorted(picked)].sort_values("eta")


@figure("spectral_density", rows=1)
def spectral_density(study: Study, axes, setup: str):
    """The Hessian's spectral density φ_σ(t) (stochastic Lanczos quadrature, a Gaussian of width σ =
    ``density_width`` × the drawn range) at the end points nearest the ``trajectory_ratios`` and the flow's,
    log-scaled; dotted: 2/η of each GD run."""
    ax = axes[0]
    spectra = study.spectra
    gd, gf = setup_runs(study.runs, setup)
    drawn = [(row, f"η = {row.eta_over_eta_c:.3g} η_c" if has_eta_c(gd) else f"η = {row.eta:.3g}")
             for row in _drawn_runs(gd, study.options.get("trajectory_ratios", [0.5, 1.0, 2.0, 4.0])).itertuples()]
    drawn += [(row, "GF") for row in gf[gf.seed == gf.seed.min()].itertuples()] if len(gf) else []
    curves = []
    for row, label in drawn:
        mine = spectra[(spectra.setup == setup) & (spectra.seed == row.seed) & (spectra.method == row.method)] \
            if len(spectra) else spectra
        if row.method == "gd" and len(mine):
            mine = mine[np.isclose(mine.eta, row.eta)]
        if len(mine):
            curves.append((row, label, mine))
    if not curves:
        ax.text(0.5, 0.5, "no spectral density\n(geometry.density.probes = 0)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
        ax.set(title=setup)
        return
    lo = min(float(c[2].node.min()) for c in curves)
    hi = max(float(c[2].node.max()) for c in curves)
    width = study.options.get("density_width", 0.01) * max(hi - lo, 1e-12)
    t = np.linspace(lo - 5 * width, hi + 5 * width, 2000)
    colors = iter(f"C{i}" for i in range(20) if i != 2)  # C2 is the flow's, as in every figure
    for row, label, mine in curves:
        probes = [g for _, g in mine.groupby("probe")]
        phi = density(t, [g.node.to_numpy() for g in probes], [g.weight.to_numpy() for g in probes], width)
        color = "C2" if row.method == "gf" else next(colors)
        ax.plot(t, np.maximum(phi, 1e-12), color=color, ls="-." if row.method == "gf" else "-", lw=1, label=label)
        if row.method == "gd" and math.isfinite(row.eta):
            ax.axvline(2 / row.eta, color=color, ls=":", lw=0.8)
    ax.set_xlim(t[0], t[-1])  # 2/η of the runs far below η_c lies off the spectrum
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-5 * max(1.0, ax.get_ylim()[1]))
    ax.set(xlabel="eigenvalue t of the Hessian (dotted: 2/η)", ylabel="spectral density φ(t) (log)",
           title=f"{setup} (σ = {width:.3g})")


@figure("adaptive_sharpness_vs_eta", rows=2)
def adaptive_sharpness_vs_eta(study: Study, axes, setup: str):
    """Worst-case and average-case adaptive sharpness (Andriushchenko et al. 2023) against η/η_c."""
    gd, gf = setup_runs(study.runs, setup)
    for ax, column, name in zip(axes, ("adaptive_sharpness_max", "adaptive_sharpness_avg"),
                                ("worst-case", "average-case")):
        band(ax, gd, column, f"GD {name}")
        ax.axhline(gf[column].mean(), color="C2", ls="-.", lw=1, label=f"GF {name}")
        transition(ax, gd)
        sweep_axis(ax, gd)
        ax.set_ylabel(f"adaptive sharpness, {name}\nL(θ + δ) − L(θ)")
    axes[0].set_title(setup)


@figure("layer_sharpness_vs_eta", rows=1)
def layer_sharpness_vs_eta(study: Study, axes, setup: str):
    """The top-|λ| of each layer's Hessian block against η/η_c, with the whole Hessian's S dashed."""
    ax = axes[0]
    gd, gf = setup_runs(study.runs, setup)
    names = next((list(n) for n in gd.layer_names if len(n)), []) if "layer_names" in gd else []
    for i, name in enumerate(names):
        column = f"_layer_{i}"
        gd = gd.assign(**{column: [v[i] if len(v) > i else math.nan for v in gd.layer_sharpness]})
        band(ax, gd, column, f"layer {name}", color=f"C{i}")
    band(ax, gd, "sharpness", "whole Hessian S", color="k").set_linestyle("--")
    transition(ax, gd)
    sweep_axis(ax, gd)
    ok = gd[gd.status == "converged"]
    values = np.concatenate([np.asarray(v, dtype=float) for v in ok.layer_sharpness] + [ok.sharpness.to_numpy()])
    if len(values) and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    ax.set(ylabel="top |λ| of the layer's Hessian block", title=setup)


@figure("end_points_vs_eta", rows=2)
def end_points_vs_eta(study: Study, axes, setup: str):
    """Is the growth real? S (top) and ℓ1 (bottom) of the raw end point θ_K, the average θ̄ of the iterates over
    the window and the gradient flow continued from θ_K (geometry.end_points) against η/η_c; dotted: 2/η of the
    runs at the Edge of Stability."""
    gd, gf = setup_runs(study.runs, setup)
    measured = gd[gd.avg_l1_norm.notna() | gd.cont_l1_norm.notna()] if "avg_l1_norm" in gd else gd.iloc[:0]
    x = sweep_x(gd)
    for ax, measure, name in zip(axes, ("sharpness", "l1_norm"), ("sharpness S = max|λ|", "ℓ1 norm of θ")):
        band(ax, gd, measure, "raw end point θ_K", color="C0")
        if len(measured):
            band(ax, measured, f"avg_{measure}", "averaged θ̄ (window)", color="C1")
            band(ax, measured, f"cont_{measure}", "continued by gradient flow", color="C4")
        ax.axhline(gf[measure].mean(), color="C2", ls="-.", lw=1, label=f"GF {name.split()[0]}")
        transition(ax, gd)
        sweep_axis(ax, gd)
        ax.set_ylabel(name)
    eos = gd[(gd.status == "converged") & (gd.regime == "eos")].sort_values(x)
    if len(eos):  # where S meets 2/η (below η_c 2/η is far above S and would squash the panel)
        axes[0].plot(eos[x], 2 / eos.eta, ":", color="grey", lw=1, label="2/η")
    if not len(measured):
        axes[0].text(0.5, 0.9, "no run at the Edge of Stability measured", ha="center", transform=axes[0].transAxes,
                     color="grey")
    axes[0].set_title(setup)
