"""A workflow killed (SIGKILL) in the middle of a gradient-flow job (RKC, then RK4) and of a GD job resumes from
their checkpoints and ends with the results of an uninterrupted run, bit for bit."""

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
            "loss_threshold": 1e-9,  # not reached: all runs end at max_steps, a few seconds long
            "gf": {"method": "rkc"},
        },
        "b": {  # the same problem, its flow integrated by RK4 (as long as RKC's 200 steps)
            "dataset": {"name": "digits", "n_train": 50},
            "model": {"arch": "fcn", "width": 12, "depth": 2, "activation": "tanh"},
            "loss": "mse",
            "loss_threshold": 1e-9,
            "gf": {"method": "rk4", "max_steps": 500},
        },
    },
    "eta": {"relative": [0.5]},
    "gf": {"max_steps": 200, "checkpoint_every": 10},
    "gd": {"max_steps": 1500, "checkpoint_every": 50},
}
# run -> (its directory, its log, its max_steps), in the order they are killed
RUNS = {
    "gf rkc": ("results/kill/a/seed0/gf", "results/kill/logs/gradient_flow/a/seed0.log", 200),
    "gf rk4": ("results/kill/b/seed0/gf", "results/kill/logs/gradient_flow/b/seed0.log", 500),
    "gd": ("results/kill/a/seed0/r0.5", "results/kill/logs/train_gd/a/seed0/r0.5.log", 1500),
}
TARGETS = [f"{RUNS[run][0]}/result.json" for run in ("gf rk4", "gd")]  # GD a needs GF a


def snakemake_args(workdir: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", str(REPO / "profiles/default"), "--cores", "1", *args]


def run(workdir: Path, *args: str) -> str:
    out = subprocess.run(snakemake_args(workdir, *args), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


def kill_when_checkpointed(workdir: Path, run_dir: str) -> None:
    """Start the workflow for ``run_dir`` and SIGKILL its whole process group once it has a checkpoint."""
    proc = subprocess.Popen(snakemake_args(workdir, f"{run_dir}/result.json"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
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
    """result.json (without the wall time and the step its last job resumed at), θ and trajectory of each run."""
    found = {}
    for name, (run_dir, _, _) in RUNS.items():
        d = workdir / run_dir
        result = json.loads((d / "result.json").read_text())
        result.pop("wall_seconds")
        result["resumed"] = result.pop("resumed_at_step") > 0
        found[name] = (result, torch.load(d / "theta.pt"), pd.read_parquet(d / "trajectory.parquet"))
    return found


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(CONFIG))
    for run_dir, _, _ in RUNS.values():  # killed one after the other; GF a resumes (and ends) before GD a starts
        kill_when_checkpointed(tmp_path, run_dir)
        run(tmp_path, "--unlock")
    run(tmp_path, *TARGETS)  # --rerun-incomplete (default profile) reruns the killed GF b and GD jobs
    for name, (run_dir, log_path, max_steps) in RUNS.items():
        log = (tmp_path / log_path).read_text()
        step = int(log.split("resuming from ")[1].split(" at step ")[1].split()[0])
        assert 0 < step < max_steps, (name, log)
        assert not (tmp_path / run_dir / "checkpoint.pt").exists()
    resumed = outputs(tmp_path)

    run(tmp_path, "--forcerun", "gradient_flow", *TARGETS)  # the same runs again, uninterrupted
    for name, (_, log_path, _) in RUNS.items():
        assert "resuming" not in (tmp_path / log_path).read_text(), name
    uninterrupted = outputs(tmp_path)
    for name in RUNS:
        (result, theta, trajectory), (result0, theta0, trajectory0) = resumed[name], uninterrupted[name]
        assert result.pop("resumed") and not result0.pop("resumed"), name
        assert result == result0, name
        assert torch.equal(theta, theta0), name
        pd.testing.assert_frame_equal(trajectory, trajectory0)
