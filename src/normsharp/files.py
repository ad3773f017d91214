"""The files of a job: its log, atomic writes of JSON, tensors and trajectories, and one reader per kind of file.

Every file is written to a temporary name and renamed, so a killed job leaves nothing half-written. Every reader
refuses what it cannot trust with a :class:`~normsharp.errors.CorruptFileError` naming the file and the command
that recomputes it: a truncated file (a full disk, a copy cut short), a file of another kind, and a torch file
holding more than tensors and plain data (read with ``weights_only=True``: no pickled code ever runs).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointMismatch, ConfigError, CorruptFileError, first_line

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

        if isinstance(value, (ConfigError, DataMissingError, CorruptFileError, CheckpointMismatch)):
            # the message says what to do: one line, on stderr and in the log (which --show-failed-logs prints)
            log.error("%s: %s", kind.__name__, value)
            print(f"{kind.__name__}: {value}", file=sys.stderr)
        else:
            log.error("".join(traceback.format_exception(kind, value, tb)))
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


def corrupt(path, why: str | BaseException, kind: str = "file") -> CorruptFileError:
    """The error for a file that cannot be trusted: names it, says why, gives the command that recomputes it.

    ``snakemake --forcerun FILE`` reruns the job that writes FILE and every job downstream of it; the path is
    the one the job was given (relative to the workflow's working directory). ``kind``: what it should be."""
    if isinstance(why, pickle.UnpicklingError):
        why = "it holds Python objects beyond tensors and plain data, refused since loading them could run code"
    elif isinstance(why, BaseException):
        why = f"truncated or not a {kind}: {first_line(why, 160)}"
    return CorruptFileError(f"{path} is corrupt ({why}); recompute it and what depends on it with: "
                            f"snakemake --cores N --forcerun {path} (and this run's --configfile, if any)")


def read_json(path) -> dict:
    """A JSON record (result.json, geometry.json, test.json, a refinement round)."""
    try:
        record = json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise corrupt(path, err, "JSON file") from None
    if not isinstance(record, dict):
        raise corrupt(path, f"a JSON {type(record).__name__}, not a record")
    return record


def save_tensor(path, theta: torch.Tensor) -> None:
    import torch

    atomic_write(path, lambda p: torch.save(theta.detach().cpu(), p))


def _torch_load(path):
    """torch.load on the CPU with ``weights_only=True``: tensors, numbers, strings, None and containers only."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise corrupt(path, err, "torch file") from None


def load_tensor(path) -> torch.Tensor:
    """A tensor saved with :func:`save_tensor` (a run's ``theta.pt``), on the CPU."""
    import torch

    value = _torch_load(path)
    if not isinstance(value, torch.Tensor):
        raise corrupt(path, f"holds a {type(value).__name__}, not a tensor")
    return value


DATA_KEYS = ("name", "x_train", "y_train", "x_test", "y_test", "num_classes")
INIT_KEYS = ("theta0", "model", "seed", "num_params")


def _load_record(path, keys: tuple[str, ...]) -> dict:
    value = _torch_load(path)
    if not isinstance(value, dict) or not set(keys) <= set(value):
        raise corrupt(path, f"not a record with the keys {', '.join(keys)}")
    return value


def load_prepared_fields(path) -> dict:
    """The fields of a prepared dataset (``data.pt``: ``DATA_KEYS``), on the CPU as written."""
    return _load_record(path, DATA_KEYS)


def load_init(path) -> dict:
    """θ₀ of a setup and seed with its model spec, seed and parameter count (``init.pt``: ``INIT_KEYS``)."""
    return _load_record(path, INIT_KEYS)


def read_parquet(path):
    """A Parquet table as a pandas data frame (a run's trajectory, the aggregate tables)."""
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:  # ArrowInvalid (a truncated file) is also a ValueError
        raise corrupt(path, err, "Parquet file") from None


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
