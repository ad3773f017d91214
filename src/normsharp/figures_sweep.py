"""The figures of a learning-rate sweep, one column of panels per setup, mostly against η/η_c.

Sharpness, norms and test loss against η/η_c, the sharpness–norm trade-off, the phase diagram, the gap to the
gradient flow, and trajectories against the step. Each is registered with :func:`normsharp.figures_common.figure`
under its name in normsharp.registry.FIGURES.
"""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np

from .analysis import locate_test_minimum
from .figures_common import (
    Study,
    band,
    figure,
    has_eta_c,
    plain_log,
    setup_runs,
    sweep_axis,
    sweep_x,
    transition,
    uses_optimizer,
)


def _two_over_eta(ax, gd):
    """The edge the final S meets. Plain GD: 2/η against η/η_c, i.e. s_GF/(η/η_c) at the seeds' mean s_GF.
    Another optimiser: its own c/η (the ``edge`` column, which S plus the optimiser's shift meets), dashed through
    the runs; none for a sweep without η_c (the adaptive methods' edge is on P⁻¹H, not on S)."""
    if not has_eta_c(gd):
        return
    if uses_optimizer(gd):
        edge = gd.sort_values("eta_over_eta_c")
        ax.plot(edge.eta_over_eta_c, edge.edge, "k--", lw=1, label="c/η (its own edge)")
        return
    r = np.geomspace(gd.eta_over_eta_c.min(), gd.eta_over_eta_c.max(), 100)
    ax.plot(r, gd.s_gf.mean() / r, "k--", lw=1, label="2/η")


@figure("sharpness_vs_eta", rows=1)
def sharpness_vs_eta(study: Study, axes, setup: str):
    """Final sharpness of GD against η/η_c, with 2/η, the flow's final S and the observed transition."""
    ax = axes[0]
    gd, gf = setup_runs(study.runs, setup)
    band(ax, gd, "sharpness", "GD final S")
    _two_over_eta(ax, gd)
    ax.axhline(gf.sharpness.mean(), color="C2", ls="-.", lw=1, label="GF final S")
    transition(ax, gd)
    sweep_axis(ax, gd)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set(ylabel="sharpness S", title=setup)


@figure("norms_vs_eta", rows=2)
def norms_vs_eta(study: Study, axes, setup: str):
    """Final ℓ1 and ℓ2 norms of θ against η/η_c, the flow's dash-dotted."""
    gd, gf = setup_runs(study.runs, setup)
    for ax, col, name in zip(axes, ("l1_norm", "l2_norm"), ("ℓ1", "ℓ2")):
        band(ax, gd, col, f"GD {name} norm")
        ax.axhline(gf[col].mean(), color="C2", ls="-.", lw=1, label=f"GF {name} norm")
        sweep_axis(ax, gd)
        ax.set(ylabel=f"{name} norm of θ", title=setup)


MINIMUM_WORDS = {"bracketed": "bracketed", "edge": "at the largest η: not bracketed",
                 "blocked": "at the largest converged η: not bracketed", "lower_edge": "at the smallest η"}


def test_minimum_marks(ax, gd):
    """Each seed's least test loss (:func:`normsharp.analysis.locate_test_minimum`) as a star, labelled with
    where it lies and whether converged runs bracket it."""
    x = sweep_x(gd)
    unit = " η_c" if x == "eta_over_eta_c" else ""
    for seed, runs in gd.groupby("seed"):
        found = locate_test_minimum(runs[x], runs.test_loss, runs.status)
        if found["status"] == "none":
            continue
        who = f" (seed {seed})" if gd.seed.nunique() > 1 else ""
        ax.plot(found["ratio"], found["test_loss"], "*", color="C3", ms=11, mfc="none", mew=1.3, zorder=4,
                label=f"least test loss{who}: {found['ratio']:.4g}{unit}, {MINIMUM_WORDS[found['status']]}")


@figure("test_loss_vs_eta", rows=1)
def test_loss_vs_eta(study: Study, axes, setup: str):
    """Final test loss against η/η_c, the flow's dash-dotted, each seed's least test loss starred."""
    ax = axes[0]
    gd, gf = setup_runs(study.runs, setup)
    band(ax, gd, "test_loss", "GD test loss")
    ax.axhline(gf.test_loss.mean(), color="C2", ls="-.", lw=1, label="GF test loss")
    test_minimum_marks(ax, gd)
    sweep_axis(ax, gd)
    ax.set(ylabel="test loss", title=setup)


@figure("sharpness_norm_tradeoff", rows=1)
def sharpness_norm_tradeoff(study: Study, axes, setup: str):
    """Final sharpness against final ℓ1 norm, GD ends coloured by η/η_c, the flow's end a hollow star."""
    ax = axes[0]
    gd, gf = setup_runs(study.runs, setup)
    gd = gd[gd.status != "diverged"]
    # the GF end hollow and beneath: flow-aligned GD ends lie on it and must stay visible
    ax.plot(gf.l1_norm, gf.sharpness, "*", mfc="none", mec="C3", mew=1.5, ms=18, zorder=1, label="GF end")
    x = sweep_x(gd)
    sc = ax.scatter(gd.l1_norm, gd.sharpness, c=gd[x], cmap="viridis",
                    norm=matplotlib.colors.LogNorm(), marker="o", s=30, zorder=3, label="GD end")
    capped = gd[gd.status == "max_steps"]
    if len(capped):
        ax.scatter(capped.l1_norm, capped.sharpness, facecolors="none", edgecolors="k", marker="s", s=60,
                   label="max_steps")
    bar = plt.colorbar(sc, ax=ax, label="η / η_c" if x == "eta_over_eta_c" else "η")
    plain_log(bar.ax.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 5.0))
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set(xlabel="ℓ1 norm of θ", ylabel="sharpness S", title=setup)


@figure("phase_diagram", rows=3)
def phase_diagram(study: Study, axes, setup: str):
    """The paper's main figure: final S, ℓ1 norm and test loss against η/η_c, GF values dash-dotted, each seed's
    least test loss starred."""
    gd, gf = setup_runs(study.runs, setup)
    for ax, column, ylabel in zip(axes, ("sharpness", "l1_norm", "test_loss"),
                                  ("sharpness S", "ℓ1 norm of θ", "test loss")):
        band(ax, gd, column, "GD end")
        ax.axhline(gf[column].mean(), color="C2", ls="-.", lw=1, label="GF end")
        transition(ax, gd)
        sweep_axis(ax, gd)
        ax.set_ylabel(ylabel)
    _two_over_eta(axes[0], gd)
    test_minimum_marks(axes[2], gd)
    axes[0].set_yscale("log")
    plain_log(axes[0].yaxis)
    axes[0].set_title(setup)


@figure("gap_to_flow", rows=3)
def gap_to_flow(study: Study, axes, setup: str):
    """How far GD ends from the gradient flow's end point, against η/η_c."""
    gd, gf = setup_runs(study.runs, setup)
    at_flow = gf.set_index("seed").reindex(gd.seed)
    gd = gd.assign(rel_sharpness_gap=gd.sharpness_gap_gf / at_flow.sharpness.to_numpy(),
                   loss_gap_percent=100 * gd.train_loss_gap_gf / at_flow.train_loss.to_numpy())
    panels = (("rel_dist_to_gf", "‖θ − θ_GF‖ / ‖θ_GF − θ₀‖", True),
              ("rel_sharpness_gap", "(S − S_GF) / S_GF", False),
              ("loss_gap_percent", "(L − L_GF) / L_GF in %\n(final train loss)", False))
    for ax, (column, ylabel, log) in zip(axes, panels):
        band(ax, gd, column, "GD")
        if log:
            ax.set_yscale("log")
            plain_log(ax.yaxis)
        else:
            ax.axhline(0.0, color="C2", ls="-.", lw=1, label="GF")
        transition(ax, gd)
        sweep_axis(ax, gd)
        ax.set_ylabel(ylabel)
    if has_eta_c(gd):
        r = np.geomspace(gd.eta_over_eta_c.min(), gd.eta_over_eta_c.max(), 100)
        axes[1].plot(r, np.minimum(1 / r - 1, 0), "k--", lw=1, label="(2/η) / S_GF − 1")
    axes[0].set_title(setup)


@figure("trajectories", rows=3)
def trajectories(study: Study, axes, setup: str):
    """Train loss, sharpness and (where recorded) test loss along the GD runs whose η/η_c is nearest each
    ratio of the ``trajectory_ratios`` option (seed: the first), against the step; dashed: 2/η in the run's colour."""
    runs, traj = study.runs, study.trajectories
    ratios = study.options.get("trajectory_ratios", [0.5, 1.0, 2.0, 4.0])
    gd = runs[(runs.setup == setup) & (runs.method == "gd") & (runs.status != "diverged")]
    seed = gd.seed.min()
    gd = gd[gd.seed == seed]
    if has_eta_c(gd):
        picked = sorted({int((gd.eta_over_eta_c - r).abs().to_numpy().argmin()) for r in ratios},
                        key=lambda i: gd.eta.iloc[i])
    else:  # an absolute grid without η_c: as many runs as ratios, spread over the sweep by η
        order = np.argsort(gd.eta.to_numpy())
        picked = sorted({int(order[j]) for j in np.linspace(0, len(order) - 1, len(ratios)).round().astype(int)},
                        key=lambda i: gd.eta.iloc[i])
    own = uses_optimizer(gd) and "opt_sharpness" in traj
    has_test = "test_loss" in traj and traj.test_loss.notna().any()
    for i, row in enumerate(gd.iloc[picked].itertuples()):
        t = traj[(traj.setup == setup) & (traj.seed == seed) & (traj.method == "gd") & np.isclose(traj.eta, row.eta)]
        label = f"η = {row.eta_over_eta_c:.3g} η_c" if has_eta_c(gd) else f"η = {row.eta:.3g}"
        axes[0].plot(t.step, t.train_loss, color=f"C{i}", lw=1, label=label)
        column = "opt_sharpness" if own else "sharpness"
        s = t[t[column].notna()]
        axes[1].plot(s.step, s[column], ".-", color=f"C{i}", lw=0.8, ms=2)
        axes[1].axhline(row.edge if own else 2 / row.eta, color=f"C{i}", ls="--", lw=0.8)
        if has_test and len(axes) > 2:
            e = t[t.test_loss.notna()]
            axes[2].plot(e.step, e.test_loss, color=f"C{i}", lw=1)
    axes[0].set(yscale="log", ylabel="train loss", title=f"{setup} (seed {seed})")
    plain_log(axes[0].yaxis)
    axes[1].set(ylabel="its own sharpness (dashed: c/η)" if own else "sharpness S (dashed: 2/η)")
    if len(axes) > 2:
        axes[2].set(ylabel="test loss")
        if not has_test:
            axes[2].text(0.5, 0.5, "no test loss recorded\n(gd.test_every = 0)", ha="center", va="center",
                         transform=axes[2].transAxes, color="grey")
    for ax in axes:
        ax.set_xlim(left=0)
        ax.set_xlabel("GD step")
