"""The progress file of a running job, ``progress.json`` in its run directory, read by ``normsharp status``.

While a GD, gradient-flow or evaluation job runs, it keeps ``progress.json`` fresh: a heartbeat thread rewrites it
every ``every`` seconds (the config's ``progress_seconds``) with the last progress its run reported (step, loss
against ε, last S, steps per second), so a file older than :func:`stale_after` means the process is gone (killed,
out of time, its node lost) whatever one step costs. A job that raises writes ``state: failed`` with the error
(``interrupted`` for Ctrl-C);
a job that ends removes the file (its results say the rest). Standard library only: the status reader imports
this module, and it starts in a few milliseconds.

Fields: ``stage`` (gd, gf, evaluate), ``state`` (running, failed, interrupted), ``started``, ``updated`` and
``reported`` (Unix times: job start, last write, last step report), ``every_seconds``, ``wall_seconds``, ``host``,
``pid``,
what the job fixed at its start (``loss_threshold``, ``max_steps``, ``eta`` …) and what its run reported last
(``step``, ``loss``, ``sharpness``, ``steps_per_second`` …); ``error`` when failed.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from pathlib import Path

NAME = "progress.json"
STALE_FACTOR, STALE_MARGIN = 3.0, 5.0  # a heartbeat missed three times, plus clock skew and file-system delay


def stale_after(every: float) -> float:
    """Seconds after its last write at which a progress file of a job writing every ``every`` s is stale."""
    return STALE_FACTOR * float(every) + STALE_MARGIN


def _finite(value):
    """JSON has no NaN or infinity: None for them."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class ProgressFile:
    """``with ProgressFile(run_dir / NAME, every, stage="gd", loss_threshold=ε) as progress:`` … ``progress.report(
    step=…, loss=…)``: written at the start, at each report and every ``every`` seconds; ``failed`` with the
    error if the block raises; removed when it ends normally."""

    def __init__(self, path, every: float, **fixed):
        self.path, self.every = Path(path), float(every)
        now = time.time()
        self.record = {"state": "running", **fixed, "started": now, "updated": now, "reported": None,
                       "every_seconds": self.every, "host": socket.gethostname(), "pid": os.getpid()}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._beat, name="normsharp-progress", daemon=True)

    def _write(self) -> None:
        with self._lock:
            now = time.time()
            self.record.update(updated=now, wall_seconds=now - self.record["started"])
            text = json.dumps({k: _finite(v) for k, v in self.record.items()}, indent=1)
            tmp = self.path.with_name(f".{NAME}.tmp")  # one job per run directory at a time
            tmp.write_text(text)
            os.replace(tmp, self.path)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._write()
            except OSError:  # a full or unmounted disk must not kill the computation; the next beat retries
                pass

    def report(self, **progress) -> None:
        """The run's latest progress (step, loss, sharpness, steps_per_second, …), written now."""
        with self._lock:
            self.record.update(progress, reported=time.time())
        self._write()

    def __enter__(self) -> ProgressFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        self._thread.start()
        return self

    def __exit__(self, kind, error, tb) -> None:
        self._stop.set()
        self._thread.join()
        if kind is None:
            self.path.unlink(missing_ok=True)
            return
        stopped = issubclass(kind, (KeyboardInterrupt, SystemExit))  # Ctrl-C, a signal turned into an exit
        with self._lock:
            self.record.update(state="interrupted" if stopped else "failed",
                               error=(f"{kind.__name__}: {error}".splitlines() or [""])[0][:1000])
        self._write()
