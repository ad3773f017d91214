"""Figures from runs.parquet and trajectories.parquet: :func:`draw_all` draws every figure a study has.

The figures live by job: :mod:`normsharp.figures_sweep` (a learning-rate sweep, one column of panels per setup),
:mod:`normsharp.figures_dln` (the diagonal-linear-network counter-example against :mod:`normsharp.theory`),
:mod:`normsharp.figures_optimizers` (the optimisers of a study side by side, each against its own η_c), on
the axes and bands of :mod:`normsharp.figures_common`.

Adding a figure is one function and one name:

1. in a ``figures_*`` module, ``@figure("my_figure", rows=2)`` above ``def my_figure(study, axes, setup)``,
   which draws one setup into ``axes``, a column of ``rows`` panels, from ``study.runs``, ``study.trajectories``
   and ``study.options`` (the config's ``figures`` options);
2. ``"my_figure"`` in :data:`normsharp.registry.FIGURES`, which the workflow declares as the outputs
   figures/my_figure.png and .pdf.

A new ``figures_*`` module is imported below, so that its figures register. :func:`draw_all` refuses a name
of the registry that nothing draws and a drawing that the registry does not list.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import figures_correlations, figures_measures, figures_sweep  # noqa: F401  (register their figures)
from .figures_common import DRAWINGS, Study, panels, save
from .figures_dln import draw_diagonal_figures
from .figures_optimizers import optimizer_edges
from .files import read_parquet
from .registry import DIAGONAL_FIGURES, FIGURES, MEASURE_FIGURES, OPTIMIZER_FIGURES


def draw_all(runs_path, trajectories_path, out_dir, options: dict, diagonal: dict | None = None,
             optimizers: bool = False, spectra_path=None, measures=(), correlations_path=None) -> list[Path]:
    """Write every figure as PNG and PDF into ``out_dir``; returns the paths written.

    ``diagonal`` maps the setups of the diagonal-linear-network counter-example to their
    {'dataset': …, 'model': …} specs; when it is non-empty the :data:`DIAGONAL_FIGURES` are drawn too.
    With ``optimizers`` (a study with an optimiser other than plain GD) the :data:`OPTIMIZER_FIGURES` are drawn;
    ``measures``: the :data:`MEASURE_FIGURES` whose measure the config turns on, from runs.parquet and
    ``spectra_path`` (spectra.parquet); ``correlations_path``: correlations.parquet (the Kendall τ figure).
    """
    unknown = sorted((set(FIGURES) | set(MEASURE_FIGURES)) ^ set(DRAWINGS))
    if unknown:
        raise RuntimeError(f"figures {unknown} are in normsharp.registry.FIGURES or drawn (@figure), not both: "
                           "add the name to the registry, or the drawing to a figures_* module that plots imports")
    spectra = read_parquet(spectra_path) if spectra_path else pd.DataFrame()
    correlations = read_parquet(correlations_path) if correlations_path else pd.DataFrame()
    study = Study(read_parquet(runs_path), read_parquet(trajectories_path), options, spectra, correlations)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setups = sorted(study.runs.setup.unique())
    written = []

    def save_as(fig, name):
        written.extend(save(fig, out_dir, name, options.get("dpi", 130)))

    for name in FIGURES + tuple(measures):
        drawing = DRAWINGS[name]
        fig, axes = panels(setups, drawing.rows, 3.8 if drawing.rows < 3 else 3.0)
        for j, setup in enumerate(setups):
            drawing.draw(study, axes[:, j], setup)
        save_as(fig, name)
    if diagonal:
        draw_diagonal_figures(study.runs, diagonal, save_as)
    if optimizers:
        save_as(optimizer_edges(study.runs), "optimizer_edges")
    drawn = sorted({p.stem for p in written})
    expected = sorted(FIGURES + (DIAGONAL_FIGURES if diagonal else ()) + (OPTIMIZER_FIGURES if optimizers else ())
                      + tuple(measures))
    if drawn != expected:  # the workflow declares the registry's list as the figures rule's outputs
        raise RuntimeError(f"drew {drawn}, but normsharp.registry lists {expected}")
    return written
