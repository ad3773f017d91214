"""The SLURM profile (profiles/slurm) against a real single-node SLURM started by ``.ci/slurm-up.sh``.

The profile is used as shipped, with only account and partition edited (slurm_helpers.user_profile). A reduced
quickstart goes through run-controller.sbatch: snakemake as a 1-CPU job that submits the pipeline's jobs, with
the profile's resources (the GPU requests included: the test node declares one GPU on /dev/null), on the 2-CPU
node; it must give the results of a local run. A config too large for the node stops before submission. A tiny
shell workflow whose rules carry the pipeline's rule names shows the profile's retries (runtime growing with the
attempt) and the bundling of evaluation jobs into one submission. The cluster tests skip loudly when SLURM
cannot run here.
"""

import copy
import os
import subprocess
import time

import pandas as pd
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, reduced_config
from slurm_helpers import SLURM_PROFILE, SLURM_UP, jobs_in, profile_config, run_snakemake_slurm, scontrol, user_profile

# One setup of the workflow test, one η above η_c: the GF reference and one GD run.
SMALL = {**reduced_config("mini"), "experiment": "slurm", "eta": {"relative": [2.0]}}
SMALL["setups"] = {"b": {k: v for k, v in SMALL["setups"]["b"].items() if k != "eta"}}
TARGET = "results/slurm/runs.parquet"


def _minutes(expr, attempt: int) -> int:
    return int(eval(str(expr), {"attempt": attempt}))  # the profile's own expression


def _hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def _write_config(workdir, config):
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("profile", ["default", "slurm"])
@pytest.mark.workflow
def test_profile_dry_run(tmp_path, profile):
    """Both profiles are accepted, and every rule the SLURM profile names exists in the workflow."""
    _write_config(tmp_path, SMALL)
    base = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--workflow-profile", str(REPO / "profiles" / profile)]
    out = subprocess.run([*base, "-n"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rules = subprocess.run([*base, "--list-rules"], capture_output=True, text=True, timeout=300).stdout.split()
    cfg = profile_config()
    assert set(cfg["set-resources"]) | set(cfg["groups"]) <= set(rules), rules


@pytest.mark.slurm
def test_slurm_up_rerun_is_noop(slurm_cluster):
    out = subprocess.run(["bash", str(SLURM_UP)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("SLURM_UP_STARTED=0"), out.stdout


def run_controller_job(cluster, workdir, *targets, timeout=1200):
    """Submit profiles/slurm/run-controller.sbatch as a user does; wait for it; its scontrol record."""
    profile = user_profile(cluster, workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    submit = subprocess.run(
        ["sbatch", "--parsable", "-p", cluster.partition, "--output", str(workdir / "controller-%j.log"),
         str(SLURM_PROFILE / "run-controller.sbatch"), "--workflow-profile", str(profile), "--directory",
         str(workdir), *targets], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    head = submit.stdout.strip().split(";")[0]
    deadline = time.time() + timeout
    while scontrol("job", head)[0]["JobState"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
        if time.time() > deadline:
            subprocess.run(["scancel", head], check=False)
            pytest.fail(f"controller job {head} still {scontrol('job', head)[0]['JobState']} after {timeout} s")
        time.sleep(5)
    log = workdir / f"controller-{head}.log"
    return scontrol("job", head)[0], log.read_text() if log.exists() else ""


@pytest.mark.slurm
@pytest.mark.workflow
@pytest.mark.slow
def test_quickstart_through_controller_job_equals_local_run(slurm_cluster, tmp_path):
    """The shipped profile (account and partition edited) run by run-controller.sbatch, i.e. snakemake as a 1-CPU
    SLURM job submitting the pipeline's jobs, on the 2-CPU test node: every job completes, results as local."""
    cluster_dir, local_dir = tmp_path / "cluster", tmp_path / "local"
    for d in (cluster_dir, local_dir):
        d.mkdir()
        _write_config(d, SMALL)
    local = subprocess.Popen(  # runs while the cluster run waits on the queue
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(local_dir), "--workflow-profile",
         str(REPO / "profiles" / "default"), "--cores", "1", TARGET],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    head, output = run_controller_job(slurm_cluster, cluster_dir, TARGET)
    local_output = local.communicate(timeout=600)[0]
    assert local.returncode == 0, local_output[-4000:]
    assert head["JobState"] == "COMPLETED", (head, output[-15000:])
    assert head["NumCPUs"] == "1" and head["WorkDir"] == str(REPO), head
    print(f"controller: NumCPUs={head['NumCPUs']} MinMemoryNode={head.get('MinMemoryNode')} "
          f"TimeLimit={head['TimeLimit']}")
    assert all(int(j["JobId"]) > int(head["JobId"]) for j in jobs_in(cluster_dir))

    # every job went through sbatch into the test partition, with the profile's resources
    # (the plugin's --comment is rule_<rule>_wildcards_<...> or rule_<group>_<its rules>)
    profile = profile_config()
    groups = set(profile["groups"].values())
    jobs = {}
    for job in jobs_in(cluster_dir):
        name = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        jobs[next((g for g in groups if name.startswith(f"{g}_")), name)] = job
    assert set(jobs) == {"setup", "gradient_flow", "train_gd", "evaluation", "summary"}, jobs
    for name, job in jobs.items():
        assert job["JobState"] == "COMPLETED" and job["Partition"] == slurm_cluster.partition, job
        assert ("gpu" in job.get("TresPerJob", "")) == (name in ("gradient_flow", "train_gd")), (name, job)
    for name, job in sorted(jobs.items()):  # the requests, for the record (pytest -s)
        print(f"{name}: NumCPUs={job['NumCPUs']} MinMemoryNode={job.get('MinMemoryNode')} "
              f"TimeLimit={job['TimeLimit']} TresPerJob={job.get('TresPerJob', '')}")
        assert int(job["NumCPUs"]) == 1, job  # group members stacked in one CPU, as the 2-CPU node needs
    for rule in ("gradient_flow", "train_gd"):
        assert jobs[rule]["TimeLimit"] == _hms(_minutes(profile["set-resources"][rule]["runtime"], 1))
    logs = cluster_dir / ".snakemake" / "slurm_logs"
    assert list(logs.glob(f"rule_train_gd/**/{jobs['train_gd']['JobId']}.log"))
    assert list(logs.glob(f"group_evaluation*/**/{jobs['evaluation']['JobId']}.log"))

    # and computed what a local run computes
    for name in ("runs.parquet", "trajectories.parquet"):
        cluster, here = (pd.read_parquet(d / "results/slurm" / name) for d in (cluster_dir, local_dir))
        pd.testing.assert_frame_equal(cluster.drop(columns="wall_seconds", errors="ignore"),
                                      here.drop(columns="wall_seconds", errors="ignore"))
    assert len(pd.read_parquet(cluster_dir / "results/slurm/runs.parquet")) == 2


RETRY_SNAKEFILE = r'''
ETAS = ["0.01", "0.02", "0.04"]

rule all:
    input: expand("eval_{eta}.txt", eta=ETAS)

rule train_gd:
    output: "train.txt"
    resources:
        try_no=lambda wildcards, attempt: attempt,
    shell:
        """
        echo "attempt {resources.try_no} SLURM_JOB_ID=$SLURM_JOB_ID" >> attempts.txt
        if [ {resources.try_no} -lt 2 ]; then echo "failing attempt {resources.try_no} on purpose" >&2; exit 3; fi
        echo SLURM_JOB_ID=$SLURM_JOB_ID > {output}
        """

rule evaluate:
    input: "train.txt"
    output: "eval_{eta}.txt"
    shell: "echo SLURM_JOB_ID=$SLURM_JOB_ID > {output}"
'''


@pytest.mark.slurm
@pytest.mark.workflow
@pytest.mark.slow
def test_retry_gets_longer_runtime_and_evaluations_share_one_job(slurm_cluster, tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(RETRY_SNAKEFILE)
    rc, output = run_snakemake_slurm(slurm_cluster, tmp_path, snakefile)
    assert rc == 0, output[-15000:]

    attempts = [line.split() for line in (tmp_path / "attempts.txt").read_text().splitlines()]
    assert [a[1] for a in attempts] == ["1", "2"], attempts
    first, second = (a[2].split("=")[1] for a in attempts)
    runtime = profile_config()["set-resources"]["train_gd"]["runtime"]
    assert _minutes(runtime, 2) > _minutes(runtime, 1)
    assert scontrol("job", first)[0]["TimeLimit"] == _hms(_minutes(runtime, 1))
    assert scontrol("job", second)[0]["TimeLimit"] == _hms(_minutes(runtime, 2))
    logs = tmp_path / ".snakemake" / "slurm_logs" / "rule_train_gd"
    assert "failing attempt 1 on purpose" in (logs / f"{first}.log").read_text()

    eval_ids = {(tmp_path / f"eval_{eta}.txt").read_text().split("=")[1].strip() for eta in ("0.01", "0.02", "0.04")}
    assert len(eval_ids) == 1, f"the three evaluations ran in jobs {eval_ids}, not in one submission"
    assert eval_ids.pop() not in ("", second)


@pytest.mark.slurm
@pytest.mark.workflow
def test_job_no_node_can_run_stops_before_submission(slurm_cluster, tmp_path):
    """A setup too large for every node: the run stops at once, naming rule, request, offer and key."""
    big = copy.deepcopy(SMALL)
    big["setups"]["b"]["model"]["width"] = 20000  # activations alone: ≈ 10 × n × width × depth × 8 B
    big["setups"]["b"]["dataset"]["n_train"] = 60000
    big["setups"]["b"]["dataset"]["name"] = "mnist"
    _write_config(tmp_path, big)
    rc, output = run_snakemake_slurm(slurm_cluster, tmp_path, REPO / "Snakefile", TARGET, timeout=300)
    assert rc != 0, output[-5000:]
    assert "would stay PENDING forever, nothing was submitted" in output, output[-5000:]
    assert f"no node of partition '{slurm_cluster.partition}' offers that" in output, output[-5000:]
    assert "rule gradient_flow" in output and "set-resources: gradient_flow: mem_mb" in output, output[-5000:]
    assert f"{slurm_cluster.real_memory_mb} MB" in output, output[-5000:]
    assert jobs_in(tmp_path) == []

