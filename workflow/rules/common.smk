# Config inheritance and validation, paths, the η grid, and each job's own slice of the config.
import json
import os
from pathlib import Path

from snakemake.utils import validate

# Scripts import the library from this checkout (also inside conda envs and on cluster nodes).
# The workflow sets PYTHONPATH for its jobs instead of requiring it from the user: no `envvars:`.
_paths = [str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")]
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _paths if p))

# A setup inherits the experiment's eta/gd/gf and overrides single keys; defaults are filled afterwards.
for _setup in (config.get("setups") or {}).values():
    if isinstance(_setup, dict):
        _setup.setdefault("eta", config.get("eta"))
        for _key in ("gd", "gf"):
            _setup[_key] = {**(config.get(_key) or {}), **(_setup.get(_key) or {})}
validate(config, "../schemas/config.schema.yaml")

R = f"{config['results_dir']}/{config['experiment']}"
RUN = f"{R}/{{setup}}/seed{{seed}}/{{run}}"
NUMERICS = {k: config[k] for k in ("device", "dtype", "threads", "chunk_size")}
FIGURE_NAMES = [
    "sharpness_vs_eta",
    "norms_vs_eta",
    "test_loss_vs_eta",
    "sharpness_norm_tradeoff",
    "trajectories",
    "phase_diagram",
    "gap_to_flow",
]
# The diagonal-linear-network counter-example (single_point data, diagonal_linear model) has a closed form:
# its setups get two more figures, drawn against theory. Known from the config, so the DAG stays static.
DIAGONAL_SETUPS = {
    name: {"dataset": s["dataset"], "model": s["model"]}
    for name, s in config["setups"].items()
    if s["dataset"]["name"] == "single_point"
    and s["model"]["arch"] == "diagonal_linear"
}
if DIAGONAL_SETUPS:
    FIGURE_NAMES += ["dln_zero_loss_set", "dln_vs_eta"]
FIGURE_FILES = [
    f"{R}/figures/{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "pdf")
]
DOWNLOADABLE = (
    "mnist",
    "cifar10",
)  # read from data_dir; fetched by the download_data rule


wildcard_constraints:
    setup="[A-Za-z0-9_.-]+",
    seed=r"\d+",
    run=r"gf|[ra][0-9.e+-]+",


def setup_of(wildcards):
    return config["setups"][wildcards.setup]


def gd_runs(setup):
    """Run names of a setup's GD sweep: r<multiple of η_c> or a<absolute η>."""
    grid = config["setups"][setup]["eta"]
    names = [f"r{float(r)!r}" for r in grid.get("relative", [])]
    names += [f"a{float(a)!r}" for a in grid.get("absolute", [])]
    return list(dict.fromkeys(names))


def eta_spec(wildcards):
    value = float(wildcards.run[1:])
    return {"relative": value} if wildcards.run[0] == "r" else {"absolute": value}


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
    with open(path) as f:
        return json.load(f)["runs"]


def last_rounds():
    """The last refinement round's file of every refined setup and seed: targets of `all`, so a raised
    eta.refine.rounds schedules the new rounds (aggregate alone would not notice a missing round).
    """
    return [
        f"{R}/{s}/seed{seed}/refine/round{refine_rounds(s)}.json"
        for s, cfg in config["setups"].items()
        for seed in cfg["seeds"]
        if refine_rounds(s)
    ]


def all_run_dirs(wildcards=None):
    return [
        f"{R}/{s}/seed{seed}/{run}"
        for s, cfg in config["setups"].items()
        for seed in cfg["seeds"]
        for run in ["gf", *runs_after(s, seed, refine_rounds(s))]
    ]


def dataset_spec(wildcards):
    spec = dict(setup_of(wildcards)["dataset"])
    if spec["name"] in DOWNLOADABLE:
        spec["data_dir"] = config["data_dir"]
    return spec


def identity(wildcards):
    s = setup_of(wildcards)
    return {
        "experiment": config["experiment"],
        "setup": wildcards.setup,
        "dataset": s["dataset"]["name"],
        "arch": s["model"]["arch"],
        "loss": s["loss"],
        "seed": int(wildcards.seed),
    }


def dynamics_settings(key):
    """The gd or gf settings of the job's setup, with its ε."""

    def settings(wildcards):
        s = setup_of(wildcards)
        return {**s[key], "loss_threshold": s["loss_threshold"]}

    return settings


def gd_settings(wildcards):
    """The gd settings of a run; the runs drawn in the trajectories figure (relative η at one of
    figures.trajectory_ratios) sample the sharpness every figures.trajectory_sharpness_every steps.
    """
    settings = dynamics_settings("gd")(wildcards)
    dense = config["figures"]["trajectory_sharpness_every"]
    drawn = wildcards.run[0] == "r" and float(wildcards.run[1:]) in map(
        float, config["figures"]["trajectory_ratios"]
    )
    if dense and drawn:
        settings["sharpness_every"] = min(dense, settings["sharpness_every"] or dense)
    return settings


def data_file(wildcards):
    return f"{R}/{wildcards.setup}/data.pt"


def init_file(wildcards):
    return f"{R}/{wildcards.setup}/seed{wildcards.seed}/init.pt"


def datasets_to_download():
    """The downloadable datasets the config's setups use, sorted."""
    return sorted(
        {s["dataset"]["name"] for s in config["setups"].values()} & set(DOWNLOADABLE)
    )
