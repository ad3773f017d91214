from normsharp.files import log_to
from normsharp.stages import aggregate

log_to(snakemake.log[0])
aggregate(run_dirs=snakemake.params.run_dirs, runs_path=snakemake.output.runs,
          trajectories_path=snakemake.output.trajectories, transition_tol=snakemake.params.transition_tol,
          spectra_path=snakemake.output.spectra, correlations_path=snakemake.output.correlations)
