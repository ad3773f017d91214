"""pyproject.toml's ranges, requirements.lock's exact versions (what CI installs) and the conda environments of the
rules (workflow/envs/*.yaml) agree: the envs pin the lock's versions, and the lock satisfies the ranges."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "workflow" / "envs").glob("*.yaml"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# These run the workflow itself, in the environment snakemake is started from; no job imports them.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
CONDA_EXACT = re.compile(r"^([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)$")  # conda's name=1.2 would also match 1.2.3


def exact_pins(requirements) -> dict[str, str]:
    """{canonical name: version} of `name==version` requirements; fails on any other kind of requirement."""
    pins = {}
    for text in requirements:
        req = Requirement(text)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
            f"{text!r} is not pinned to one exact version: write it as {req.name}==<version>")
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(conda pins, pip pins) of one environment file."""
    conda, pip = {}, {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            pip.update(exact_pins(dep["pip"]))
            continue
        match = CONDA_EXACT.match(dep.replace(" ", ""))
        assert match, f"{path.name}: conda dependency {dep!r} is not pinned exactly; write it as name==<version>"
        conda[match[1]] = match[2]
    return conda, pip


LOCK = exact_pins(line for line in (REPO / "requirements.lock").read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
DIRECT = [Requirement(r) for r in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["test"]]
PINNED = {canonicalize_name(r.name): LOCK.get(canonicalize_name(r.name))
          for r in map(Requirement, PYPROJECT["dependencies"])}


@pytest.mark.parametrize("req", DIRECT, ids=str)
def test_the_lock_file_pins_every_dependency_within_its_range(req):
    name = canonicalize_name(req.name)
    assert name in LOCK, f"requirements.lock has no exact version of {req.name}"
    assert req.specifier.contains(LOCK[name]), f"requirements.lock: {name}=={LOCK[name]} is outside {req}"


def test_there_is_an_env_per_kind_of_rule():
    assert {p.stem for p in ENVS} == {"torch", "analysis"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_equal_the_pip_install(path):
    conda, pip = env_file(path)
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(conda["python"]), (
        f"{path.name}: python={conda['python']} is outside requires-python {PYPROJECT['requires-python']}")
    assert "pip" in conda
    for name, version in pip.items():
        assert name in PINNED, f"{path.name} installs {name}, which pyproject.toml does not depend on"
        assert version == PINNED[name], f"{path.name}: {name}=={version}, requirements.lock: {name}=={PINNED[name]}"


def test_every_job_dependency_is_in_an_env():
    in_envs = set().union(*(env_file(p)[1] for p in ENVS))
    assert in_envs == set(PINNED) - WORKFLOW_ONLY


def test_analysis_env_covers_what_its_scripts_import():
    """aggregate and figures import normsharp.stages (its aggregate: normsharp.analysis) and normsharp.plots: every
    pinned package they load is in the env."""
    code = ("import sys, normsharp.stages, normsharp.analysis, normsharp.plots; "
            "print(' '.join(m for m in sys.modules if '.' not in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    dists = metadata.packages_distributions()
    loaded = {canonicalize_name(d) for module in out for d in dists.get(module, [])}
    assert loaded & set(PINNED) <= set(env_file(REPO / "workflow" / "envs" / "analysis.yaml")[1])


@pytest.mark.parametrize("name", sorted(LOCK))
def test_installed_versions_are_the_locked_ones(name):
    assert metadata.version(name) == LOCK[name], (
        f"{name} {metadata.version(name)} is installed, requirements.lock has {LOCK[name]}: "
        f"run pip install -c requirements.lock -e \".[test]\"")
