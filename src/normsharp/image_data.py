"""MNIST, CIFAR-10, FashionMNIST, CIFAR-100 and SVHN through torchvision's dataset classes (files must be on disk).

Each is a :data:`normsharp.registry.DATASETS` entry with ``torchvision`` set (its class, folder and
whether its files are checksummed live there). :func:`load_torchvision` returns the full training pool
and the full test set as a :class:`~normsharp.containers.RawSplit` of raw
pixels: uint8 in 0–255, shape (N, 1, 28, 28) resp. (N, 3, 32, 32), labels int64. They stay uint8 on
purpose (CIFAR-10's pool is 150 MB as uint8, 1.2 GB as float64): :func:`normsharp.data.load_data`
selects the training subset first and converts to float64 before standardising, so scale and dtype
of the raw pixels do not matter. Nothing here downloads: :func:`download` does, once, for the
``download_data`` rule; a missing dataset raises :class:`DataMissingError` saying where it looked
and the command that fetches it.

torchvision checks each CIFAR-10 file against the md5 of the official release; ``verify_checksums:
false`` in the dataset spec skips that check only (files must still be in the release's pickle layout),
for a re-packed copy or the tiny stand-ins the tests write.
"""

from __future__ import annotations

import os

import numpy as np

from .containers import RawSplit
from .errors import ConfigError
from .registry import DATASETS, DOWNLOADABLE


class DataMissingError(FileNotFoundError):
    """A dataset's files are not on disk (or are incomplete); the message says how to fetch them."""


def _dataset_class(name: str):
    if name not in DOWNLOADABLE:
        raise ConfigError(f"dataset.name is {name!r}; downloadable: {sorted(DOWNLOADABLE)}")
    import torchvision.datasets

    return getattr(torchvision.datasets, DATASETS[name].torchvision)


def _missing_message(name: str, root: str, reason: str) -> str:
    cls = DATASETS[name].torchvision
    where = os.path.join(root, DATASETS[name].folder)
    return (
        f"dataset {name!r} was not found in data_dir {root!r} (looked in {os.path.abspath(where)}; "
        f"torchvision says: {reason}).\n"
        f"Fetch it once (needs network):\n"
        f"    snakemake --cores 1 download_data --configfile <your config>\n"
        f"or directly:\n"
        f"    python -c \"import torchvision; torchvision.datasets.{cls}('{root}', download=True)\"\n"
        f"or set data_dir in the config to a folder that already holds it."
        + ("\nA re-packed copy fails the release's md5 check: set dataset.verify_checksums: false."
           if DATASETS[name].checksummed else "")
    )


def _unchecked(cls):
    """The torchvision class with its per-file md5s set to None (check_integrity then tests existence only)."""
    if hasattr(cls, "split_list"):  # SVHN
        return type(f"Unchecked{cls.__name__}", (cls,),
                    {"split_list": {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}})
    return type(f"Unchecked{cls.__name__}", (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _open(name: str, root: str, train: bool, verify_checksums: bool = True):
    cls = _dataset_class(name)
    if DATASETS[name].checksummed and not verify_checksums:
        cls = _unchecked(cls)
    try:
        if name == "svhn":
            return cls(root, split="train" if train else "test", download=False)
        return cls(root, train=train, download=False)
    except RuntimeError as err:  # torchvision: "Dataset not found (or corrupted). You can use download=True ..."
        if "not found" not in str(err).lower() and "corrupted" not in str(err).lower():
            raise
        raise DataMissingError(_missing_message(name, root, str(err))) from None


def _as_numpy(a) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def load_mnist(spec: dict) -> RawSplit:
    """MNIST from ``spec['data_dir']`` (default 'data'): 60000 train / 10000 test, x uint8 (N, 1, 28, 28)."""
    return load_torchvision("mnist", spec)


def load_cifar10(spec: dict) -> RawSplit:
    """CIFAR-10 from ``spec['data_dir']`` (default 'data'): 50000 train / 10000 test, x uint8 (N, 3, 32, 32)."""
    return load_torchvision("cifar10", spec)


def load_torchvision(name: str, spec: dict) -> RawSplit:
    """Any of :data:`~normsharp.registry.DOWNLOADABLE` from ``spec['data_dir']``: full train pool and test set,
    x uint8 (N, C, H, W)."""
    if name in ("mnist", "fashionmnist"):
        root = str(spec.get("data_dir", "data"))
        train, test = _open(name, root, True), _open(name, root, False)
        return RawSplit(
            _as_numpy(train.data)[:, None, :, :], _as_numpy(train.targets).astype(np.int64),
            _as_numpy(test.data)[:, None, :, :], _as_numpy(test.targets).astype(np.int64), num_classes=10)
    root = str(spec.get("data_dir", "data"))
    verify = bool(spec.get("verify_checksums", True))
    train, test = _open(name, root, True, verify), _open(name, root, False, verify)
    if name == "svhn":  # torchvision already gives (N, 3, 32, 32) and maps label 10 to 0
        return RawSplit(np.ascontiguousarray(train.data), np.asarray(train.labels, dtype=np.int64),
                        np.ascontiguousarray(test.data), np.asarray(test.labels, dtype=np.int64), num_classes=10)
    return RawSplit(
        np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)), np.asarray(train.targets, dtype=np.int64),
        np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)), np.asarray(test.targets, dtype=np.int64),
        num_classes=100 if name == "cifar100" else 10,
    )


def download(name: str, data_dir: str = "data") -> str:
    """Fetch ``name`` (one of :data:`~normsharp.registry.DOWNLOADABLE`) into ``data_dir`` with torchvision (no-op
    if present); returns data_dir."""
    cls = _dataset_class(name)
    os.makedirs(data_dir, exist_ok=True)
    for train in (True, False):
        if name == "svhn":
            cls(str(data_dir), split="train" if train else "test", download=True)
        else:
            cls(str(data_dir), train=train, download=True)
    return str(data_dir)
