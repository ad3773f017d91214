"""docs/reading-results.md: every python block of the page runs, in order, on two finished reduced experiments
(the quickstart's mini and the diagonal-linear dln-mini), and computes what the tables hold."""

import math
import re

import matplotlib
import pandas as pd
import pytest
from conftest import REPO, TEST_CONFIGS, copy_workdir, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

PAGE = REPO / "docs/reading-results.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def two_experiments(finished_mini, tmp_path_factory):
    """results/mini (conftest.finished_mini) and results/dln-mini in one working directory."""
    workdir = copy_workdir(finished_mini, tmp_path_factory.mktemp("reading") / "wd")
    out = snakemake(workdir, "--configfile", str(TEST_CONFIGS / "dln-mini.yaml"))
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def test_the_page_has_its_blocks():
    assert len(python_blocks(PAGE.read_text())) == 6
    assert python_blocks("```python\na = 1\n```\ntext\n```bash\nb\n```\n") == ["a = 1\n"]


def test_every_block_of_the_page_runs_and_reads_what_the_tables_hold(two_experiments, monkeypatch, capsys):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(two_experiments)
    namespace = {}
    for i, block in enumerate(python_blocks(PAGE.read_text())):
        exec(compile(block, f"{PAGE.name}, python block {i + 1}", "exec"), namespace)
    plt.close("all")
    printed = capsys.readouterr().out
    runs, table, gd = namespace["runs"], namespace["table"], namespace["gd"]
    mini = pd.read_parquet(two_experiments / "results/mini/runs.parquet")
    dln = pd.read_parquet(two_experiments / "results/dln-mini/runs.parquet")
    assert len(runs) == len(mini) + len(dln) and set(runs.experiment) == {"mini", "dln-mini"}
    assert set(table.index) == {("mini", "a"), ("mini", "b"), ("dln-mini", "d2")}
    row = mini[(mini.setup == "a") & (mini.method == "gd") & (mini.eta_relative == 2.0)].iloc[0]
    assert table.loc[("mini", "a"), 2.0] == row.sharpness
    assert 40.0 not in table.columns  # a's 40 η_c diverged, b has none
    d2 = dln[(dln.method == "gd") & (dln.eta_relative == 0.5)].iloc[0]
    assert table.loc[("dln-mini", "d2"), 0.5] == d2.sharpness and math.isnan(table.loc[("dln-mini", "d2"), 2.0])
    flow = mini[(mini.setup == "a") & (mini.method == "gf")].iloc[0]
    mine = gd[(gd.experiment == "mini") & (gd.setup == "a") & (gd.eta_relative == 2.0)].iloc[0]
    assert mine.l1_over_gf == row.l1_norm / flow.l1_norm and mine.s_eta_over_2 == row.sharpness * row.eta / 2
    assert (gd.status == "converged").all() and namespace["steps"].regime.notna().all()
    assert "dln-mini" in printed and "flow-aligned" in printed
    assert (two_experiments / "sharpness_along_training.png").stat().st_size > 10_000
