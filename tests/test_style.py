"""The workflow passes `snakemake --lint` and `snakefmt --check` (formatting changes go in commits of their own)."""

import subprocess
from pathlib import Path

from test_workflow import REPO, SNAKEMAKE


def test_snakemake_lint_reports_nothing():
    out = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_snakefmt_check_passes():
    snakefmt = str(Path(SNAKEMAKE).with_name("snakefmt"))
    out = subprocess.run([snakefmt, "--check", "Snakefile", "workflow"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"run `snakefmt Snakefile workflow` to fix:\n{out.stdout}{out.stderr}"
