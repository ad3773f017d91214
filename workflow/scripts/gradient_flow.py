from pathlib import Path

from normsharp.files import log_to
from normsharp.stages import gradient_flow
from normsharp.wfconfig import execution

log_to(snakemake.log[0])
p = snakemake.params
gradient_flow(data_path=snakemake.input.data, init_path=snakemake.input.init, loss=p.loss, settings=p.settings,
              numerics=p.numerics, identity=p.identity, out_dir=Path(snakemake.output.result).parent,
              execution=execution(snakemake.config, snakemake.wildcards.setup, "gf", snakemake.threads))
