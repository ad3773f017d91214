rule gradient_flow:
    input:
        data=data_file,
        init=init_file,
    output:
        result=f"{R}/{{setup}}/seed{{seed}}/gf/result.json",
        theta=f"{R}/{{setup}}/seed{{seed}}/gf/theta.pt",
        trajectory=f"{R}/{{setup}}/seed{{seed}}/gf/trajectory.parquet",
    log:
        f"{R}/logs/gradient_flow/{{setup}}/seed{{seed}}.log",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=job_mem_mb(),
    params:
        loss=lambda w: setup_of(w)["loss"],
        settings=dynamics_settings("gf"),
        numerics=NUMERICS,
        identity=identity,
    script:
        "../scripts/gradient_flow.py"


rule train_gd:
    input:
        data=data_file,
        init=init_file,
        gf=f"{R}/{{setup}}/seed{{seed}}/gf/result.json",
    output:
        result=f"{RUN}/result.json",
        theta=f"{RUN}/theta.pt",
        trajectory=f"{RUN}/trajectory.parquet",
    log:
        f"{R}/logs/train_gd/{{setup}}/seed{{seed}}/{{run}}.log",
    wildcard_constraints:
        run=r"[ra][0-9.e+-]+",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=job_mem_mb(),
    params:
        loss=lambda w: setup_of(w)["loss"],
        eta=eta_spec,
        settings=dynamics_settings("gd"),
        numerics=NUMERICS,
        identity=identity,
    script:
        "../scripts/train_gd.py"
