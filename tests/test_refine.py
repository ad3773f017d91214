"""Refinement of the η grid (eta.refine): one round's choice on synthetic runs, and the checkpoints through
the snakemake CLI (added η in a dry run, the runs aggregated, nothing planned on a rerun)."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workdir, finished_workdir, planned_jobs, reduced_config, snakemake

from normsharp.analysis import locate_test_minimum, propose_refinement, transition_bracket
from normsharp.files import write_json
from normsharp.stages import refine_eta


def sweep(tmp_path, ratios, sharpness, test_loss=None, eta_c=0.2):
    """Run directories with the files refine_eta reads; ratios are multiples of η_c."""
    dirs = []
    for i, (r, s) in enumerate(zip(ratios, sharpness)):
        d = tmp_path / f"r{r!r}"
        write_json(d / "result.json", {"eta": r * eta_c, "eta_c": eta_c, "status": "converged"})
        write_json(d / "geometry.json", {"sharpness": s})
        write_json(d / "test.json", {"test_loss": test_loss[i] if test_loss else 1.0})
        dirs.append(d)
    return dirs


RATIOS = [0.25, 0.5, 1.0, 1.25, 2.0]
S = [10.0, 10.0, 9.8, 1.6, 1.0]  # plateau 10 below η_c, leaves it between 1.0 and 1.25 η_c


def test_bracket_is_the_last_plateau_run_and_the_first_below():
    assert transition_bracket(RATIOS, S, 1.0) == (1.0, 1.25)
    assert transition_bracket([0.5, 2.0], [1.0, 1.0], 1.0) is None  # no departure
    assert transition_bracket([1.5, 2.0], [1.0, 0.5], 1.0) is None  # no plateau


def test_a_round_adds_geometric_points_inside_the_bracket(tmp_path):
    out = tmp_path / "round1.json"
    refine_eta(sweep(tmp_path, RATIOS, S), {"points": 3, "width": 0.02}, 0.1, out)
    got = json.loads(out.read_text())
    assert got["bracket"] == [1.0, 1.25] and got["width"] == pytest.approx(0.25)
    expected = [float(f"{v:.4g}") for v in np.geomspace(1.0, 1.25, 5)[1:-1]]
    assert got["added"] == expected == [1.057, 1.118, 1.182]
    assert got["runs"] == [f"r{r!r}" for r in RATIOS] + ["r1.057", "r1.118", "r1.182"]


def test_no_points_once_the_bracket_is_narrow_or_absent(tmp_path):
    out = tmp_path / "round.json"
    refine_eta(sweep(tmp_path / "narrow", [0.5, 1.0, 1.01, 2.0], [10.0, 10.0, 2.0, 1.0]),
               {"points": 3, "width": 0.02}, 0.1, out)
    got = json.loads(out.read_text())
    assert got["bracket"] == [1.0, 1.01] and got["added"] == [] and len(got["runs"]) == 4
    refine_eta(sweep(tmp_path / "flat", [0.5, 2.0], [10.0, 9.5]), {"points": 3, "width": 0.02}, 0.1, out)
    got = json.loads(out.read_text())
    assert got["bracket"] is None and math.isnan(got["width"]) and got["added"] == []


def test_test_minimum_adds_one_point_on_each_side(tmp_path):
    out = tmp_path / "round.json"
    loss = [0.30, 0.25, 0.24, 0.23, 0.26]  # least at 1.25 η_c
    refine_eta(sweep(tmp_path, RATIOS, S, loss), {"points": 1, "width": 0.02, "test_minimum": True}, 0.1, out)
    got = json.loads(out.read_text())
    mid = [float(f"{math.sqrt(a * b):.4g}") for a, b in ((1.0, 1.25), (1.25, 2.0))]
    assert got["added"] == mid  # the bracket's midpoint is also the left neighbour's: added once


def test_refine_keys_have_schema_defaults():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    refine = schema["definitions"]["eta_grid"]["properties"]["refine"]["properties"]
    assert refine["extend_factor"]["default"] == 1.25 and refine["extend_factor"]["exclusiveMinimum"] == 1


def frame(ratios, loss, status=None, sharpness=None):
    """Runs as refine_eta passes them to propose_refinement (ratios: multiples of η_c)."""
    return pd.DataFrame({"run": [f"r{r!r}" for r in ratios], "ratio": ratios,
                         "status": status or ["converged"] * len(ratios),
                         "sharpness": sharpness or [10.0] * len(ratios), "test_loss": loss})  # no transition


MONOTONE = ([0.5, 1.0, 2.0, 4.0], [0.30, 0.25, 0.20, 0.18])  # least test loss at the largest η


def test_a_minimum_at_the_largest_eta_points_outward():
    got = propose_refinement(frame(*MONOTONE), width=0.02, points=1, test_minimum=True, extend_factor=1.25)
    assert got["test_minimum"] == {"ratio": 4.0, "test_loss": 0.18, "status": "edge", "blocked_by": None}
    assert got["added"] == [5.0] and got["runs"][-1] == "r5.0"  # only outward: no inner point while at the edge
    off = propose_refinement(frame(*MONOTONE), width=0.02, points=1, test_minimum=False)
    assert off["added"] == [] and off["test_minimum"]["status"] == "edge"  # recorded, not acted on


def test_a_bracketed_minimum_adds_nothing_outward():
    ratios, loss = [0.5, 1.0, 2.0, 4.0, 5.0], [0.30, 0.25, 0.20, 0.18, 0.19]
    got = propose_refinement(frame(ratios, loss), width=0.02, points=1, test_minimum=True)
    assert got["test_minimum"]["status"] == "bracketed" and got["test_minimum"]["ratio"] == 4.0
    assert all(r < 5.0 for r in got["added"])  # one on each side of 4.0, inside the grid
    assert got["added"] == [float(f"{math.sqrt(2.0 * 4.0):.4g}"), float(f"{math.sqrt(4.0 * 5.0):.4g}")]


def test_a_diverged_run_beyond_the_edge_stops_the_extension():
    ratios, loss = [0.5, 1.0, 2.0, 4.0, 5.0], [0.30, 0.25, 0.20, 0.18, math.nan]
    status = ["converged"] * 4 + ["diverged"]
    got = propose_refinement(frame(ratios, loss, status), width=0.02, points=1, test_minimum=True)
    assert got["test_minimum"] == {"ratio": 4.0, "test_loss": 0.18, "status": "blocked", "blocked_by": 5.0}
    assert all(r < 4.0 for r in got["added"]) and got["added"]  # the inner neighbour only
    capped = locate_test_minimum([1.0, 2.0], [0.3, 0.2], ["converged", "max_steps"])  # an unconverged η blocks too
    assert capped["status"] == "blocked" and capped["ratio"] == 1.0 and capped["blocked_by"] == 2.0
    assert locate_test_minimum([1.0, 2.0], [0.2, 0.3], ["converged"] * 2)["status"] == "lower_edge"
    assert locate_test_minimum([1.0], [0.2], ["converged"])["status"] == "edge"
    assert locate_test_minimum([1.0], [math.nan], ["diverged"])["status"] == "none"


def test_rounds_extend_geometrically_until_the_minimum_is_bracketed(tmp_path):
    """A U with its least test loss at 7 η_c, a grid up to 4 η_c: rounds step out ×1.25 until bracketed."""
    def u_loss(r):
        return 0.14 + 0.01 * math.log(r / 7.0) ** 2

    ratios, statuses = [0.5, 1.0, 2.0, 4.0], []
    for k in range(1, 8):
        dirs = sweep(tmp_path / f"round{k}", ratios, [10.0 / max(r, 1.0) for r in ratios], [u_loss(r) for r in ratios])
        out = tmp_path / f"round{k}.json"
        refine_eta(dirs, {"points": 1, "width": 0.3, "test_minimum": True, "extend_factor": 1.25}, 0.1, out)
        got = json.loads(out.read_text())
        statuses.append(got["test_minimum"]["status"])
        ratios = sorted(ratios + got["added"])
    assert statuses[:4] == ["edge", "edge", "edge", "edge"] and statuses[4] == "bracketed"
    assert [r for r in ratios if r > 4.0][:4] == [5.0, 6.25, 7.812, 9.765]
    assert got["test_minimum"]["ratio"] == pytest.approx(7.812) and got["added"] == []  # narrower than width: done


@pytest.mark.workflow
def test_a_shipped_paper_config_plans_its_refinement_rounds(tmp_path):
    """mnist5k-fcn-mse refines with test_minimum: its DAG plans the grid and every round of every seed."""
    text = (REPO / "config/experiments/mnist5k-fcn-mse.yaml").read_text()
    cfg = yaml.safe_load(text)
    refine = cfg["eta"]["refine"]
    assert refine["test_minimum"] and refine["rounds"] >= 4 and max(cfg["eta"]["relative"]) == 4.0
    counts = planned_jobs(tmp_path, text)
    seeds = len(cfg["setups"]["mnist5k-fcn-tanh-mse"]["seeds"])
    assert counts["train_gd"] == seeds * len(cfg["eta"]["relative"])
    assert counts["refine_eta"] == seeds * refine["rounds"]


REDUCED = reduced_config("mini")
REFINED = copy.deepcopy(REDUCED)
REFINED["setups"] = {"a": REDUCED["setups"]["a"]}
REFINED["eta"] = {"relative": [0.5, 0.8, 1.25, 2.0], "refine": {"rounds": 1, "points": 2, "width": 0.02}}


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    return finished_workdir(tmp_path_factory.mktemp("refine"), REFINED)


@pytest.mark.workflow
@pytest.mark.slow
def test_refined_runs_are_run_and_aggregated(refined):
    got = json.loads((refined / "results/mini/a/seed0/refine/round1.json").read_text())
    lo, hi = got["bracket"]
    assert len(got["added"]) == 2 and all(lo < r < hi for r in got["added"])
    runs = pd.read_parquet(refined / "results/mini/runs.parquet")
    gd = runs[runs.method == "gd"]
    assert sorted(gd.eta_over_eta_c.round(9)) == sorted([0.5, 0.8, 1.25, 2.0] + got["added"])
    assert (gd.status == "converged").all()
    transition = gd.eta_transition.iloc[0] / gd.eta_c.iloc[0]
    assert lo <= transition <= hi  # the observed transition lies in the bracket refined


@pytest.mark.workflow
@pytest.mark.slow
def test_rerun_with_nothing_changed_plans_nothing(refined):
    assert planned_jobs(refined, REFINED) == {}


@pytest.mark.workflow
@pytest.mark.slow
def test_another_round_shows_its_added_eta_in_a_dry_run(refined):
    cfg = copy.deepcopy(REFINED)
    cfg["eta"]["refine"]["rounds"] = 2
    assert planned_jobs(refined, cfg) == {"refine_eta": 1, "aggregate": 1, "figures": 1, "all": 1}
    out = snakemake(refined, "results/mini/a/seed0/refine/round2.json")  # run the checkpoint alone
    assert out.returncode == 0, out.stderr[-3000:]
    first = json.loads((refined / "results/mini/a/seed0/refine/round1.json").read_text())
    second = json.loads((refined / "results/mini/a/seed0/refine/round2.json").read_text())
    assert second["width"] < first["width"] and second["added"]
    dry = snakemake(refined, "-n")
    assert dry.returncode == 0, dry.stderr
    for r in second["added"]:
        assert f"run=r{r!r}" in dry.stdout + dry.stderr
    assert planned_jobs(refined, cfg)["train_gd"] == len(second["added"])


@pytest.mark.workflow
@pytest.mark.slow
def test_a_damaged_round_file_stops_with_one_line_whose_command_repairs_it(refined, tmp_path):
    """refine/round1.json is read by the workflow itself (the runs it added) when it builds the DAG: cut short,
    it stops there with the corrupt-file line, no traceback of the JSON parser, and the command given reruns it."""
    work = copy_workdir(refined, tmp_path / "damaged")
    assert planned_jobs(work, REFINED) == {}  # its config (another test of `refined` may have left a round 2 one)
    path = "results/mini/a/seed0/refine/round1.json"
    good = json.loads((work / path).read_text())
    (work / path).write_text((work / path).read_text()[:40])
    out = snakemake(work)
    printed = out.stdout + out.stderr
    assert out.returncode == 1
    (line,) = [line for line in printed.splitlines() if "is corrupt" in line]
    assert line.startswith(f"CorruptFileError: {path} is corrupt (truncated or not a JSON file"), printed
    assert f"--forcerun {path}" in line and "Traceback" not in printed and "Exception" not in printed
    assert not list((work / ".snakemake/locks").iterdir())  # stopped before it locked the directory
    command = line.split("with: ")[1].split(" (and")[0].replace("--cores N", "--cores 2").split()
    assert command[0] == "snakemake"
    repaired = snakemake(work, *command[3:])
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert json.loads((work / path).read_text()) == good  # the same round again, from the same runs
    assert planned_jobs(work) == {}


EDGE = copy.deepcopy(REFINED)
EDGE["eta"] = {"relative": [0.5, 0.8], "refine": {"rounds": 2, "points": 1, "width": 0.3, "test_minimum": True}}


@pytest.mark.workflow
@pytest.mark.slow
def test_rounds_extend_the_grid_while_the_least_test_loss_is_at_its_edge(tmp_path):
    """On setup a the test loss still falls at 0.8 η_c (measured: 0.3417 at 0.8, 0.3413 at 1.0, 0.3409 at 1.25):
    each round adds the largest η × 1.25, and the runs it adds are trained, evaluated and aggregated."""
    out = snakemake(tmp_path, config=EDGE)
    assert out.returncode == 0, out.stderr[-4000:]
    rounds = [json.loads((tmp_path / f"results/mini/a/seed0/refine/round{k}.json").read_text()) for k in (1, 2)]
    assert [r["test_minimum"]["status"] for r in rounds] == ["edge", "edge"]
    assert [r["test_minimum"]["ratio"] for r in rounds] == pytest.approx([0.8, 1.0])
    assert [r["added"] for r in rounds] == [[1.0], [1.25]]
    runs = pd.read_parquet(tmp_path / "results/mini/runs.parquet")
    gd = runs[runs.method == "gd"]
    assert sorted(gd.eta_over_eta_c.round(9)) == [0.5, 0.8, 1.0, 1.25] and (gd.status == "converged").all()
    before = gd[gd.eta_over_eta_c < 1.2]  # the runs round 2 saw
    assert locate_test_minimum(before.eta_over_eta_c, before.test_loss, before.status)["test_loss"] == \
        rounds[1]["test_minimum"]["test_loss"]
    assert (tmp_path / "results/mini/figures/test_loss_vs_eta.png").stat().st_size > 1000
