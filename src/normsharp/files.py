"""The files of a job: its log, and atomic writes of JSON, tensors and trajectories.

Every file is written to a temporary name and renamed, so a killed job leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("normsharp")

TRAJECTORY_COLUMNS = ["step", "time", "train_loss", "sharpness", "test_loss", "test_accuracy", "opt_sharpness", "edge"]


def log_to(path) -> None:
    """Send the library's log, and the traceback of an uncaught error, to a job's log file."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.info("job started (imports done)")  # benchmarks/bench_pipeline.py times each job's start from this line

    def hook(kind, value, tb):
        from .image_data import DataMissingError

        log.error("".join(traceback.format_exception(kind, value, tb)))
        if isinstance(value, (ConfigError, DataMissingError)):  # the message says what to do; no traceback
            print(f"{kind.__name__}: {value}", file=sys.stderr)
        else:
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = hook


def atomic_write(path: str | os.PathLike, write) -> None:
    """``write(tmp)`` to a hidden temporary beside ``path``, then rename it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=float)))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def save_tensor(path, theta: torch.Tensor) -> None:
    import torch

    atomic_write(path, lambda p: torch.save(theta.detach().cpu(), p))


def load_tensor(path) -> torch.Tensor:
    """A tensor (or the dict) saved with torch.save, on the CPU."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def write_trajectory(path, rows: list[dict]) -> None:
    """Columns step (int64), then float64 columns (NaN where a row lacks them), written with pyarrow (no pandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"step": pa.array([int(r["step"]) for r in rows], pa.int64())}
    for k in TRAJECTORY_COLUMNS[1:]:
        columns[k] = pa.array([float(r.get(k, math.nan)) for r in rows], pa.float64())
    atomic_write(path, lambda p: pq.write_table(pa.table(columns), p))


def write_parquet(path, frame) -> None:
    """A pandas data frame, without its index."""
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))
