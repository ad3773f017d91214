"""What the test modules share: the repository, the snakemake CLI run on a working directory, the jobs a dry run
plans, the reduced configs of .test/config, and the SLURM cluster fixture.

Tiers (markers, registered in pyproject.toml): ``workflow`` starts snakemake, ``slurm`` needs the SLURM cluster of
.ci/slurm-up.sh, ``slow`` takes more than ~20 s. The quick loop of tests/README.md deselects all three.
"""

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TEST_CONFIGS = REPO / ".test" / "config"
_running_marks: set[str] = set()  # the marks of the test being set up or run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Record the test's marks before its fixtures run (a module fixture runs under the first test that needs it)."""
    _running_marks.clear()
    _running_marks.update(mark.name for mark in item.iter_markers())


def reduced_config(name: str) -> dict:
    """The reduced config .test/config/<name>.yaml (what `snakemake --configfile .test/config/<name>.yaml` runs)."""
    return yaml.safe_load((TEST_CONFIGS / f"{name}.yaml").read_text())


def snakemake(workdir: Path, *args: str, config: dict | str | None = None, cores: int = 2,
              timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the snakemake CLI on the repository's Snakefile with ``workdir`` as working directory.

    ``config`` (YAML text, or a dict written in its own key order, leaves inline as a person writes them) becomes
    workdir/config/config.yaml first.
    """
    assert "workflow" in _running_marks, "this test starts snakemake: mark it @pytest.mark.workflow"
    if config is not None:
        (workdir / "config").mkdir(exist_ok=True)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
        (workdir / "config" / "config.yaml").write_text(text)
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", str(cores), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def job_counts(text: str) -> dict[str, int]:
    """Rule → count of the "Job stats:" table in snakemake's output ({} when it has none: nothing to be done)."""
    if "Job stats:" not in text:
        assert "Nothing to be done" in text, text[-3000:]
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


def planned_jobs(workdir: Path, config: dict | str | None = None, *args: str) -> dict[str, int]:
    """Rule → count of the jobs a dry run schedules in ``workdir`` (with ``config``, see snakemake)."""
    out = snakemake(workdir, "-n", *args, config=config)
    assert out.returncode == 0, out.stderr
    return job_counts(out.stdout + out.stderr)


@pytest.fixture(scope="session")
def finished_mini(tmp_path_factory) -> Path:
    """A working directory holding the finished reduced quickstart (.test/config/mini.yaml, results/mini), run
    once per test worker through the CLI. Tests read it and must not change it: one that damages or reruns
    something works on a copy (``copy_workdir``)."""
    return finished_workdir(tmp_path_factory.mktemp("finished-mini"), reduced_config("mini"))


def finished_workdir(workdir: Path, config: dict) -> Path:
    """``workdir`` after a successful run of the workflow on ``config`` (the run's stderr tail if it fails)."""
    out = snakemake(workdir, config=config)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def setup_b(geometry: dict) -> dict:
    """The reduced quickstart alone with its setup b (GF and GD at 0.5 and 2 η_c, P = 620), ``geometry``
    merged over its geometry settings: the small sweep the workflow tests of the measures run."""
    cfg = copy.deepcopy(reduced_config("mini"))
    del cfg["setups"]["a"]
    cfg["geometry"] = {**cfg["geometry"], **geometry}
    return cfg


def copy_workdir(src: Path, dst: Path) -> Path:
    """A copy of a working directory with its results and .snakemake metadata, modification times kept (so the
    copy plans exactly what the original would)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def science(runs):
    """The columns of a runs table that a study reports, list cells as tuples: everything but the provenance
    (versions, commit, machine) and the wall times (``*_seconds``), which differ between two runs of one config."""
    from normsharp.provenance import COLUMNS as PROVENANCE

    keep = [c for c in runs.columns if c not in PROVENANCE and not c.endswith("_seconds")]
    return runs[keep].map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM (.ci/slurm-up.sh), stopped at the end if this session started it; skips loudly
    when it cannot be brought up (fails with NORMSHARP_REQUIRE_SLURM=1)."""
    import slurm_helpers  # imported on use: only the SLURM tests need it

    yield from slurm_helpers.running_cluster()
