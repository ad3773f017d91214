"""The data containers every layer passes around: raw arrays (:class:`RawSplit`) and model-ready tensors
(:class:`Data`).

A leaf module: it imports neither torch nor any other module of the package, so numpy-only code
(:mod:`normsharp.theory`, the loaders) can build a :class:`RawSplit` without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class RawSplit:
    """Unprocessed arrays: inputs (N, ...) and targets (N,) int labels or (N, k) real values."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    num_classes: int | None  # None for a regression set


@dataclass
class Data:
    """Training and test tensors ready for full-batch work."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.num_classes is not None else self.y_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]
