"""MNIST / CIFAR-10 loaders on tiny files written in torchvision's on-disk formats (no network)."""

import pickle
import struct

import numpy as np
import pytest
import torch
import torchvision

from normsharp.data import load_data
from normsharp.image_data import DataMissingError, load_cifar10, load_mnist

N_TRAIN_POOL, N_TEST = 50, 20  # 5 per class in the pool, labels cycling 0..9


def _labels(n: int) -> np.ndarray:
    return (np.arange(n) * 7) % 10  # every class, not sorted


def _write_idx(path, array: np.ndarray) -> None:
    """IDX (big-endian) file of uint8: magic 0x0000 08 ndim, then dims, then bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 + array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN_POOL), ("t10k", N_TEST)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", _labels(n))
    return tmp_path


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """CIFAR-10 pickles; torchvision checks each file's md5 against the real release, so the test sets the
    md5s to None (check_integrity(path, None) only checks that the file exists): the same class
    attributes CIFAR100 overrides. Everything else — file discovery, unpickling, HWC layout — is torchvision's."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    per_batch = N_TRAIN_POOL // 5
    for i in range(5):
        labels = _labels(N_TRAIN_POOL)[i * per_batch:(i + 1) * per_batch]
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": labels.tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    test = {"data": rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), "labels": _labels(N_TEST).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[name, None] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, None] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})
    return tmp_path


def _check_standardised(data, n_train, shape):
    assert data.x_train.shape == (n_train, *shape) and data.x_train.dtype == torch.float64
    assert data.x_test.shape == (N_TEST, *shape)
    x = data.x_train.flatten(1)
    assert x.mean(0).abs().max() < 1e-12
    std = x.std(0, unbiased=False)
    assert torch.allclose(std[std > 0], torch.ones_like(std[std > 0]), atol=1e-12)


def test_mnist_raw_split(mnist_dir):
    raw = load_mnist({"data_dir": str(mnist_dir)})
    assert raw.x_train.shape == (N_TRAIN_POOL, 1, 28, 28) and raw.x_test.shape == (N_TEST, 1, 28, 28)
    assert raw.t_train.dtype == np.int64 and raw.num_classes == 10
    np.testing.assert_array_equal(raw.t_train, _labels(N_TRAIN_POOL))


def test_mnist_through_load_data(mnist_dir):
    n = 20
    data = load_data({"name": "mnist", "data_dir": str(mnist_dir), "n_train": n, "subset": "balanced"}, "mse")
    _check_standardised(data, n, (1, 28, 28))
    assert data.input_shape == (1, 28, 28) and data.output_dim == 10
    assert data.y_train.shape == (n, 10) and torch.all(data.y_train.sum(1) == 1)
    assert torch.bincount(data.y_train.argmax(1), minlength=10).tolist() == [2] * 10
    ce = load_data({"name": "mnist", "data_dir": str(mnist_dir), "n_train": n, "subset": "balanced"}, "ce")
    assert ce.y_train.dtype == torch.long and torch.equal(ce.y_train, data.y_train.argmax(1))


def test_cifar10_through_load_data(cifar_dir):
    raw = load_cifar10({"data_dir": str(cifar_dir)})
    assert raw.x_train.shape == (N_TRAIN_POOL, 3, 32, 32) and raw.t_test.dtype == np.int64
    # channel-first: the first 1024 bytes of a CIFAR row are the red plane
    first = pickle.loads((cifar_dir / "cifar-10-batches-py" / "data_batch_1").read_bytes())["data"][0]
    np.testing.assert_array_equal(raw.x_train[0].reshape(-1), first)
    n = 30
    data = load_data({"name": "cifar10", "data_dir": str(cifar_dir), "n_train": n, "subset": "balanced"}, "ce")
    _check_standardised(data, n, (3, 32, 32))
    assert torch.bincount(data.y_train, minlength=10).tolist() == [3] * 10


@pytest.mark.parametrize("name, cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
def test_missing_data_names_directory_and_command(tmp_path, name, cls):
    where = tmp_path / "nowhere"
    with pytest.raises(DataMissingError) as info:
        load_data({"name": name, "data_dir": str(where), "n_train": 10}, "mse")
    msg = str(info.value)
    assert str(where) in msg
    assert "snakemake --cores 1 download_data --configfile" in msg
    assert f"torchvision.datasets.{cls}('{where}', download=True)" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no torchvision traceback attached
    assert isinstance(info.value, FileNotFoundError)


def test_incomplete_mnist_is_reported_as_missing(mnist_dir):
    (mnist_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataMissingError, match="download_data"):
        load_mnist({"data_dir": str(mnist_dir)})
