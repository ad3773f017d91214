"""normsharp as a Snakemake module of another project (docs/module.md), and the default profile picked up without
being named (profiles/default)."""

import subprocess

import pandas as pd
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, reduced_config, science

pytestmark = pytest.mark.workflow

# The calling project's Snakefile, as docs/module.md shows it.
PROJECT_SNAKEFILE = '''configfile: "config/config.yaml"


module normsharp:
    snakefile:
        "{repo}/Snakefile"
    config:
        config


use rule * from normsharp
'''


@pytest.mark.slow
def test_a_project_using_the_workflow_as_a_module_gets_the_same_results(tmp_path, finished_mini):
    """A project in another directory, with its own config/config.yaml (the reduced quickstart's content) and a
    Snakefile of `module` + `use rule *`, run with plain `snakemake` there: the same runs.parquet numbers as the
    workflow run directly on that config (conftest.finished_mini), written under the project's own results/."""
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "config/config.yaml").write_text(yaml.safe_dump(reduced_config("mini"), sort_keys=False))
    (project / "Snakefile").write_text(PROJECT_SNAKEFILE.format(repo=REPO))
    out = subprocess.run([SNAKEMAKE, "--cores", "2"], cwd=project, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    runs = pd.read_parquet(project / "results/mini/runs.parquet")
    pd.testing.assert_frame_equal(science(runs), science(pd.read_parquet(finished_mini / "results/mini/runs.parquet")))
    assert sorted(p.name for p in (project / "results/mini/figures").glob("*.png")) == sorted(
        p.name for p in (finished_mini / "results/mini/figures").glob("*.png"))
    again = subprocess.run([SNAKEMAKE, "--cores", "2", "-n"], cwd=project, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_the_default_profile_is_picked_up_without_being_named(tmp_path):
    """`snakemake -s <repo>/Snakefile` from another directory (and so `snakemake` in the repository) loads
    profiles/default, as snakemake says on stderr; `--workflow-profile none` leaves it out."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(reduced_config("mini")))
    out = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Using workflow specific profile {REPO / 'profiles/default'} for setting default command line" \
           in out.stderr
    none = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--workflow-profile", "none"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert none.returncode == 0 and "Using workflow specific profile" not in none.stderr, none.stderr[-3000:]
