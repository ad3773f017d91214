from normsharp.stages import init_model, log_to

log_to(snakemake.log[0])
init_model(snakemake.input.data, snakemake.params.model, snakemake.params.seed, snakemake.output[0])
