from pathlib import Path

from normsharp.files import log_to
from normsharp.stages import refine_eta

log_to(snakemake.log[0])
refine_eta(run_dirs=[Path(f).parent for f in snakemake.input.result], settings=snakemake.params.settings,
           transition_tol=snakemake.params.transition_tol, out_path=snakemake.output[0])
