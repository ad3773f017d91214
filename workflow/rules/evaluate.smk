# One job per run: its end point's geometry (Lanczos, Hutchinson, norms) and its test metrics, with the data
# and model loaded once. A geometry setting reruns these jobs, and they recompute the test metrics too
# (0.03 s each), which is cheaper than a second process start per run.
rule evaluate:
    input:
        data=data_file,
        init=init_file,
        result=f"{RUN}/result.json",
        theta=f"{RUN}/theta.pt",
    output:
        geometry=f"{RUN}/geometry.json",
        test=f"{RUN}/test.json",
    log:
        f"{R}/logs/evaluate/{{setup}}/seed{{seed}}/{{run}}.log",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=job_mem_mb(),
    params:
        loss=lambda w: setup_of(w)["loss"],
        settings=config["geometry"],
        numerics=NUMERICS,
        dataset=dataset_spec,
        continuation=lambda w: wfconfig.continuation(config["geometry"], setup_of(w)),
    script:
        "../scripts/evaluate.py"
