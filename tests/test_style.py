"""The workflow passes `snakemake --lint` and `snakefmt --check`, the Python code `ruff check` (pyproject.toml's
[tool.ruff]); formatting changes go in commits of their own. Test modules that start snakemake carry its mark."""

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE

RUFF_PATHS = ["src", "tests", "workflow/scripts", "benchmarks", "examples"]


@pytest.mark.workflow
def test_snakemake_lint_reports_nothing():
    out = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_snakefmt_check_passes():
    snakefmt = str(Path(SNAKEMAKE).with_name("snakefmt"))
    out = subprocess.run([snakefmt, "--check", "Snakefile", "workflow"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"run `snakefmt Snakefile workflow` to fix:\n{out.stdout}{out.stderr}"


def test_ruff_check_passes():
    ruff = str(Path(SNAKEMAKE).with_name("ruff"))
    cmd = [ruff, "check", "--no-cache", "--output-format", "concise", *RUFF_PATHS]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"`ruff check --fix` repairs those marked [*]:\n{out.stdout}{out.stderr}"


STARTS_SNAKEMAKE = re.compile(r"\bSNAKEMAKE\b|\bsnakemake\(|\bplanned_jobs\(|\brun_snakemake_slurm\(")


@pytest.mark.parametrize("module", sorted((REPO / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_modules_that_start_snakemake_carry_the_workflow_mark(module):
    """The quick loop (-m "not workflow ...") must not start snakemake: such a module marks its tests `workflow`,
    and a module that uses the SLURM cluster marks them `slurm`."""
    text = module.read_text()
    if STARTS_SNAKEMAKE.search(text):
        assert "pytest.mark.workflow" in text, f"{module.name} starts snakemake: mark those tests workflow"
    if "slurm_cluster" in text:
        assert "pytest.mark.slurm" in text, f"{module.name} uses the SLURM cluster: mark those tests slurm"
