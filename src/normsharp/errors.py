"""Errors that name what is wrong and how to fix it."""


class ConfigError(ValueError):
    """A setting has a value the code cannot use; the message names the key and what is allowed."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk was written by a run with different settings."""
