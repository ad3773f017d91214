from pathlib import Path

from normsharp.files import log_to
from normsharp.stages import evaluate
from normsharp.wfconfig import execution

log_to(snakemake.log[0])
p = snakemake.params
evaluate(data_path=snakemake.input.data, init_path=snakemake.input.init, run_dir=Path(snakemake.input.result).parent,
         loss=p.loss, geometry_settings=p.settings, numerics=p.numerics, geometry_path=snakemake.output.geometry,
         test_path=snakemake.output.test, dataset=p.dataset, continuation=p.continuation,
         execution=execution(snakemake.config, threads=snakemake.threads))
