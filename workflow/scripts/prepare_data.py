from normsharp.files import log_to
from normsharp.stages import prepare_data
from normsharp.wfconfig import execution

log_to(snakemake.log[0])
prepare_data(spec=snakemake.params.dataset, loss=snakemake.params.loss, out_path=snakemake.output[0],
             data_dir=execution(snakemake.config)["data_dir"])
