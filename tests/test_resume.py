"""A workflow killed (SIGKILL) in the middle of a gradient-flow job and of a GD job resumes from their checkpoints
and ends with the results of an uninterrupted run, bit for bit."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CONFIG = {
    "experiment": "kill",
    "device": "cpu",
    "dtype": "float64",
    "setups": {
        "a": {
            "dataset": {"name": "digits", "n_train": 50},
            "model": {"arch": "fcn", "width": 12, "depth": 2, "activation": "tanh"},
            "loss": "mse",
            "loss_threshold": 1e-9,  # not reached: both runs end at max_steps, a few seconds long
        }
    },
    "eta": {"relative": [0.5]},
    "gf": {"max_steps": 200, "checkpoint_every": 10},
    "gd": {"max_steps": 1500, "checkpoint_every": 50},
}
RUNS = {"gradient_flow": "results/kill/a/seed0/gf", "train_gd": "results/kill/a/seed0/r0.5"}
TARGET = f"{RUNS['train_gd']}/result.json"


def snakemake_args(workdir: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", str(REPO / "workflow/profiles/default"), "--cores", "1", *args]


def run(workdir: Path, *args: str) -> str:
    out = subprocess.run(snakemake_args(workdir, *args), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


def kill_when_checkpointed(workdir: Path, run_dir: str) -> None:
    """Start the workflow and SIGKILL its whole process group once ``run_dir`` has a checkpoint."""
    proc = subprocess.Popen(snakemake_args(workdir, TARGET), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = workdir / run_dir / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None, f"the workflow ended (rc={proc.returncode}) before {checkpoint} appeared"
        assert time.monotonic() < deadline, f"no {checkpoint} after 120 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / run_dir / "result.json").exists(), "the job finished before the kill; make it longer"


def outputs(workdir: Path) -> dict:
    """result.json (without the wall time), θ and trajectory of both runs."""
    found = {}
    for rule, run_dir in RUNS.items():
        d = workdir / run_dir
        result = json.loads((d / "result.json").read_text())
        result.pop("wall_seconds")
        found[rule] = (result, torch.load(d / "theta.pt"), pd.read_parquet(d / "trajectory.parquet"))
    return found


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(CONFIG))
    for run_dir in RUNS.values():  # GF is killed in the first workflow run, GD in the second
        kill_when_checkpointed(tmp_path, run_dir)
        run(tmp_path, "--unlock")
    run(tmp_path, TARGET)  # --rerun-incomplete (default profile) reruns the killed GD job
    for rule in RUNS:
        log = next((tmp_path / "results/kill/logs" / rule).rglob("*.log")).read_text()
        step = int(log.split("resuming from ")[1].split(" at step ")[1].split()[0])
        assert 0 < step < CONFIG["gf" if rule == "gradient_flow" else "gd"]["max_steps"], log
        assert not (tmp_path / RUNS[rule] / "checkpoint.pt").exists()
    resumed = outputs(tmp_path)

    run(tmp_path, "--forcerun", "gradient_flow", TARGET)  # the same two runs again, uninterrupted
    for rule in RUNS:
        assert "resuming" not in next((tmp_path / "results/kill/logs" / rule).rglob("*.log")).read_text()
    uninterrupted = outputs(tmp_path)
    for rule in RUNS:
        (result, theta, trajectory), (result0, theta0, trajectory0) = resumed[rule], uninterrupted[rule]
        assert result == result0
        assert torch.equal(theta, theta0)
        pd.testing.assert_frame_equal(trajectory, trajectory0)
