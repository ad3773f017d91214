"""`normsharp status`: the state of every run read from its files (normsharp.status, normsharp.progress), on a
synthetic results folder and on a workflow killed halfway (SIGKILL, as tests/test_resume.py does)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE

from normsharp import progress, status
from normsharp.progress import ProgressFile

STATUS = [sys.executable, "-m", "normsharp.status"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def run_dir(exp: Path, setup: str, run: str, *files: str, seed: int = 0) -> Path:
    d = exp / setup / f"seed{seed}" / run
    d.mkdir(parents=True, exist_ok=True)
    for name in files:
        (d / name).write_text(json.dumps({"status": "converged", "steps": 12, "train_loss": 0.04, "eta": 0.5,
                                          "eta_c": 1.0}) if name == "result.json" else "{}")
    return d


def states(found: dict) -> dict:
    return {(r["setup"], r["seed"], r["run"]): r["state"] for r in found["runs"]}


def test_every_state_from_the_files(tmp_path):
    exp = tmp_path / "results/exp"
    status.write_plan(exp / "plan.json", {"a": {"seeds": [0], "runs": ["gf", "r0.5", "r2.0", "r4.0", "a0.01"],
                                                "refine_rounds": 1},
                                          "b": {"seeds": [0, 1], "runs": ["gf"], "refine_rounds": 0}})
    run_dir(exp, "a", "gf", "result.json", "geometry.json", "test.json")
    with ProgressFile(run_dir(exp, "a", "r0.5") / progress.NAME, 10, stage="gd", loss_threshold=1e-3,
                      max_steps=500) as running:
        running.report(step=40, loss=0.2, sharpness=9.5, steps_per_second=120.0)
        with pytest.raises(ValueError):
            with ProgressFile(run_dir(exp, "a", "r2.0") / progress.NAME, 10, stage="gd"):
                raise ValueError("the loss is not finite\nmore lines")
        run_dir(exp, "a", "r4.0", "checkpoint.pt")
        log = exp / "logs/train_gd/a/seed0/a0.01.log"
        log.parent.mkdir(parents=True)
        log.write_text("2026-01-01 10:00:00,001 INFO job started (imports done)\n2026-01-01 10:00:01,002 ERROR "
                       "Traceback (most recent call last):\n  File ...\nConfigError: model: no such thing\n")
        run_dir(exp, "b", "gf", "result.json", seed=1)  # trained, its evaluation not started
        (exp / "a/seed0/refine").mkdir()
        (exp / "a/seed0/refine/round1.json").write_text(json.dumps({"runs": ["r0.5", "r2.0", "r4.0", "r1.2"]}))
        found = status.experiment_status(exp)
        later = status.experiment_status(exp, now=time.time() + progress.stale_after(10) + 1)
    assert states(found) == {
        ("a", 0, "gf"): "done", ("a", 0, "r0.5"): "running", ("a", 0, "r1.2"): "waiting",
        ("a", 0, "r2.0"): "failed", ("a", 0, "r4.0"): "interrupted", ("a", 0, "a0.01"): "failed",
        ("b", 0, "gf"): "waiting", ("b", 1, "gf"): "waiting"}
    assert list(states(found)) == [("a", 0, "gf"), ("a", 0, "r0.5"), ("a", 0, "r1.2"), ("a", 0, "r2.0"),
                                   ("a", 0, "r4.0"), ("a", 0, "a0.01"), ("b", 0, "gf"), ("b", 1, "gf")]
    rows = {r["run"]: r for r in found["runs"] if r["setup"] == "a"}
    live = rows["r0.5"]
    assert (live["step"], live["loss"], live["loss_threshold"], live["sharpness"], live["steps_per_second"]) == (
        40, 0.2, 1e-3, 9.5, 120.0)
    assert 0 <= live["updated_seconds_ago"] < 5 and live["stage"] == "gd"
    assert rows["r2.0"]["note"] == "ValueError: the loss is not finite"
    assert rows["a0.01"]["note"] == "ConfigError: model: no such thing"
    assert found["runs"][-1]["note"] == "trained; evaluate waiting"
    assert found["counts"] == {"done": 1, "running": 1, "interrupted": 1, "failed": 2, "waiting": 3}
    assert states(later)[("a", 0, "r0.5")] == "interrupted"  # no heartbeat for 3 × progress_seconds + 5 s
    assert not (exp / "a/seed0/r0.5" / progress.NAME).exists()  # the job ended: its progress file is gone
    text = status.format_table(found)
    assert text.splitlines()[0].startswith(f"{exp}: 8 runs: 1 done, 1 running, 1 interrupted, 2 failed, 3 waiting")
    line = next(row for row in text.splitlines() if " r0.5 " in row)
    assert line.split()[3:10] == ["0.5", "running", "gd", "40/500", "0.2", "0.001", "9.5"]


def test_a_killed_evaluation_is_started_again_not_resumed(tmp_path):
    exp = tmp_path / "results/exp"
    d = run_dir(exp, "a", "r2.0", "result.json")  # trained; its evaluation was killed (no checkpoint of its own)
    (d / progress.NAME).write_text(json.dumps({"state": "running", "stage": "evaluate", "updated": time.time() - 600,
                                               "every_seconds": 10}))
    (row,) = status.experiment_status(exp)["runs"]
    assert row["state"] == "interrupted" and row["stage"] == "evaluate"
    assert row["note"] == "no update for 10 min: killed or out of time; a rerun starts it again"


def test_a_ctrl_c_is_an_interruption_and_a_job_refreshes_its_file(tmp_path):
    path = tmp_path / progress.NAME
    with pytest.raises(KeyboardInterrupt):
        with ProgressFile(path, 0.05, stage="gf"):
            first = json.loads(path.read_text())["updated"]
            time.sleep(0.3)  # the heartbeat rewrites it while the run computes
            assert json.loads(path.read_text())["updated"] > first
            raise KeyboardInterrupt
    record = json.loads(path.read_text())
    assert record["state"] == "interrupted" and record["stage"] == "gf" and record["pid"] == os.getpid()


def test_status_cli_and_a_results_folder_of_several_experiments(tmp_path):
    for exp in ("one", "two"):
        run_dir(tmp_path / exp, "s", "gf", "result.json", "geometry.json", "test.json")
    out = subprocess.run([*STATUS, str(tmp_path), "--json"], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert [(Path(e["experiment"]).name, e["counts"]["done"]) for e in json.loads(out.stdout)] == [("one", 1),
                                                                                                  ("two", 1)]
    empty = subprocess.run([*STATUS, str(tmp_path / "nothing")], capture_output=True, text=True, env=ENV)
    assert empty.returncode == 2 and "no experiment in" in empty.stderr
    assert status.cli(["statu"]) == 2
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'normsharp = "normsharp.status:cli"' in pyproject


def test_status_is_fast_on_hundreds_of_runs(tmp_path):
    """500 run directories (400 done, 100 running): the whole command, Python's start included."""
    exp = tmp_path / "big"
    runs = [f"r{0.01 * (i + 1):.2f}" for i in range(99)]
    status.write_plan(exp / "plan.json", {f"s{k}": {"seeds": [0], "runs": ["gf", *runs], "refine_rounds": 0}
                                          for k in range(5)})
    for k in range(5):
        for i, run in enumerate(["gf", *runs]):
            d = run_dir(exp, f"s{k}", run, *(("result.json", "geometry.json", "test.json") if i < 80 else ()))
            if i >= 80:
                (d / progress.NAME).write_text(json.dumps({"state": "running", "stage": "gd", "step": i,
                                                           "updated": time.time(), "every_seconds": 10}))
    start = time.perf_counter()
    out = subprocess.run([*STATUS, str(exp)], capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].endswith("500 runs: 400 done, 100 running  (plan: " +
                                               out.stdout.split("(plan: ")[1].splitlines()[0])
    print(f"normsharp status on 500 run directories: {seconds:.2f} s")
    assert seconds < 5


# ---- a workflow killed halfway -------------------------------------------------------------------------------

CONFIG = {
    "experiment": "half",
    "device": "cpu",
    "progress_seconds": 0.5,
    "setups": {"a": {"dataset": {"name": "digits", "n_train": 50},
                     "model": {"arch": "fcn", "width": 12, "depth": 2, "activation": "tanh"},
                     "loss": "mse", "loss_threshold": 1e-9}},  # not reached: every run ends at max_steps
    "eta": {"relative": [0.25, 0.5, 0.8]},  # below η_c: no run diverges early
    "gf": {"max_steps": 60},
    "gd": {"max_steps": 12000, "checkpoint_every": 100, "sharpness_every": 500},  # ≈ 3 s a run here: caught mid-run
}


def snakemake_args(workdir: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", str(REPO / "profiles/default"), "--cores", "1", *args]


def json_status(results: Path) -> dict:
    out = subprocess.run([*STATUS, str(results), "--json"], capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    (found,) = json.loads(out.stdout)
    return found


@pytest.mark.workflow
@pytest.mark.slow
def test_status_of_a_workflow_killed_halfway(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(CONFIG))
    exp = tmp_path / "results/half"
    first = subprocess.run(snakemake_args(tmp_path, "results/half/a/seed0/gf/geometry.json"), capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert states(json_status(exp)) == {("a", 0, "gf"): "done", ("a", 0, "r0.25"): "waiting",
                                        ("a", 0, "r0.5"): "waiting", ("a", 0, "r0.8"): "waiting"}

    evaluated = [f"results/half/a/seed0/{run}/geometry.json" for run in ("r0.25", "r0.5", "r0.8")]  # no figures
    proc = subprocess.Popen(snakemake_args(tmp_path, *evaluated), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, live = time.monotonic() + 180, None
    while live is None:
        assert proc.poll() is None, f"the workflow ended (rc={proc.returncode}) before a GD run reported"
        assert time.monotonic() < deadline, "no GD run reported progress after 180 s"
        time.sleep(0.2)
        running = [r for r in json_status(exp)["runs"]
                   if r["state"] == "running" and 150 < r.get("step", 0) < CONFIG["gd"]["max_steps"]]
        live = running[0] if running else None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert live["stage"] == "gd" and live["loss"] > live["loss_threshold"] == 1e-9
    assert live["steps_per_second"] > 0 and live["max_steps"] == 12000 and live["sharpness"] > 0
    killed = live["run"]

    def expected(killed_state):
        return {("a", 0, run): "done" if run == "gf" else killed_state if run == killed else "waiting"
                for run in ("gf", "r0.25", "r0.5", "r0.8")}

    assert states(json_status(exp)) == expected("running")  # its last update is fresh: a kill is not yet visible
    time.sleep(progress.stale_after(0.5) + 0.5)
    after = json_status(exp)
    assert states(after) == expected("interrupted")
    row = next(r for r in after["runs"] if r["run"] == killed)
    assert row["step"] >= live["step"] and "a rerun resumes it" in row["note"]
    text = subprocess.run([*STATUS, str(tmp_path / "results")], capture_output=True, text=True, env=ENV).stdout
    print(text)
    assert f"a      0     {killed}" in text and "1 done, 1 interrupted, 2 waiting" in text

    # the rest with two threads and chunked sums: execution settings, so the killed run resumes from its checkpoint
    subprocess.run(snakemake_args(tmp_path, "--unlock"), capture_output=True, check=True)
    rest = subprocess.run(snakemake_args(tmp_path, *evaluated, "--cores", "2", "--config", "threads=2",
                                         "chunk_size=25"), capture_output=True, text=True, timeout=600)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert set(states(json_status(exp)).values()) == {"done"}
    log = (exp / f"logs/train_gd/a/seed0/{killed}.log").read_text()
    assert "resuming from" in log  # the killed run went on from its checkpoint
    result = json.loads((exp / f"a/seed0/{killed}/result.json").read_text())
    assert result["resumed_at_step"] >= 100 and result["threads"] == 2 and result["chunk_size"] == 25
    assert json.loads((exp / "a/seed0/gf/result.json").read_text())["threads"] == 1  # computed before: kept
    assert not list(exp.glob(f"*/seed0/*/{progress.NAME}")), "a finished job leaves no progress.json"
