localrules:
    download_data,


# Run by name on a machine with network (on a cluster: the login node), once:
#   snakemake --cores 1 download_data --configfile CONFIG
# It has no output on purpose: nothing depends on it, so a data_dir staged by hand is used as is and
# a missing dataset stops prepare_data with a message naming this command (no automatic download).
rule download_data:
    log:
        f"{R}/logs/download_data.log",
    conda:
        "../envs/torch.yaml"
    params:
        datasets=datasets_to_download(),
        data_dir=config["data_dir"],
    script:
        "../scripts/download_data.py"


rule prepare_data:
    input:
        user_data_files,
    output:
        f"{R}/{{setup}}/data.pt",
    log:
        f"{R}/logs/prepare_data/{{setup}}.log",
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        dataset=dataset_spec,
        loss=lambda w: setup_of(w)["loss"],
    script:
        "../scripts/prepare_data.py"


rule init_model:
    input:
        data=data_file,
    output:
        f"{R}/{{setup}}/seed{{seed}}/init.pt",
    log:
        f"{R}/logs/init_model/{{setup}}/seed{{seed}}.log",
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        model=lambda w: setup_of(w)["model"],
        seed=lambda w: int(w.seed),
    script:
        "../scripts/init_model.py"
