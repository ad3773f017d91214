from normsharp.plots import draw_all
from normsharp.stages import log_to

log_to(snakemake.log[0])
draw_all(snakemake.input.runs, snakemake.input.trajectories, snakemake.params.out_dir, snakemake.params.options,
         snakemake.params.diagonal)
