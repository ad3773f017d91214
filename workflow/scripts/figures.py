from normsharp.files import log_to
from normsharp.plots import draw_all

log_to(snakemake.log[0])
draw_all(runs_path=snakemake.input.runs, trajectories_path=snakemake.input.trajectories,
         out_dir=snakemake.params.out_dir, options=snakemake.params.options, diagonal=snakemake.params.diagonal,
         optimizers=snakemake.params.optimizers, spectra_path=snakemake.input.spectra,
         measures=snakemake.params.measures, correlations_path=snakemake.input.correlations)
