"""Data preprocessing, model construction and norms."""

import numpy as np
import pytest
import torch

from normsharp.data import load_data
from normsharp.errors import ConfigError
from normsharp.metrics import evaluate, norms
from normsharp.models import build_model
from normsharp.objective import NetObjective


def test_digits_is_standardised_with_training_statistics():
    d = load_data({"name": "digits", "n_train": 300}, "mse")
    assert d.x_train.shape == (300, 1, 8, 8) and d.x_test.shape == (500, 1, 8, 8)
    flat = d.x_train.reshape(300, -1)
    assert torch.allclose(flat.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    std = flat.std(0, unbiased=False)
    assert torch.allclose(std[std > 0], torch.ones_like(std[std > 0]))
    assert d.y_train.shape == (300, 10) and torch.equal(d.y_train.sum(1), torch.ones(300, dtype=torch.float64))


def test_cross_entropy_gets_labels_and_balanced_subset_is_balanced():
    d = load_data({"name": "digits", "n_train": 105, "subset": "balanced"}, "ce")
    counts = np.bincount(d.y_train.numpy(), minlength=10)
    assert d.y_train.dtype == torch.long and counts.max() - counts.min() <= 1 and counts.sum() == 105


def test_loading_is_deterministic():
    a = load_data({"name": "synthetic", "n_train": 50, "dim": 5, "noise": 0.1}, "mse")
    b = load_data({"name": "synthetic", "n_train": 50, "dim": 5, "noise": 0.1}, "mse")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.num_classes is None and a.y_train.shape == (50, 1)


@pytest.mark.parametrize(
    "spec, loss, match",
    [
        ({"name": "imagenet"}, "mse", "dataset.name"),
        ({"name": "digits", "n_train": 5000}, "mse", "n_train"),
        ({"name": "synthetic"}, "ce", "regression"),
        ({"name": "digits", "subset": "random"}, "mse", "subset"),
        ({"name": "digits"}, "hinge", "loss"),
    ],
)
def test_bad_data_settings_name_the_key(spec, loss, match):
    with pytest.raises(ConfigError, match=match):
        load_data(spec, loss)


def test_flat_model_views_and_seeded_init():
    spec = {"arch": "fcn", "width": 8, "depth": 2}
    a, b = build_model(spec, (5,), 3, seed=1), build_model(spec, (5,), 3, seed=1)
    assert torch.equal(a.theta0, b.theta0) and a.num_params == 5 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3
    scaled = build_model({**spec, "init_scale": 2.0}, (5,), 3, seed=1)
    assert torch.equal(scaled.theta0, 2 * a.theta0)
    x = torch.randn(4, 5, dtype=torch.float64)
    w = a.unflatten(a.theta0)
    ref = torch.tanh(torch.tanh(x @ w["net.1.weight"].T + w["net.1.bias"]) @ w["net.3.weight"].T + w["net.3.bias"])
    assert torch.allclose(a(a.theta0, x), ref @ w["net.5.weight"].T + w["net.5.bias"])
    with pytest.raises(ConfigError, match="model.arch"):
        build_model({"arch": "transformer-xl"}, (5,), 3, seed=0)


def test_norms_and_evaluation():
    theta = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert norms(theta, torch.zeros(2, dtype=torch.float64)) == {"l1_norm": 7.0, "l2_norm": 5.0, "dist_to_init": 5.0}
    d = load_data({"name": "digits", "n_train": 100}, "ce")
    m = build_model({"arch": "fcn", "width": 8}, d.input_shape, 10, seed=0)
    obj = NetObjective(m, d.x_train, d.y_train, "ce")
    ev = evaluate(obj, m.theta0, d.x_test, d.y_test, d.num_classes)
    ce = float(torch.nn.functional.cross_entropy(m(m.theta0, d.x_test), d.y_test))
    assert 0 <= ev["accuracy"] <= 1 and abs(ev["loss"] - ce) < 1e-12
