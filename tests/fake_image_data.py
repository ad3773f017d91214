"""Tiny MNIST and CIFAR-10 stand-ins written in torchvision's on-disk formats (shared by the tests).

MNIST: IDX files under ``root/MNIST/raw``; CIFAR-10: the python pickles under ``root/cifar-10-batches-py``.
Pixels are seeded uniform noise, labels ``(7 i) mod 10`` (every class, unsorted). The CIFAR-10 files do
not match the release's md5s, so they load with ``verify_checksums: false`` only.
"""

import pickle
import struct
from pathlib import Path

import numpy as np


def fake_labels(n: int) -> np.ndarray:
    return (np.arange(n) * 7) % 10


def write_idx(path, array: np.ndarray) -> None:
    """IDX (big-endian) file of uint8: magic 0x0000 08 ndim, then dims, then bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 + array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_fake_mnist(root, n_train: int, n_test: int, seed: int = 0) -> Path:
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", fake_labels(n))
    return Path(root)


def write_fake_cifar10(root, n_train: int, n_test: int, seed: int = 1) -> Path:
    """Five training batches of n_train/5 rows (3072 bytes each: R, G, B planes), a test batch, the meta file."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_batch = n_train // 5
    labels = fake_labels(n_train)
    for i in range(5):
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": labels[i * per_batch:(i + 1) * per_batch].tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    test = {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "labels": fake_labels(n_test).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return Path(root)


def write_fake_fashionmnist(root, n_train: int, n_test: int, seed: int = 2) -> Path:
    """FashionMNIST: MNIST's IDX files under ``root/FashionMNIST/raw``."""
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", fake_labels(n))
    return Path(root)


def write_fake_cifar100(root, n_train: int, n_test: int, seed: int = 3) -> Path:
    """CIFAR-100: pickles ``train``, ``test`` (data, fine_labels 0..99) and ``meta`` under ``root/cifar-100-python``."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "fine_labels": ((np.arange(n) * 37) % 100).tolist(), "coarse_labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    return Path(root)


def write_fake_svhn(root, n_train: int, n_test: int, seed: int = 4) -> Path:
    """SVHN: MATLAB files ``root/{train,test}_32x32.mat`` with X (32, 32, 3, N) uint8 and y (N, 1) in 1..10
    (10 = digit 0)."""
    from scipy.io import savemat

    Path(root).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        y = fake_labels(n)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                     "y": np.where(y == 0, 10, y)[:, None].astype(np.uint8)})
    return Path(root)
