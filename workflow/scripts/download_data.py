from normsharp.stages import download_data, log_to

log_to(snakemake.log[0])
download_data(snakemake.params.datasets, snakemake.params.data_dir)
