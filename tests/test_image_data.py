"""MNIST / CIFAR-10 loaders on tiny files written in torchvision's on-disk formats (no network)."""

import pickle

import numpy as np
import pytest
import torch
from fake_image_data import fake_labels, write_fake_cifar10, write_fake_mnist

from normsharp.data import load_data
from normsharp.image_data import DataMissingError, load_cifar10, load_mnist

N_TRAIN_POOL, N_TEST = 50, 20  # 5 per class in the pool, labels cycling 0..9
UNCHECKED = {"verify_checksums": False}  # the stand-in CIFAR files cannot match the release's md5s


@pytest.fixture
def mnist_dir(tmp_path):
    return write_fake_mnist(tmp_path, N_TRAIN_POOL, N_TEST)


@pytest.fixture
def cifar_dir(tmp_path):
    return write_fake_cifar10(tmp_path, N_TRAIN_POOL, N_TEST)


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
    np.testing.assert_array_equal(raw.t_train, fake_labels(N_TRAIN_POOL))


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
    raw = load_cifar10({"data_dir": str(cifar_dir), **UNCHECKED})
    assert raw.x_train.shape == (N_TRAIN_POOL, 3, 32, 32) and raw.t_test.dtype == np.int64
    # channel-first: the first 1024 bytes of a CIFAR row are the red plane
    first = pickle.loads((cifar_dir / "cifar-10-batches-py" / "data_batch_1").read_bytes())["data"][0]
    np.testing.assert_array_equal(raw.x_train[0].reshape(-1), first)
    n = 30
    data = load_data({"name": "cifar10", "data_dir": str(cifar_dir), "n_train": n, "subset": "balanced", **UNCHECKED},
                     "ce")
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


def test_cifar10_files_are_checked_against_the_release_md5s_by_default(cifar_dir):
    with pytest.raises(DataMissingError, match="corrupted"):
        load_cifar10({"data_dir": str(cifar_dir)})



def test_a_job_with_missing_data_prints_the_message_without_a_traceback(tmp_path, monkeypatch, capsys):
    """What a prepare_data job shows on stderr (log_to's hook), and writes to its log: the message, no traceback."""
    import logging
    import sys

    from normsharp.files import log_to

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log_to(tmp_path / "job.log")
    try:
        load_data({"name": "mnist", "data_dir": str(tmp_path / "nowhere"), "n_train": 10}, "mse")
    except DataMissingError:
        sys.excepthook(*sys.exc_info())
    finally:
        logger = logging.getLogger("normsharp")
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
    err = capsys.readouterr().err
    assert err.startswith("DataMissingError: dataset 'mnist' was not found in data_dir")
    assert "snakemake --cores 1 download_data --configfile" in err and "Traceback" not in err
    log = (tmp_path / "job.log").read_text()  # the same line (--show-failed-logs prints it), no traceback
    assert "ERROR DataMissingError: dataset 'mnist' was not found" in log and "Traceback" not in log


@pytest.mark.parametrize("name, writer, shape, classes", [
    ("fashionmnist", "write_fake_fashionmnist", (1, 28, 28), 10),
    ("cifar100", "write_fake_cifar100", (3, 32, 32), 100),
    ("svhn", "write_fake_svhn", (3, 32, 32), 10),
])
def test_more_torchvision_datasets(tmp_path, name, writer, shape, classes):
    import fake_image_data

    getattr(fake_image_data, writer)(tmp_path, 200, 30)
    spec = {"name": name, "data_dir": str(tmp_path), "n_train": 150, "verify_checksums": False}
    data = load_data(spec, "ce")
    assert data.input_shape == shape and data.num_classes == classes and data.x_test.shape[0] == 30
    labels = (np.arange(150) * (37 if name == "cifar100" else 7)) % classes  # svhn's 10 is read as digit 0
    assert np.array_equal(data.y_train.numpy(), labels)
    if name != "fashionmnist":  # the release's md5s are checked by default
        with pytest.raises(DataMissingError, match="verify_checksums: false"):
            load_data({**spec, "verify_checksums": True}, "ce")
    with pytest.raises(DataMissingError, match=f"dataset '{name}' was not found"):
        load_data({**spec, "data_dir": str(tmp_path / "nowhere")}, "ce")
