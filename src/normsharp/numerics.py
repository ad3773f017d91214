"""Device, dtype and determinism settings, in one place."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def setup_numerics(device: str = "auto", dtype: str = "float64",
                   threads: int | None = None) -> tuple[torch.device, torch.dtype]:
    """Resolve ``device`` ('auto' → cuda when present, else cpu) and ``dtype``; TF32 off; deterministic kernels."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype is {dtype!r}; allowed: {sorted(DTYPES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device is {device!r}; allowed: 'auto', 'cpu', 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is visible; use device 'auto' or 'cpu'")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    # the same flag as torch.use_deterministic_algorithms(True), which also imports torch._inductor (1.7 s per job)
    torch.set_deterministic_debug_mode("error")
    if threads:
        torch.set_num_threads(int(threads))
    return torch.device(device), DTYPES[dtype]
