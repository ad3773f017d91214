from normsharp.stages import log_to, prepare_data

log_to(snakemake.log[0])
prepare_data(snakemake.params.dataset, snakemake.params.loss, snakemake.output[0])
