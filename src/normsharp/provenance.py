"""What produced a result: library version, git commit of the checkout, torch and Python, device, dtype.

Records, not settings: they go into result.json and runs.parquet, never into a job's params, so a new commit
or another machine does not rerun finished jobs.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    import torch

# Columns of runs.parquet (NA for results written before they existed): what computed the run (its GD or GF
# job: versions, device, dtype, and the execution settings it used, which are no job's params, so that a study
# mixing them shows it), and the device and execution settings of its evaluate job.
COLUMNS = {"normsharp_version": "string", "git_commit": "string", "git_dirty": "boolean",
           "torch_version": "string", "python_version": "string", "device": "string", "device_name": "string",
           "dtype": "string", "threads": "Int64", "chunk_size": "Int64", "checkpoint_every": "Int64",
           "resumed_at_step": "Int64", "eval_device": "string", "eval_threads": "Int64", "eval_chunk_size": "Int64"}
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root when run from a checkout's src/


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})  # parallel jobs: no index refresh
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the library runs from; (None, None) without git or outside a checkout.

    Dirty means tracked files differ from the commit (untracked files, e.g. results, do not count)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != CHECKOUT:  # an installed copy inside some other repository
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if commit is None or status is None else status != "")


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device, dtype: torch.dtype) -> dict:
    """The record of what computed a run on ``device`` in ``dtype``."""
    import torch  # here: aggregate and figures import this module's COLUMNS without torch

    commit, dirty = git_state()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"normsharp_version": __version__, "git_commit": commit, "git_dirty": dirty,
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "device": device.type, "device_name": name, "dtype": str(dtype).removeprefix("torch.")}
