# Config inheritance and validation, paths, the η grid, and each job's own slice of the config.
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
    "fashionmnist",
    "cifar100",
    "svhn",
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


def all_run_dirs():
    return [
        f"{R}/{s}/seed{seed}/{run}"
        for s, cfg in config["setups"].items()
        for seed in cfg["seeds"]
        for run in ["gf", *gd_runs(s)]
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


def user_data_files(wildcards):
    """The setup's .npz file, so that prepare_data reruns when it changes."""
    dataset = setup_of(wildcards)["dataset"]
    return [dataset["path"]] if dataset["name"] == "npz" else []
