"""Errors that name what is wrong and how to fix it."""


class ConfigError(ValueError):
    """A setting has a value the code cannot use; the message names the key and what is allowed."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk cannot be resumed: other settings, another kind of run, or not readable as one."""
