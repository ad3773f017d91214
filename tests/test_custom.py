"""Your own model and data (normsharp.custom): the worked example through the snakemake CLI, and every bad input
stopping with a message that names the config key, without a traceback."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, snakemake

from normsharp.custom import check_full_batch
from normsharp.data import load_data
from normsharp.errors import ConfigError
from normsharp.models import build_model

USER_CODE = '''
import numpy as np, torch
from torch import nn

def mlp(input_shape, output_dim, generator, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.Tanh(),
                         nn.Linear(width, output_dim))

def with_dropout(input_shape, output_dim, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 4), nn.Dropout(0.5),
                         nn.Linear(4, output_dim))

def with_batchnorm(input_shape, output_dim, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 4), nn.BatchNorm1d(4),
                         nn.Linear(4, output_dim))

class Noisy(nn.Module):
    def __init__(self, d, k):
        super().__init__(); self.lin = nn.Linear(d, k)
    def forward(self, x):
        return self.lin(x.flatten(1) + 0.1 * torch.randn_like(x.flatten(1)))

class Centred(nn.Module):
    def __init__(self, d, k):
        super().__init__(); self.lin = nn.Linear(d, k)
    def forward(self, x):
        return self.lin(x.flatten(1) - x.flatten(1).mean(0))

def noisy(input_shape, output_dim, generator):
    return Noisy(int(np.prod(input_shape)), output_dim)

def centred(input_shape, output_dim, generator):
    return Centred(int(np.prod(input_shape)), output_dim)

def wrong_output(input_shape, output_dim, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), output_dim + 1))

def not_a_module(input_shape, output_dim, generator):
    return "a string"

def needs_timm(input_shape, output_dim, generator):
    import timm_not_installed_here  # noqa

def arrays(n=30):
    rng = np.random.default_rng(0)
    return {"x_train": rng.standard_normal((n, 3)), "y_train": np.arange(n) % 2,
            "x_test": rng.standard_normal((10, 3)), "y_test": np.arange(10) % 2}

def a_list():
    return [1, 2]
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A working directory with the user's module usercode.py in it (imported from the working directory)."""
    d = tmp_path_factory.mktemp("user")
    (d / "usercode.py").write_text(USER_CODE)
    return d


@pytest.fixture
def in_user_dir(user_dir, monkeypatch):
    monkeypatch.chdir(user_dir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return user_dir


def save_npz(path, **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.standard_normal((40, 3)), "y_train": np.arange(40) % 3,
              "x_test": rng.standard_normal((20, 3)), "y_test": np.arange(20) % 3}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


# ---- data -----------------------------------------------------------------------------------------

def test_npz_labels_and_regression(tmp_path):
    data = load_data({"name": "npz", "path": save_npz(tmp_path / "a.npz"), "n_train": 30}, "mse")
    assert data.x_train.shape == (30, 3) and data.y_train.shape == (30, 3) and data.num_classes == 3
    assert torch.allclose(data.x_train.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    ce = load_data({"name": "npz", "path": str(tmp_path / "a.npz"), "num_classes": 5}, "ce")
    assert ce.num_classes == 5 and ce.y_train.dtype == torch.long and ce.output_dim == 5
    y = np.linspace(0, 1, 40)
    reg = load_data({"name": "npz", "path": save_npz(tmp_path / "r.npz", y_train=y, y_test=y[:20])}, "mse")
    assert reg.num_classes is None and reg.y_train.shape == (40, 1) and torch.equal(reg.y_train[:, 0], torch.tensor(y))


def test_data_factory(in_user_dir):
    data = load_data({"name": "custom", "factory": "usercode:arrays", "kwargs": {"n": 24}}, "ce")
    assert data.n_train == 24 and data.num_classes == 2


@pytest.mark.parametrize("override, message", [
    ({"x_train": None}, "lacks the arrays ['x_train']"),
    ({"x_train": np.zeros(40)}, "x_train has shape (40,)"),
    ({"x_test": np.zeros((20, 4))}, "x_test (20, 4)"),
    ({"y_train": np.arange(39) % 3}, "x_train has 40 examples and y_train 39"),
    ({"x_train": np.full((40, 3), np.nan)}, "x_train has NaN or inf in 40 examples"),
    ({"y_test": np.array([np.inf] + [0.0] * 19)}, "y_test has NaN or inf in 1 examples (first at index 0)"),
    ({"y_train": np.array(["a"] * 40)}, "y_train has dtype <U1"),
    ({"y_train": -(np.arange(40) % 3)}, "y_train has labels outside [0, 3)"),
    ({"y_train": np.eye(3)[np.arange(40) % 3].astype(int)}, "class labels have shape (N,)"),
    ({"y_train": np.zeros(40)}, "y_train is float64 and y_test int64"),
])
def test_bad_arrays_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match="dataset.path") as info:
        load_data({"name": "npz", "path": save_npz(tmp_path / "bad.npz", **override)}, "mse")
    assert message in str(info.value)


def test_labels_beyond_num_classes_fewer_examples_and_missing_file(tmp_path):
    path = save_npz(tmp_path / "a.npz")
    with pytest.raises(ConfigError, match=r"labels outside \[0, 2\)"):
        load_data({"name": "npz", "path": path, "num_classes": 2}, "ce")
    with pytest.raises(ConfigError, match=r"dataset.n_train=41 but 'npz' has 40 training examples"):
        load_data({"name": "npz", "path": path, "n_train": 41}, "mse")
    with pytest.raises(ConfigError, match="dataset.path: '.*nowhere.npz' does not exist"):
        load_data({"name": "npz", "path": str(tmp_path / "nowhere.npz")}, "mse")
    y = np.linspace(0, 1, 40)
    with pytest.raises(ConfigError, match="regression set: cross-entropy needs classes"):
        load_data({"name": "npz", "path": save_npz(tmp_path / "r.npz", y_train=y, y_test=y[:20])}, "ce")


def test_bad_data_factory(in_user_dir):
    with pytest.raises(ConfigError, match="dataset.factory .* returned a list"):
        load_data({"name": "custom", "factory": "usercode:a_list"}, "mse")
    with pytest.raises(ConfigError, match=r"dataset.factory: 'usercode:arrays'\(n=30\) cannot be called"):
        load_data({"name": "custom", "factory": "usercode:arrays", "kwargs": {"m": 3}}, "mse")


# ---- model ----------------------------------------------------------------------------------------

def test_custom_model_is_wrapped_like_the_built_ins(in_user_dir):
    spec = {"arch": "custom", "factory": "usercode:mlp", "kwargs": {"width": 5}}
    a, b = build_model(spec, (3,), 2, seed=7), build_model(spec, (3,), 2, seed=7)
    assert a.num_params == 3 * 5 + 5 + 5 * 2 + 2 and a.theta0.dtype == torch.float64
    assert torch.equal(a.theta0, b.theta0)  # θ₀ from the seed (nn.Linear's own init draws from the seeded RNG)
    assert not torch.equal(a.theta0, build_model(spec, (3,), 2, seed=8).theta0)
    scaled = build_model({**spec, "init_scale": 0.5}, (3,), 2, seed=7)
    assert torch.equal(scaled.theta0, 0.5 * a.theta0)
    x = torch.randn(6, 3, dtype=torch.float64)
    theta = a.theta0.clone().requires_grad_(True)
    (a(theta, x) ** 2).sum().backward()
    assert theta.grad.shape == a.theta0.shape and theta.grad.abs().sum() > 0
    check_full_batch(a, x, 2)  # passes: deterministic, per example


@pytest.mark.parametrize("factory, message", [
    ("usercode", "write it as 'module.path:function'"),
    ("nosuchmodule:build", "module 'nosuchmodule' is not importable"),
    ("usercode:nothing", "has no attribute 'nothing'"),
    ("usercode:not_a_module", "returned a str; it must return a torch.nn.Module"),
    ("usercode:needs_timm", "importing"),
])
def test_bad_model_factory(in_user_dir, factory, message):
    try:
        with pytest.raises(ConfigError, match="model.factory") as info:
            build_model({"arch": "custom", "factory": factory}, (3,), 2, seed=0)
    except ModuleNotFoundError as err:  # an import error inside the factory's body is the user's own bug
        assert factory == "usercode:needs_timm" and err.name == "timm_not_installed_here"
        return
    assert message in str(info.value)
    if "not importable" in message:
        assert "module search path" in str(info.value) and str(in_user_dir) in str(info.value)


@pytest.mark.parametrize("factory, message", [
    ("with_dropout", "Dropout(p=0.5) in training mode"),
    ("with_batchnorm", "BatchNorm1d in training mode"),
    ("noisy", "two forward passes at the same θ₀ give different outputs"),
    ("centred", "depends on the other examples of the batch"),
    ("wrong_output", "it must return a tensor of shape (8, 2)"),
])
def test_random_or_batch_dependent_modules_are_stopped(in_user_dir, factory, message):
    model = build_model({"arch": "custom", "factory": f"usercode:{factory}"}, (3,), 2, seed=0)
    with pytest.raises(ConfigError, match="model.factory") as info:
        check_full_batch(model, torch.randn(8, 3, dtype=torch.float64), 2)
    assert message in str(info.value)


# ---- through the snakemake CLI --------------------------------------------------------------------

def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's commands on a copy of the repository's examples/ (the working directory as the repo root)."""
    workdir = tmp_path_factory.mktemp("example")
    shutil.copytree(REPO / "examples", workdir / "examples", ignore=shutil.ignore_patterns("*.npz", "__pycache__"))
    made = run([sys.executable, "examples/custom/tinynet.py"], workdir)
    assert made.returncode == 0, made.stderr
    out = snakemake(workdir, "--configfile", "examples/custom/config.yaml", timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


@pytest.mark.workflow
@pytest.mark.slow
def test_the_worked_example_runs_end_to_end(example):
    runs = pd.read_parquet(example / "results/custom-example/runs.parquet")
    assert set(runs.setup) == {"spirals-resmlp", "teacher-resmlp"} and set(runs.arch) == {"custom"}
    assert set(runs.dataset) == {"npz", "custom"} and len(runs) == 2 * 3
    assert (runs.status == "converged").all() and runs.sharpness.notna().all()
    spirals, teacher = runs[runs.setup == "spirals-resmlp"], runs[runs.setup == "teacher-resmlp"]
    assert (spirals.test_accuracy > 0.4).all() and teacher.test_accuracy.isna().all()  # 3 classes; regression
    eos = runs[runs.eta_over_eta_c == 2.0]
    assert (eos.sharpness < 0.8 * eos.s_gf).all()  # above η_c GD ends flatter than the flow
    assert (example / "results/custom-example/figures/sharpness_vs_eta.png").stat().st_size > 1000


@pytest.mark.workflow
@pytest.mark.slow
def test_bad_inputs_through_the_cli_name_the_key_without_a_traceback(example):
    config = yaml.safe_load((example / "examples/custom/config.yaml").read_text())
    setup = config["setups"]["spirals-resmlp"]
    cases = [
        ({"dataset": {**setup["dataset"], "path": "missing.npz"}},
         "setups.spirals-resmlp.dataset.path: 'missing.npz' does not exist"),
        ({"model": {**setup["model"], "factory": "examples.custom.nope:build"}},
         "model.factory: module 'examples.custom.nope' is not importable"),
        ({"dataset": {**setup["dataset"], "n_train": 601}}, "dataset.n_train=601 but 'npz' has 600 training examples"),
    ]
    for i, (change, message) in enumerate(cases):
        bad = {**config, "experiment": f"bad{i}", "setups": {"spirals-resmlp": {**setup, **change}}}
        (example / f"bad{i}.yaml").write_text(yaml.safe_dump(bad))
        out = snakemake(example, "--configfile", f"bad{i}.yaml", cores=1, timeout=1200)
        assert out.returncode != 0 and message in out.stderr, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
