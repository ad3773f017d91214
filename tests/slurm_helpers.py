"""Run Snakemake through a real single-node SLURM (brought up by ``.ci/slurm-up.sh``).

``run_snakemake_slurm`` runs ``snakemake --workflow-profile <copy of profiles/slurm>`` as a user does:
the copy differs from the shipped profile only in the two lines marked ``EDIT ME`` (``slurm_partition`` set to
the local partition, ``slurm_account`` empty: the test cluster has no accounting). The GPU requests stay: the
test node declares one fake GPU (``gpu:1`` on /dev/null, see .ci/slurm-up.sh). No cores, memory or runtime
is overridden.

``NORMSHARP_REQUIRE_SLURM=1`` turns "SLURM cannot run here: skip" into a failure (.ci/run sets it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE

SLURM_UP = REPO / ".ci" / "slurm-up.sh"
SLURM_DOWN = REPO / ".ci" / "slurm-down.sh"
SLURM_PROFILE = REPO / "profiles" / "slurm"


@dataclass
class SlurmCluster:
    partition: str
    cpus: int
    real_memory_mb: int
    started_here: bool  # this test session started the daemons (and stops them at the end)


def _banner(text: str) -> str:
    line = "#" * 78
    return f"\n{line}\n{text}\n{line}\n"


def _query_cluster(started_here: bool) -> SlurmCluster:
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout.split()
    partition = ([p for p in partitions if p.endswith("*")] or partitions)[0].rstrip("*")
    node = scontrol("node")[0]
    return SlurmCluster(partition, int(node["CPUTot"]), int(node["RealMemory"]), started_here)


def running_cluster():
    """Generator of conftest's ``slurm_cluster`` fixture: a running single-node SLURM (``.ci/slurm-up.sh``), stopped
    after the yield if this call started it; skips loudly if it cannot be brought up."""
    try:
        proc = subprocess.run(["bash", str(SLURM_UP)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=900)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = -1, f"{e.stdout or ''}{e.stderr or ''}\n.ci/slurm-up.sh timed out after {e.timeout} s"
    if rc != 0:
        msg = _banner(f"SLURM IS NOT AVAILABLE: .ci/slurm-up.sh exited with {rc}; the SLURM tests are NOT run.\n"
                      f"---- output of .ci/slurm-up.sh (tail) ----\n{out[-4000:]}")
        print(msg, file=sys.stderr)
        if os.environ.get("NORMSHARP_REQUIRE_SLURM") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    cluster = _query_cluster(started_here=proc.stdout.rstrip().endswith("SLURM_UP_STARTED=1"))
    yield cluster
    if cluster.started_here:
        subprocess.run(["bash", str(SLURM_DOWN)], stdin=subprocess.DEVNULL, timeout=120, check=False)


def profile_config() -> dict:
    return yaml.safe_load((SLURM_PROFILE / "config.v8+.yaml").read_text())


def user_profile(cluster: SlurmCluster, where: Path) -> Path:
    """The shipped profile with account and partition edited, as the README tells a user (a copy under where)."""
    text = (SLURM_PROFILE / "config.v8+.yaml").read_text()
    edits = {'slurm_account: "<YOUR_ACCOUNT>"': 'slurm_account: ""',
             'slurm_partition: "<YOUR_PARTITION>"': f'slurm_partition: "{cluster.partition}"'}
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    folder = where / "user-profile"
    folder.mkdir(exist_ok=True)
    (folder / "config.v8+.yaml").write_text(text)
    return folder


def run_snakemake_slurm(cluster: SlurmCluster, workdir: Path, snakefile: Path, *targets: str,
                        timeout: int = 600) -> tuple[int, str]:
    """(return code, output) of the workflow run through SLURM with the profile as a user edits it.

    On timeout snakemake gets SIGINT (the plugin cancels its jobs), leftovers are scancelled, and rc is 124.
    """
    cmd = [SNAKEMAKE, "--workflow-profile", str(user_profile(cluster, workdir)), "--snakefile", str(snakefile),
           "--directory", str(workdir), *targets]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    log = workdir / "snakemake-slurm.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run(["scancel", "--partition", cluster.partition, "--user", str(os.getuid())], check=False)
            rc = 124
    return rc, " ".join(cmd) + "\n" + log.read_text()


def scontrol(kind: str, *names: str) -> list[dict[str, str]]:
    """``scontrol show <kind> -o`` as one dict per record (finished jobs stay for MinJobAge = 600 s)."""
    out = subprocess.run(["scontrol", "show", kind, "-o", *names], capture_output=True, text=True, check=True)
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.stdout.splitlines()]


def jobs_in(workdir: Path) -> list[dict[str, str]]:
    """The SLURM jobs whose working directory is ``workdir``, oldest first."""
    jobs = [j for j in scontrol("job") if Path(j.get("WorkDir", "")) == Path(workdir)]
    return sorted(jobs, key=lambda j: int(j["JobId"]))

