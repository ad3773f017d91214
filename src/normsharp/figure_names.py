"""The figures a study draws, named in one place: :mod:`normsharp.plots` draws them and the workflow lists them
as the ``figures`` rule's outputs (``figures/NAME.png`` and ``.pdf``). Imports nothing, so the DAG stays fast."""

FIGURES = ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff", "trajectories",
           "phase_diagram", "gap_to_flow")
# drawn against the closed form, only for diagonal-linear-network setups on single_point data
DIAGONAL_FIGURES = ("dln_zero_loss_set", "dln_vs_eta")
