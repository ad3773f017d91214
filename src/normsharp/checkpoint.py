"""Checkpoints that survive a kill: written atomically, refused when the settings differ, set aside when unreadable.

A file holds ``{format, key, settings, kind, state}``: ``key`` is the fingerprint of the run's settings,
``kind`` the name of the run-state class (``dynamics.GDState`` …) and ``state`` its ``to_dict()``, made of
tensors, numbers, strings, None and lists/tuples/dicts of them, so it loads with
``torch.load(weights_only=True)`` (no code runs while reading it). Files of the first release (format 1:
``{key, settings, state}``, no kind) hold the same state keys and the same plain types; they load the same way.

A file that cannot be read as a checkpoint (truncated, not a checkpoint, or a pickle of other objects, which
``weights_only=True`` refuses without running it) is set aside as ``checkpoint.pt.corrupt-<UTC time>``, never
deleted, and the run starts again from θ₀ with a warning in its log. A readable checkpoint of other settings,
another kind of run or a newer format is refused (CheckpointMismatch): it is someone's valid state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Protocol, TypeVar

import torch

from .errors import CheckpointMismatch, first_line

log = logging.getLogger("normsharp")

FORMAT = 2  # 1: {key, settings, state} (first release); 2: adds format and kind


class Saveable(Protocol):
    def to_dict(self) -> dict: ...

    @classmethod
    def from_dict(cls, state: dict): ...


S = TypeVar("S", bound=Saveable)


def fingerprint(settings: dict) -> str:
    """SHA-256 of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class Checkpoint:
    """The state of one run at ``path``, saved every ``every`` steps (0 = never) for ``settings``."""

    def __init__(self, path: str | os.PathLike, every: int, settings: dict):
        self.path = Path(path)
        self.every = int(every)
        self.settings = settings
        self.key = fingerprint(settings)
        self.resumed_at = 0  # the step a run resumed from (0: started at θ₀), set by load

    def due(self, step: int) -> bool:
        return self.every > 0 and step > 0 and step % self.every == 0

    def _refuse(self, why: str) -> CheckpointMismatch:
        return CheckpointMismatch(f"checkpoint {self.path} {why}; delete it to start this run afresh")

    def _set_aside(self, why: str) -> None:
        """Rename the unreadable file to ``<name>.corrupt-<UTC time>`` (kept for inspection) and warn."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(self.path, aside)
        log.warning("checkpoint %s cannot be read (%s): set aside as %s; the run restarts from θ₀",
                    self.path, why, aside.name)

    def load(self, kind: type[S]) -> S | None:
        """The saved state as a ``kind``; None if there is no file or it cannot be read as a checkpoint (then it
        is set aside); CheckpointMismatch if it is from other settings, of another kind of run, or newer."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return self._set_aside("it holds objects beyond tensors and plain data, refused unread")
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            return self._set_aside(f"truncated or not a torch file: {first_line(err, 120)}")
        if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
            return self._set_aside("not a normsharp checkpoint")
        if saved.get("key") != self.key:
            old = saved.get("settings", {})
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            raise CheckpointMismatch(
                f"checkpoint {self.path} was written by a run with other settings "
                f"(differing: {', '.join(changed) or '?'}); "
                "delete it to start this run afresh, or restore the settings it was written with"
            )
        if saved.get("format", 1) > FORMAT:
            raise self._refuse(f"has format {saved['format']}, newer than this version reads ({FORMAT})")
        if saved.get("kind", kind.__name__) != kind.__name__:  # format 1 has no kind: its state keys decide
            raise self._refuse(f"holds a {saved['kind']}, not the {kind.__name__} this run needs")
        try:
            state = kind.from_dict(saved["state"])
        except ValueError as err:
            raise self._refuse(str(err)) from err
        log.info("resuming from %s at step %d", self.path, saved["state"]["step"])
        self.resumed_at = int(saved["state"]["step"])
        return state

    def save(self, state: Saveable) -> None:
        """Write to a temporary file, then rename over the old checkpoint (atomic on POSIX)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"format": FORMAT, "key": self.key, "settings": self.settings, "kind": type(state).__name__,
                    "state": state.to_dict()}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
