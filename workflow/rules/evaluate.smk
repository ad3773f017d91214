rule evaluate_geometry:
    input:
        data=data_file,
        init=init_file,
        result=f"{RUN}/result.json",
        theta=f"{RUN}/theta.pt",
    output:
        f"{RUN}/geometry.json",
    log:
        f"{R}/logs/evaluate_geometry/{{setup}}/seed{{seed}}/{{run}}.log",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=job_mem_mb(),
    params:
        loss=lambda w: setup_of(w)["loss"],
        settings=config["geometry"],
        numerics=NUMERICS,
    script:
        "../scripts/evaluate_geometry.py"


rule evaluate_test:
    input:
        data=data_file,
        init=init_file,
        result=f"{RUN}/result.json",
        theta=f"{RUN}/theta.pt",
    output:
        f"{RUN}/test.json",
    log:
        f"{R}/logs/evaluate_test/{{setup}}/seed{{seed}}/{{run}}.log",
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        loss=lambda w: setup_of(w)["loss"],
        numerics=NUMERICS,
        dataset=dataset_spec,
    script:
        "../scripts/evaluate_test.py"
