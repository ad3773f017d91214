rule aggregate:
    input:
        result=lambda w: [f"{d}/result.json" for d in all_run_dirs()],
        geometry=lambda w: [f"{d}/geometry.json" for d in all_run_dirs()],
        test=lambda w: [f"{d}/test.json" for d in all_run_dirs()],
        trajectory=lambda w: [f"{d}/trajectory.parquet" for d in all_run_dirs()],
        theta=lambda w: [f"{d}/theta.pt" for d in all_run_dirs()],
        inits=[
            f"{R}/{s}/seed{seed}/init.pt"
            for s, cfg in config["setups"].items()
            for seed in cfg["seeds"]
        ],
    output:
        runs=f"{R}/runs.parquet",
        trajectories=f"{R}/trajectories.parquet",
        spectra=f"{R}/spectra.parquet",
        correlations=f"{R}/correlations.parquet",
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=job_mem_mb(),
    params:
        run_dirs=lambda w, input: [os.path.dirname(f) for f in input.result],
        transition_tol=config["transition_tol"],
    script:
        "../scripts/aggregate.py"


rule figures:
    input:
        runs=f"{R}/runs.parquet",
        trajectories=f"{R}/trajectories.parquet",
        spectra=f"{R}/spectra.parquet",
        correlations=f"{R}/correlations.parquet",
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
        optimizers=set(OPTIMIZER_FIGURES) <= set(FIGURE_NAMES),
        measures=MEASURE_FIGURE_NAMES,
        out_dir=lambda w, output: os.path.dirname(output[0]),
    script:
        "../scripts/figures.py"
