from pathlib import Path

from normsharp.files import log_to
from normsharp.stages import train_gd
from normsharp.wfconfig import execution

log_to(snakemake.log[0])
p = snakemake.params
train_gd(data_path=snakemake.input.data, init_path=snakemake.input.init, gf_result_path=snakemake.input.gf,
         loss=p.loss, eta_spec=p.eta, settings=p.settings, numerics=p.numerics, identity=p.identity,
         out_dir=Path(snakemake.output.result).parent,
         execution=execution(snakemake.config, snakemake.wildcards.setup, "gd", snakemake.threads))
