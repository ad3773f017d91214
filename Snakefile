# normsharp: norm versus sharpness at the Edge of Stability (arXiv 2505.21423).
# Usage: snakemake --cores 2 [--configfile config/experiments/NAME.yaml]


# The quickstart is the default; a --configfile on the command line replaces it (is not merged into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        f"{R}/runs.parquet",
        f"{R}/trajectories.parquet",
        FIGURE_FILES,
        last_rounds(),


include: "workflow/rules/slurm_check.smk"


# Before the first job (in the controller only, also under SLURM: its jobs run with --no-hooks): the plan that
# `normsharp status` reads, then the SLURM requests checked against the partitions.
onstart:
    write_plan()
    if (
        workflow.executor_plugin is not None
        and workflow.executor_plugin.name.endswith("slurm")
    ):
        check_slurm_requests()
