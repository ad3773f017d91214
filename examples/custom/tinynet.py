"""A user's own model and data for normsharp, as a small worked example.

- ``build``: the model factory (config ``model: {arch: custom, factory: "examples.custom.tinynet:build"}``).
- ``teacher_data``: a data factory
  (config ``dataset: {name: custom, factory: "examples.custom.tinynet:teacher_data"}``).
- ``python examples/custom/tinynet.py`` writes ``examples/custom/spirals.npz`` (config ``dataset: {name: npz}``).
"""

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn


class ResidualMLP(nn.Module):
    """x ↦ head(h + tanh(W₂ tanh(W₁ h))), h = tanh(embed(flatten x)): deterministic, per example."""

    def __init__(self, in_dim: int, out_dim: int, width: int, generator: torch.Generator):
        super().__init__()
        self.embed, self.inner, self.outer = nn.Linear(in_dim, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, out_dim)
        for layer in (self.embed, self.inner, self.outer, self.head):  # N(0, 1/fan_in) from the seeded generator
            fan_in = layer.weight.shape[1]
            with torch.no_grad():
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / math.sqrt(fan_in))
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.embed(x.flatten(1)))
        return self.head(h + torch.tanh(self.outer(torch.tanh(self.inner(h)))))


def build(input_shape, output_dim, generator, width=32):
    """The model factory: normsharp passes the input shape, output dimension and a seeded generator."""
    return ResidualMLP(math.prod(input_shape), output_dim, width, generator)


def spirals(n: int, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """``classes`` interleaved 2-d spirals with Gaussian noise: x (n, 2) float, y (n,) int labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    r = rng.uniform(0.2, 1.0, n)
    angle = 4.0 * r + 2 * np.pi * y / classes
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) + noise * r[:, None] * rng.standard_normal((n, 2))
    return x, y


def teacher_data(n_train=200, n_test=500, dim=5, seed=0):
    """A data factory: real targets y = sin(x·w) + x₁² / 2 of Gaussian x (regression, MSE)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim) / np.sqrt(dim)
    x = rng.standard_normal((n_train + n_test, dim))
    y = np.sin(x @ w) + 0.5 * x[:, 0] ** 2
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


if __name__ == "__main__":
    out = Path(__file__).with_name("spirals.npz")
    x_train, y_train = spirals(600, seed=0)
    x_test, y_test = spirals(1000, seed=1)
    np.savez(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {out}: x_train {x_train.shape}, y_train {y_train.shape} (3 classes), x_test {x_test.shape}")
