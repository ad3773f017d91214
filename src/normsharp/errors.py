"""Errors that name what is wrong and how to fix it."""


class ConfigError(ValueError):
    """A setting has a value the code cannot use; the message names the key and what is allowed."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk cannot be resumed: other settings, another kind of run, or not readable as one."""


class CorruptFileError(RuntimeError):
    """An intermediate file cannot be read: truncated, not the kind of file its name says, or a pickle holding
    more than tensors and plain data (refused, since loading it could run code). The message names the file
    and the command that recomputes it."""


def first_line(error: BaseException, limit: int) -> str:
    """The first line of ``error``'s message, at most ``limit`` characters (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [""])[0][:limit] or type(error).__name__
