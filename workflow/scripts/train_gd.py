from pathlib import Path

from normsharp.stages import log_to, train_gd

log_to(snakemake.log[0])
p = snakemake.params
train_gd(snakemake.input.data, snakemake.input.init, snakemake.input.gf, p.loss, p.eta, p.settings, p.numerics,
         p.identity, Path(snakemake.output.result).parent)
