from normsharp.files import log_to
from normsharp.stages import init_model

log_to(snakemake.log[0])
init_model(data_path=snakemake.input.data, model_spec=snakemake.params.model, seed=snakemake.params.seed,
           out_path=snakemake.output[0])
