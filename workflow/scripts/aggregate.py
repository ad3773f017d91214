from normsharp.stages import aggregate, log_to

log_to(snakemake.log[0])
aggregate(snakemake.params.run_dirs, snakemake.output.runs, snakemake.output.trajectories,
          snakemake.params.transition_tol)
