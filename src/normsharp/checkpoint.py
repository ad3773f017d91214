"""Checkpoints that survive a kill: written atomically, refused when the settings differ."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from .errors import CheckpointMismatch

log = logging.getLogger("normsharp")


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

    def due(self, step: int) -> bool:
        return self.every > 0 and step > 0 and step % self.every == 0

    def load(self) -> dict | None:
        """The saved state, None if there is none; CheckpointMismatch if it is from other settings."""
        if not self.path.exists():
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=False)
        if saved.get("key") != self.key:
            old = saved.get("settings", {})
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            raise CheckpointMismatch(
                f"checkpoint {self.path} was written by a run with other settings (differing: {', '.join(changed) or '?'}); "
                "delete it to start this run afresh, or restore the settings it was written with"
            )
        log.info("resuming from %s at step %d", self.path, saved["state"]["step"])
        return saved["state"]

    def save(self, state: dict) -> None:
        """Write to a temporary file, then rename over the old checkpoint (atomic on POSIX)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"key": self.key, "settings": self.settings, "state": state}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
