from pathlib import Path

from normsharp.stages import log_to, refine_eta

log_to(snakemake.log[0])
run_dirs = [Path(f).parent for f in snakemake.input[::3]]  # result.json, geometry.json, test.json per run
refine_eta(run_dirs, snakemake.params.settings, snakemake.params.transition_tol, snakemake.output[0])
