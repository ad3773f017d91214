rule prepare_data:
    output:
        f"{R}/{{setup}}/data.pt",
    log:
        f"{R}/logs/prepare_data/{{setup}}.log",
    conda:
        "../envs/torch.yaml"
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
    params:
        model=lambda w: setup_of(w)["model"],
        seed=lambda w: int(w.seed),
    script:
        "../scripts/init_model.py"
