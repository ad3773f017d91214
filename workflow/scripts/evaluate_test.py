from pathlib import Path

from normsharp.stages import evaluate_test, log_to

log_to(snakemake.log[0])
p = snakemake.params
evaluate_test(snakemake.input.data, snakemake.input.init, Path(snakemake.input.result).parent, p.loss, p.numerics,
              snakemake.output[0], p.dataset)
