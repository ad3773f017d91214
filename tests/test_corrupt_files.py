"""Files it can trust (issue 21): every intermediate is read without unpickling code (``weights_only=True``,
JSON, Parquet), and a truncated or crafted one stops its job with one line that names the file and gives the
command that recomputes it; an unreadable checkpoint is set aside and its run restarts from θ₀."""

import json
import re
import subprocess

import pandas as pd
import pytest
import torch
from conftest import REPO, SNAKEMAKE, copy_workdir, science, snakemake

from normsharp import plots, stages
from normsharp.errors import CorruptFileError

pytestmark = pytest.mark.workflow  # on the finished reduced quickstart (conftest.finished_mini)

R = "results/mini"


class WritesMarker:
    """Unpickling this runs ``Path(marker).touch()``: what a crafted file in a results folder could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def the_message(path: str) -> str:
    """The one line a job prints for a corrupt ``path`` (relative to the working directory, as jobs get it)."""
    return (rf"CorruptFileError: {re.escape(path)} is corrupt \([^\n]+\); recompute it and what depends on it "
            rf"with: snakemake --cores N --forcerun {re.escape(path)} \(and this run's --configfile, if any\)")


def snapshot(workdir):
    """Bytes of every file under results/, by path."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted((workdir / R).rglob("*")) if p.is_file()}


def run_dirs(workdir):
    return sorted(str(p.parent.relative_to(workdir)) for p in (workdir / R).glob("*/seed*/*/result.json"))


def call_stage(stage, workdir, tmp_out):
    """Call one stage as its job does (paths relative to the working directory); outputs go to ``tmp_out``."""
    numerics = {"device": "cpu", "dtype": "float64"}
    data, init = f"{R}/a/data.pt", f"{R}/a/seed0/init.pt"
    if stage == "init_model":
        stages.init_model(data, {"arch": "fcn", "width": 12, "depth": 2, "activation": "tanh"}, 0, tmp_out / "init.pt")
    elif stage == "train_gd":
        stages.train_gd(data, init, f"{R}/a/seed0/gf/result.json", "mse", {"relative": 0.5}, {}, numerics, {},
                        tmp_out)
    elif stage == "evaluate":
        stages.evaluate(data, init, f"{R}/a/seed0/r0.5", "mse", {}, numerics, tmp_out / "geometry.json",
                        tmp_out / "test.json")
    elif stage == "aggregate":
        stages.aggregate(run_dirs(workdir), tmp_out / "runs.parquet", tmp_out / "trajectories.parquet",
                         spectra_path=tmp_out / "spectra.parquet")
    else:
        plots.draw_all(f"{R}/runs.parquet", f"{R}/trajectories.parquet", tmp_out, {},
                       spectra_path=f"{R}/spectra.parquet")


# Each kind of file, damaged, in a job that reads it: (file under results/mini, how, the job).
CASES = [
    ("a/data.pt", "truncated", "init_model"), ("a/data.pt", "truncated", "evaluate"),
    ("a/data.pt", "crafted", "train_gd"),
    ("a/seed0/init.pt", "truncated", "evaluate"), ("a/seed0/init.pt", "crafted", "aggregate"),
    ("a/seed0/init.pt", "not a record", "train_gd"),
    ("a/seed0/r0.5/theta.pt", "truncated", "evaluate"), ("a/seed0/r0.5/theta.pt", "crafted", "evaluate"),
    ("a/seed0/r0.5/theta.pt", "truncated", "aggregate"), ("a/seed0/r0.5/theta.pt", "not a tensor", "aggregate"),
    ("a/seed0/gf/result.json", "truncated", "train_gd"), ("a/seed0/r0.5/result.json", "truncated", "evaluate"),
    ("a/seed0/r0.5/geometry.json", "truncated", "aggregate"), ("a/seed0/r0.5/test.json", "empty", "aggregate"),
    ("a/seed0/r0.5/trajectory.parquet", "truncated", "aggregate"), ("runs.parquet", "truncated", "figures"),
    ("trajectories.parquet", "empty", "figures"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, damage, stage", CASES)
def test_a_damaged_file_stops_its_job_with_one_line_and_nothing_else_is_lost(
        finished_mini, tmp_path, monkeypatch, name, damage, stage):
    workdir = copy_workdir(finished_mini, tmp_path / "wd")
    monkeypatch.chdir(workdir)
    path, marker = workdir / R / name, tmp_path / "marker"
    if damage == "truncated":
        truncate(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "crafted":  # a pickle whose loading would run code
        torch.save(WritesMarker(marker), path)
    elif damage == "not a record":
        torch.save(torch.zeros(3), path)
    else:
        torch.save({"theta": torch.zeros(3)}, path)
    before = snapshot(workdir)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptFileError) as err:
        call_stage(stage, workdir, out)
    assert re.fullmatch(the_message(f"{R}/{name}"), f"CorruptFileError: {err.value}")
    # a GD, GF or evaluate job's progress.json (normsharp status) is all it leaves: it says the job failed, and why
    progress = [p for p in [*out.iterdir(), *(workdir / R).rglob("progress.json")] if p.name == "progress.json"]
    for path in progress:
        record = json.loads(path.read_text())
        assert record["state"] == "failed" and record["error"] == f"CorruptFileError: {err.value}", record
        path.unlink()
    assert not marker.exists() and not any(out.iterdir())  # no code ran, nothing half-written
    assert snapshot(workdir) == before


@pytest.mark.slow
def test_through_the_cli_a_corrupt_theta_names_its_command_and_that_command_restores_the_study(
        finished_mini, tmp_path):
    """A truncated theta.pt (a copy cut short) and a crafted one in a finished study: `snakemake` reruns their
    evaluate jobs (newer input), which stop with one line each and no traceback; a crafted checkpoint.pt of a
    run whose result was deleted is set aside and the run restarts from θ₀. The command the lines give
    recomputes the two runs, and the study's numbers are those of the untouched one."""
    workdir = copy_workdir(finished_mini, tmp_path / "wd")
    marker = tmp_path / "marker"
    cut, crafted, resumed = f"{R}/a/seed0/r0.5/theta.pt", f"{R}/b/seed0/r2.0/theta.pt", f"{R}/a/seed0/r2.0"
    truncate(workdir / cut)
    torch.save(WritesMarker(marker), workdir / crafted)
    (workdir / resumed / "result.json").unlink()
    torch.save(WritesMarker(marker), workdir / resumed / "checkpoint.pt")
    damaged = (f"{R}/a/seed0/r0.5/", f"{R}/b/seed0/r2.0/", f"{resumed}/", f"{R}/logs/",
               f"{R}/plan.json")  # rewritten by every start of the workflow (normsharp status)
    kept = {p: b for p, b in snapshot(workdir).items() if not p.startswith(damaged)}

    out = snakemake(workdir, "--keep-going")
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("CorruptFileError")]
    assert len(lines) == 2 and all(any(re.fullmatch(the_message(p), line) for line in lines)
                                   for p in (cut, crafted)), out.stderr[-4000:]
    assert "Traceback" not in out.stderr and not marker.exists()
    assert {p: b for p, b in snapshot(workdir).items() if p in kept} == kept  # nothing else lost
    (aside,) = (workdir / resumed).glob("checkpoint.pt.corrupt-*")
    log = (workdir / R / "logs/train_gd/a/seed0/r2.0.log").read_text()
    assert re.search(r"WARNING checkpoint \S+checkpoint.pt cannot be read .*set aside as checkpoint.pt.corrupt-\d"
                     r"{8}T\d{6}Z; the run restarts from θ₀", log), log

    commands = {re.search(r"with: (snakemake --cores N --forcerun \S+)", line)[1] for line in lines}
    forced = [c.split("--forcerun ")[1] for c in commands]
    again = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "2", "--forcerun", *forced],
                           cwd=workdir, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert not marker.exists()
    pd.testing.assert_frame_equal(science(pd.read_parquet(workdir / R / "runs.parquet")),
                                  science(pd.read_parquet(finished_mini / R / "runs.parquet")))
