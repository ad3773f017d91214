rule aggregate:
    input:
        [
            f"{d}/{f}"
            for d in all_run_dirs()
            for f in (
                "result.json",
                "geometry.json",
                "test.json",
                "trajectory.parquet",
            )
        ],
    output:
        runs=f"{R}/runs.parquet",
        trajectories=f"{R}/trajectories.parquet",
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        run_dirs=all_run_dirs(),
        transition_tol=config["transition_tol"],
    script:
        "../scripts/aggregate.py"


rule figures:
    input:
        runs=f"{R}/runs.parquet",
        trajectories=f"{R}/trajectories.parquet",
    output:
        [
            report(
                f"{R}/figures/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory=ext.upper(),
            )
            for name in FIGURE_NAMES
            for ext in ("png", "pdf")
        ],
    log:
        f"{R}/logs/figures.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        options=config["figures"],
        diagonal=DIAGONAL_SETUPS,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    script:
        "../scripts/figures.py"
