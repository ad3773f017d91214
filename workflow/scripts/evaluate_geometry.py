from pathlib import Path

from normsharp.stages import evaluate_geometry, log_to

log_to(snakemake.log[0])
p = snakemake.params
evaluate_geometry(snakemake.input.data, snakemake.input.init, Path(snakemake.input.result).parent, p.loss,
                  p.settings, p.numerics, snakemake.output[0])
