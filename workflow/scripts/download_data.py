from normsharp.files import log_to
from normsharp.stages import download_data

log_to(snakemake.log[0])
download_data(names=snakemake.params.datasets, data_dir=snakemake.params.data_dir)
