"""Datasets as in-memory tensors, preprocessed with training-set statistics.

Every dataset goes through one path: a *raw loader* returns unprocessed numpy arrays
(:class:`RawSplit`), then :func:`load_data` selects the training subset (first N or class-balanced N),
centres and standardises each feature with the statistics of that subset, and builds the targets:
one-hot vectors for MSE on a classification set, class labels for cross-entropy, real vectors for a
regression set. A new dataset is an entry in :data:`normsharp.registry.DATASETS` plus, unless
torchvision reads it, its loader in :data:`BUILT_IN_LOADERS`; :data:`RAW_LOADERS` has one per registry name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .containers import Data, RawSplit
from .errors import ConfigError
from .registry import DATASETS


def _digits(spec: dict) -> RawSplit:
    """scikit-learn's bundled 8×8 digits (1797 images): the last 500 are the test set."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float64)[:, None, :, :]  # (N, 1, 8, 8)
    t = bunch.target.astype(np.int64)
    n_test = 500
    return RawSplit(x[:-n_test], t[:-n_test], x[-n_test:], t[-n_test:], num_classes=10)


def _synthetic(spec: dict) -> RawSplit:
    """Seeded teacher regression: x ~ N(0, I_d), y = tanh(x W₁/√d) W₂/√h + noise·N(0, I) on train."""
    dim = int(spec.get("dim", 20))
    out_dim = int(spec.get("out_dim", 1))
    width = int(spec.get("teacher_width", 32))
    noise = float(spec.get("noise", 0.0))
    n_pool = int(spec.get("n_train", 200))
    n_test = int(spec.get("n_test", 1000))
    rng = np.random.default_rng(int(spec.get("data_seed", 0)))
    w1 = rng.standard_normal((dim, width))
    w2 = rng.standard_normal((width, out_dim))

    def teacher(x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ w1 / np.sqrt(dim)) @ w2 / np.sqrt(width)

    x_train = rng.standard_normal((n_pool, dim))
    x_test = rng.standard_normal((n_test, dim))
    t_train = teacher(x_train) + noise * rng.standard_normal((n_pool, out_dim))
    return RawSplit(x_train, t_train, x_test, teacher(x_test), num_classes=None)


def _torchvision(name: str) -> Callable[[dict], RawSplit]:
    def load(spec: dict) -> RawSplit:
        from .image_data import load_torchvision

        return load_torchvision(name, spec)

    return load


def _single_point(spec: dict) -> RawSplit:
    from .theory import single_point_raw

    return single_point_raw(spec)


def _npz(spec: dict) -> RawSplit:
    from .custom import load_npz

    return RawSplit(*load_npz(spec))


def _custom(spec: dict) -> RawSplit:
    from .custom import load_custom

    return RawSplit(*load_custom(spec))


BUILT_IN_LOADERS: dict[str, Callable[[dict], RawSplit]] = {
    "digits": _digits,
    "synthetic": _synthetic,
    "single_point": _single_point,
    "npz": _npz,  # the user's arrays in an .npz file (normsharp.custom)
    "custom": _custom,  # the user's function returning those arrays
}
# One loader per registry name: torchvision's datasets share one, the built-in ones have their own.
RAW_LOADERS: dict[str, Callable[[dict], RawSplit]] = {
    name: _torchvision(name) if dataset.downloadable else BUILT_IN_LOADERS[name] for name, dataset in DATASETS.items()
}


def select_train_indices(labels: np.ndarray | None, n: int, subset: str, num_classes: int | None) -> np.ndarray:
    """Indices of the first n examples, or of the first ⌈n/C⌉/⌊n/C⌋ of each class (class-balanced)."""
    pool = len(labels) if labels is not None else 0
    if subset == "first":
        return np.arange(n)
    if subset != "balanced":
        raise ConfigError(f"dataset.subset is {subset!r}; allowed: 'first', 'balanced'")
    if num_classes is None:
        raise ConfigError("dataset.subset 'balanced' needs a classification dataset; use 'first'")
    quotas = [n // num_classes + (1 if c < n % num_classes else 0) for c in range(num_classes)]
    chosen = []
    for c, quota in enumerate(quotas):
        idx = np.flatnonzero(labels == c)[:quota]
        if len(idx) < quota:
            raise ConfigError(
                f"dataset.n_train={n} (balanced) needs {quota} examples of class {c}, "
                f"the training pool of {pool} has {len(idx)}; lower n_train or use subset 'first'"
            )
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale each feature by the training mean and std (std 0 → left unscaled)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std


def load_data(spec: dict, loss: str, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Data:
    """Build the dataset named by ``spec['name']`` for ``loss`` ('mse' or 'ce').

    spec keys: ``name``; ``n_train`` (size of the training subset); ``subset`` ('first' or
    'balanced'); ``n_test`` (optional cap on the test set); ``standardise`` (default true; false keeps
    raw inputs, e.g. for the single-point diagonal-network problem); plus loader-specific keys.
    """
    name = spec.get("name")
    if name not in RAW_LOADERS:
        raise ConfigError(f"dataset.name is {name!r}; allowed: {sorted(RAW_LOADERS)}")
    if loss not in ("mse", "ce"):
        raise ConfigError(f"loss is {loss!r}; allowed: 'mse', 'ce'")
    if name == "single_point" and spec.get("standardise", True):
        raise ConfigError("dataset 'single_point' needs standardise: false (standardising one training point "
                          "maps its x to 0)")
    raw = RAW_LOADERS[name](spec)
    if raw.num_classes is None and loss == "ce":
        raise ConfigError(f"dataset {name!r} is a regression set: cross-entropy needs classes; use loss 'mse'")

    n_pool = len(raw.x_train)
    n_train = int(spec.get("n_train", n_pool))
    if not 1 <= n_train <= n_pool:
        raise ConfigError(f"dataset.n_train={n_train} but {name!r} has {n_pool} training examples; choose 1..{n_pool}")
    labels = raw.t_train if raw.num_classes is not None else None
    idx = select_train_indices(labels, n_train, spec.get("subset", "first"), raw.num_classes)
    x_train, t_train = raw.x_train[idx], raw.t_train[idx]
    n_test = spec.get("n_test")
    keep = slice(None) if n_test is None else slice(int(n_test))
    x_test, t_test = raw.x_test[keep], raw.t_test[keep]
    x_train, x_test = x_train.astype(np.float64), x_test.astype(np.float64)
    if spec.get("standardise", True):
        x_train, x_test = standardise(x_train, x_test)

    def targets(t: np.ndarray) -> torch.Tensor:
        if raw.num_classes is None:
            return torch.as_tensor(t, dtype=dtype, device=device).reshape(len(t), -1)
        labels_t = torch.as_tensor(t, dtype=torch.long, device=device)
        if loss == "ce":
            return labels_t
        return torch.nn.functional.one_hot(labels_t, raw.num_classes).to(dtype)

    return Data(
        name=name,
        x_train=torch.as_tensor(x_train, dtype=dtype, device=device),
        y_train=targets(t_train),
        x_test=torch.as_tensor(x_test, dtype=dtype, device=device),
        y_test=targets(t_test),
        num_classes=raw.num_classes,
    )
