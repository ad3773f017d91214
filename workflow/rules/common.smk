# Config inheritance and validation, paths, the η grid, and each job's own slice of the config.
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

# Scripts import the library from this checkout (also inside conda envs and on cluster nodes).
# The workflow sets PYTHONPATH for its jobs instead of requiring it from the user: no `envvars:`.
# The repository's root from this file's place (workflow/rules/common.smk), not workflow.basedir: used as a
# Snakemake module (docs/module.md), workflow.basedir is the calling project's directory.
NORMSHARP_ROOT = Path(workflow.current_basedir).parents[1]
_paths = [str(NORMSHARP_ROOT / "src"), os.environ.get("PYTHONPATH")]
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _paths if p))
# The workflow itself reads the library's names and memory model (modules importing only the standard library).
sys.path.insert(0, _paths[0])
from normsharp import resources
from normsharp.errors import CorruptFileError
from normsharp.files import corrupt, read_json
from normsharp.registry import (
    DIAGONAL_FIGURES,
    DOWNLOADABLE,
    FIGURES,
    OPTIMIZER_FIGURES,
)

# The config's canonical form and the run names of an η grid (pure functions, no Snakemake).
from normsharp import wfconfig
from normsharp.wfconfig import canonical, prepare_config

# Canonical settings (normsharp.wfconfig): a config that means the same but is spelled otherwise (keys in
# another order, 1e-3 for 0.001, 1 for 1.0, a default written out) must not rerun finished jobs. Setups inherit
# eta/gd/gf, numbers take the schema's form, validate fills the defaults, every mapping gets sorted keys; input
# functions that build a dict return it through canonical().
prepare_config(
    config,
    yaml.safe_load(
        (NORMSHARP_ROOT / "workflow/schemas/config.schema.yaml").read_text()
    ),
    lambda c: validate(c, "../schemas/config.schema.yaml"),
)

R = f"{config['results_dir']}/{config['experiment']}"
RUN = f"{R}/{{setup}}/seed{{seed}}/{{run}}"
# The science of the numerics: dtype. The execution settings (wfconfig.EXECUTION: device, threads, chunk_size,
# checkpoint_every, paths, progress_seconds) are no job's params, so changing them reruns nothing; the scripts read
# them from the config (wfconfig.execution) and the runs record what they used.
NUMERICS = {"dtype": config["dtype"]}
FIGURE_NAMES = list(FIGURES)
# The diagonal-linear-network counter-example (single_point data, diagonal_linear model) has a closed form:
# its setups get two more figures, drawn against theory. Known from the config, so the DAG stays static.
DIAGONAL_SETUPS = {
    name: {"dataset": s["dataset"], "model": s["model"]}
    for name, s in config["setups"].items()
    if s["dataset"]["name"] == "single_point"
    and s["model"]["arch"] == "diagonal_linear"
}
if DIAGONAL_SETUPS:
    FIGURE_NAMES += DIAGONAL_FIGURES
# The figures of an opt-in sharpness measure (geometry.density, adaptive_sharpness, layer_sharpness), when on.
MEASURE_FIGURE_NAMES = wfconfig.measure_figures(config["geometry"])
FIGURE_NAMES += MEASURE_FIGURE_NAMES
FIGURE_FILES = [
    f"{R}/figures/{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "pdf")
]


wildcard_constraints:
    setup="[A-Za-z0-9_.-]+",
    seed=r"\d+",
    run=r"gf|[ra][0-9.e+-]+",


def setup_of(wildcards):
    return config["setups"][wildcards.setup]


def gd_runs(setup):
    """Run names of a setup's GD sweep, by increasing η: r<multiple of η_c>, then a<absolute η>."""
    return wfconfig.gd_runs(config["setups"][setup]["eta"])


def eta_spec(wildcards):
    return wfconfig.eta_spec(wildcards.run)


def refine_rounds(setup):
    """How many refinement rounds the setup's η grid asks for (eta.refine.rounds; 0 without refine)."""
    return (config["setups"][setup]["eta"].get("refine") or {}).get("rounds", 0)


def runs_after(setup, seed, rounds):
    """GD run names of a setup and seed after ``rounds`` refinement rounds: the configured grid, then
    what each round's checkpoint (refine/round<k>.json) added. Raises Snakemake's incomplete-checkpoint
    signal until that round has run, so jobs depending on it wait for it."""
    if rounds == 0:
        return gd_runs(setup)
    path = checkpoints.refine_eta.get(setup=setup, seed=seed, round=rounds).output[0]
    try:
        runs = read_json(path).get("runs")
        if not (isinstance(runs, list) and all(isinstance(run, str) for run in runs)):
            raise corrupt(path, "no list of run names under 'runs'")
    except CorruptFileError as err:
        # one line naming the fix, not Snakemake's traceback of this function
        sys.exit(f"CorruptFileError: {err}")
    return runs


def last_rounds():
    """The last refinement round's file of every refined setup and seed: targets of `all`, so a raised
    eta.refine.rounds schedules the new rounds (aggregate alone would not notice a missing round).
    """
    return [
        f"{R}/{s}/seed{seed}/refine/round{refine_rounds(s)}.json"
        for s, cfg in config["setups"].items()
        for seed in sorted(set(cfg["seeds"]))
        if refine_rounds(s)
    ]


def all_run_dirs(wildcards=None):
    return [
        f"{R}/{s}/seed{seed}/{run}"
        for s, cfg in config["setups"].items()
        for seed in sorted(set(cfg["seeds"]))
        for run in ["gf", *runs_after(s, seed, refine_rounds(s))]
    ]


def dataset_spec(wildcards):
    """The setup's dataset (prepare_data adds data_dir, an execution setting, from the config)."""
    return canonical(setup_of(wildcards)["dataset"])


def identity(wildcards):
    s = setup_of(wildcards)
    return canonical(
        {
            "experiment": config["experiment"],
            "setup": wildcards.setup,
            "dataset": s["dataset"]["name"],
            "arch": s["model"]["arch"],
            "loss": s["loss"],
            "seed": int(wildcards.seed),
        }
    )


def dynamics_settings(key):
    """The gd or gf settings of the job's setup, with its ε, without the execution keys."""

    def settings(wildcards):
        s = setup_of(wildcards)
        return canonical(
            {**wfconfig.science(s[key]), "loss_threshold": s["loss_threshold"]}
        )

    return settings


def gd_settings(wildcards):
    """The gd settings of a run; the runs drawn in the trajectories figure (relative η at one of
    figures.trajectory_ratios) sample the sharpness every figures.trajectory_sharpness_every steps.
    """
    settings = dynamics_settings("gd")(wildcards)
    dense = config["figures"]["trajectory_sharpness_every"]
    drawn = wfconfig.eta_spec(wildcards.run).get("relative") in map(
        float, config["figures"]["trajectory_ratios"]
    )
    if dense and drawn:
        settings["sharpness_every"] = min(dense, settings["sharpness_every"] or dense)
    optimizer = OPTIMIZERS[wildcards.setup]
    # plain GD adds nothing: its runs' params stay as they were
    if optimizer != optimizers.GD():
        settings["optimizer"] = canonical(optimizer.as_config())
    return settings


def write_plan():
    """R/plan.json: every setup, its seeds, configured runs and refinement rounds (`normsharp status` reads it,
    with the runs each round adds from its refine/round<k>.json)."""
    from normsharp.status import write_plan as write

    write(
        f"{R}/plan.json",
        {
            s: {
                "seeds": sorted(set(cfg["seeds"])),
                "runs": ["gf", *gd_runs(s)],
                "refine_rounds": refine_rounds(s),
                "loss_threshold": cfg["loss_threshold"],
            }
            for s, cfg in config["setups"].items()
        },
    )


def data_file(wildcards):
    return f"{R}/{wildcards.setup}/data.pt"


def init_file(wildcards):
    return f"{R}/{wildcards.setup}/seed{wildcards.seed}/init.pt"


def datasets_to_download():
    """The downloadable datasets the config's setups use, sorted."""
    return sorted(
        {s["dataset"]["name"] for s in config["setups"].values()} & set(DOWNLOADABLE)
    )


# The user's own data and model (normsharp.custom): import paths are looked up in the working directory first
# (jobs run there, on cluster nodes too), then PYTHONPATH and the installed packages.
from snakemake.exceptions import WorkflowError

os.environ.update(
    PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH"), os.getcwd()])
)
for _name, _setup in config["setups"].items():
    _path = _setup["dataset"].get("path")
    if _setup["dataset"]["name"] == "npz" and not os.path.isfile(_path):
        raise WorkflowError(
            f"setups.{_name}.dataset.path: {_path!r} does not exist (relative to the working "
            f"directory {os.getcwd()}); write the .npz there or fix the path"
        )


# Each setup's optimiser (normsharp.optimizers, no torch loaded), checked now: a bad setting stops the workflow
# with one line naming the key (wfconfig.setup_optimizers).
from normsharp import optimizers
from normsharp.errors import ConfigError

try:
    OPTIMIZERS = wfconfig.setup_optimizers(config["setups"])
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# A study with any optimiser other than plain GD also draws its optimisers side by side (known from the config).
if any(_opt != optimizers.GD() for _opt in OPTIMIZERS.values()):
    FIGURE_NAMES += OPTIMIZER_FIGURES
    FIGURE_FILES += [
        f"{R}/figures/{n}.{ext}" for n in OPTIMIZER_FIGURES for ext in ("png", "pdf")
    ]


def user_data_files(wildcards):
    """The setup's .npz file, so that prepare_data reruns when it changes."""
    dataset = setup_of(wildcards)["dataset"]
    return [dataset["path"]] if dataset["name"] == "npz" else []


# --- SLURM memory requests: normsharp.resources (measured per rule: profiles/README.md) ---
def job_mem_mb(base_mb=resources.BASE_MB):
    """sbatch --mem of a rule's job: attempt × (base_mb + the setup's working set), rounded up to 100 MB."""

    def mem_mb(wildcards, attempt):
        setup = wildcards.get("setup")
        return resources.job_mem_mb(
            config["setups"][setup] if setup else None, attempt, base_mb
        )

    return mem_mb
