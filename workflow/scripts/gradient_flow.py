from pathlib import Path

from normsharp.stages import gradient_flow, log_to

log_to(snakemake.log[0])
p = snakemake.params
gradient_flow(snakemake.input.data, snakemake.input.init, p.loss, p.settings, p.numerics, p.identity,
              Path(snakemake.output.result).parent)
