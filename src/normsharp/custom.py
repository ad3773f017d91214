"""The user's own model and data, named in the config by import path ``"package.module:function"``.

- ``model: {arch: custom, factory: "mynets.wide:build", kwargs: {...}}``: ``build(input_shape, output_dim,
  generator, **kwargs) -> nn.Module``. It is built with float64 as the default dtype and with torch's global
  RNG seeded from the setup's seed as well, so θ₀ is a function of the seed whether the factory draws from
  ``generator`` or uses PyTorch's default initialisers.
- ``dataset: {name: npz, path: file.npz}`` or ``dataset: {name: custom, factory: "mydata:load", kwargs: {...}}``:
  arrays ``x_train, y_train, x_test, y_test``; integer y are class labels (classes 0..C−1, C = ``num_classes``
  or the largest label + 1), floating y are real targets (regression, MSE only).

Every check names the config key and says what to change; they run in prepare_data / init_model, seconds
into a workflow. :func:`check_full_batch` stops modules whose output is random or depends on the batch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .errors import ConfigError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def import_factory(path, key: str):
    """The callable at ``"module.path:attribute"``; the working directory is searched first."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"{key} is {path!r}; write it as 'module.path:function' (e.g. 'mynets.wide:build')")
    module_name, attr = path.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        parts = module_name.split(".")
        if err.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise ConfigError(f"{key}: importing {module_name!r} failed: {err} (a package your module imports "
                              f"is not installed in this Python, {sys.executable})") from None
        search = "\n    ".join(p or "." for p in sys.path)
        raise ConfigError(f"{key}: module {module_name!r} is not importable ({err}). Put it under the working "
                          f"directory ({os.getcwd()}), on PYTHONPATH, or install it; the module search path "
                          f"is:\n    {search}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                              f"attribute {attr!r}") from None
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}: {path!r} is a {type(obj).__name__}, not a function")
    return obj


def _call(factory, path: str, key: str, args: tuple, kwargs) -> object:
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{key.rsplit('.', 1)[0]}.kwargs must be a mapping, not {kwargs!r}")
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"{key}: {path!r}{inspect.signature(factory)} cannot be called with "
                          f"{len(args)} positional arguments and kwargs {dict(kwargs)} ({err})") from None
    except ValueError:  # no signature (a builtin): just call it
        pass
    return factory(*args, **kwargs)


# ---- data ----------------------------------------------------------------------------------------

def _check_arrays(arrays: Mapping, where: str, num_classes):
    """(x_train, y_train, x_test, y_test, num_classes) as numpy arrays, or a ConfigError naming ``where``."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise ConfigError(f"{where} lacks the arrays {missing} (it has {sorted(arrays)}); needed: {list(ARRAYS)}")
    out = {}
    for k in ARRAYS:
        try:
            a = np.asarray(arrays[k].detach().cpu() if isinstance(arrays[k], torch.Tensor) else arrays[k])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {k} is not an array ({err})") from None
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"{where}: {k} has dtype {a.dtype}; inputs and targets must be numbers "
                              f"(bool, integer or floating)")
        if a.ndim == 0 or len(a) == 0:
            raise ConfigError(f"{where}: {k} has shape {a.shape}; it needs at least one example along axis 0")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))
            raise ConfigError(f"{where}: {k} has NaN or inf in {len(bad)} examples (first at index {bad[0]})")
        out[k] = a
    xtr, ytr, xte, yte = (out[k] for k in ARRAYS)
    if xtr.ndim < 2 or xtr.shape[1:] != xte.shape[1:]:
        raise ConfigError(f"{where}: x_train has shape {xtr.shape} and x_test {xte.shape}; both need shape "
                          f"(examples, features...) with the same features (a vector per example: (N, d))")
    for x, y, split in ((xtr, ytr, "train"), (xte, yte, "test")):
        if len(y) != len(x):
            raise ConfigError(f"{where}: x_{split} has {len(x)} examples and y_{split} {len(y)}")
    labels = ytr.dtype.kind in "biu"
    if labels != (yte.dtype.kind in "biu"):
        raise ConfigError(f"{where}: y_train is {ytr.dtype} and y_test {yte.dtype}; both integer class labels "
                          f"or both floating regression targets")
    if not labels:
        if num_classes is not None:
            raise ConfigError(f"{where}: num_classes is set but y_train is {ytr.dtype}: class labels must be "
                              f"integers (e.g. y.astype(np.int64)); floating targets are regression")
        if ytr.ndim > 2 or ytr.shape[1:] != yte.shape[1:]:
            raise ConfigError(f"{where}: regression targets y_train {ytr.shape} and y_test {yte.shape} must "
                              f"have shape (N,) or (N, k) with the same k")
        return xtr, ytr.reshape(len(ytr), -1), xte, yte.reshape(len(yte), -1), None
    for y, k in ((ytr, "y_train"), (yte, "y_test")):
        if y.ndim != 1:
            raise ConfigError(f"{where}: {k} has shape {y.shape}; class labels have shape (N,) "
                              f"(from one-hot rows: y.argmax(1))")
    classes = int(num_classes) if num_classes is not None else int(max(ytr.max(), yte.max())) + 1
    for y, k in ((ytr, "y_train"), (yte, "y_test")):
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if len(bad):
            raise ConfigError(f"{where}: {k} has labels outside [0, {classes}) (num_classes = {classes}): "
                              f"{y[bad[0]]} at index {bad[0]} and {len(bad) - 1} more")
    if classes < 2:
        raise ConfigError(f"{where}: all labels are 0; classification needs at least two classes")
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), classes


def load_npz(spec: dict):
    """``dataset.path``: an .npz file with x_train, y_train, x_test, y_test (np.savez)."""
    path = spec.get("path")
    if not path:
        raise ConfigError("dataset.path is missing: name: npz needs the path of an .npz file")
    if not os.path.isfile(path):
        raise ConfigError(f"dataset.path: {path!r} does not exist (relative paths are relative to the working "
                          f"directory, {os.getcwd()})")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as err:
        raise ConfigError(f"dataset.path: {path!r} is not a readable .npz file of numeric arrays ({err})") from None
    return _check_arrays(arrays, f"dataset.path ({path})", spec.get("num_classes"))


def load_custom(spec: dict):
    """``dataset.factory(**kwargs)`` returns a mapping with x_train, y_train, x_test, y_test."""
    path = spec.get("factory")
    factory = import_factory(path, "dataset.factory")
    arrays = _call(factory, path, "dataset.factory", (), spec.get("kwargs"))
    if not isinstance(arrays, Mapping):
        raise ConfigError(f"dataset.factory {path!r} returned a {type(arrays).__name__}; it must return a dict "
                          f"with {list(ARRAYS)}")
    return _check_arrays(arrays, f"dataset.factory ({path})", spec.get("num_classes"))


# ---- model ---------------------------------------------------------------------------------------

def build_custom(spec: dict, input_shape: tuple[int, ...], output_dim: int, seed: int) -> nn.Module:
    """``model.factory(input_shape, output_dim, generator, **model.kwargs)`` in float64, global RNG seeded too."""
    path = spec.get("factory")
    factory = import_factory(path, "model.factory")
    generator = torch.Generator().manual_seed(int(seed))
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        torch.set_default_dtype(torch.float64)
        try:
            module = _call(factory, path, "model.factory", (tuple(input_shape), int(output_dim), generator),
                           spec.get("kwargs"))
        finally:
            torch.set_default_dtype(default)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.factory {path!r} returned a {type(module).__name__}; it must return a "
                          f"torch.nn.Module")
    params = list(module.parameters())
    if not params:
        raise ConfigError(f"model.factory {path!r} returned a module without parameters")
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    if frozen:
        raise ConfigError(f"model.factory {path!r}: parameters {frozen} have requires_grad=False; GD trains "
                          f"every parameter: register fixed tensors with register_buffer instead")
    if sum(len(m._parameters) for m in module.modules()) != len(params):
        raise ConfigError(f"model.factory {path!r}: the module shares (ties) parameters between submodules, "
                          f"which the flat parameter vector θ does not support; give each layer its own")
    bad = [n for n, p in module.named_parameters() if not p.is_floating_point()]
    if bad:
        raise ConfigError(f"model.factory {path!r}: parameters {bad} are not floating point")
    return module


RANDOM_OR_BATCH_MODULES = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def check_full_batch(flat, x: torch.Tensor, output_dim: int, key: str = "model.factory") -> None:
    """Stop a module whose outputs are not a deterministic function of each example alone.

    GD here is full-batch and deterministic, and chunked gradients (``chunk_size``) must equal the full one:
    dropout or batch norm in training mode, noise drawn in forward, or statistics over the batch break
    both silently. Checked at θ₀ on ``x``: module types, the output shape and finiteness, two calls give the
    same output, and the output of the batch equals that of its two halves and of a permutation of it.
    """
    module = flat.module
    for name, m in module.named_modules():
        if m.training and isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            raise ConfigError(f"{key}: {name or 'the module'} is {type(m).__name__}(p={m.p}) in training mode: "
                              f"dropout makes every gradient random, but GD here is full-batch and "
                              f"deterministic. Remove it, set p=0, or call .eval() on it in the factory")
        if m.training and isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ConfigError(f"{key}: {name or 'the module'} is {type(m).__name__} in training mode: it "
                              f"normalises with the statistics of the batch, so the loss is not a sum over "
                              f"examples and a chunked gradient (chunk_size) is not the full-batch one. "
                              f"Use LayerNorm/GroupNorm or no normalisation (or .eval() with fixed statistics)")
    buffers = {n: b.clone() for n, b in module.named_buffers()}
    with torch.no_grad():
        theta = flat.theta0
        first = flat(theta, x)
        if not isinstance(first, torch.Tensor) or first.shape != (len(x), output_dim):
            shape = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
            raise ConfigError(f"{key}: the module maps a batch of {len(x)} inputs of shape {tuple(x.shape[1:])} "
                              f"to {shape}; it must return a tensor of shape ({len(x)}, {output_dim}) "
                              f"(output_dim = classes, or the regression target's size)")
        if not torch.isfinite(first).all():
            raise ConfigError(f"{key}: the module's output at θ₀ has NaN or inf")
        second = flat(theta, x)
        half = len(x) // 2
        split = torch.cat([flat(theta, x[:half]), flat(theta, x[half:])]) if half else first
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        permuted = torch.empty_like(first)
        permuted[perm] = flat(theta, x[perm])
    scale = first.abs().max().clamp_min(1e-30)
    if (second - first).abs().max() > 1e-10 * scale:
        raise ConfigError(f"{key}: two forward passes at the same θ₀ give different outputs (randomness in "
                          f"forward, e.g. F.dropout or torch.randn): GD here is full-batch and deterministic; "
                          f"make forward a deterministic function of θ and x")
    if max((split - first).abs().max(), (permuted - first).abs().max()) > 1e-8 * scale:
        raise ConfigError(f"{key}: an example's output depends on the other examples of the batch (halves "
                          f"or a permutation of the batch change it), e.g. statistics over dim 0: the loss "
                          f"must be a sum over examples so that chunked gradients equal the full-batch one")
    changed = [n for n, b in module.named_buffers() if n in buffers and not torch.equal(b, buffers[n])]
    if changed:
        raise ConfigError(f"{key}: forward changes the buffers {changed} (state that evolves with every call, "
                          f"e.g. running statistics): GD needs forward to be a function of θ and x only")
