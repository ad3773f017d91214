"""Every name a config may use, declared once: datasets, architectures, optimisers, figures, closed-form instances.

The library, the workflow's ``.smk`` files and the tests read these; ``tests/test_registry.py`` checks that the
schema's enums (``workflow/schemas/config.schema.yaml``) list the same names. This module imports only the
standard library, so Snakemake can read it while it builds the DAG without loading torch.

Adding a dataset is one :class:`Dataset` entry here plus its loader (``normsharp.data.RAW_LOADERS`` builds one
for every entry with ``torchvision`` set; a built-in dataset writes its own there).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    """A dataset name and what the workflow knows about it before loading it.

    ``shape`` = (input features d, training pool, test set) for the SLURM memory model
    (:mod:`normsharp.resources`); None for a dataset whose size its spec sets (synthetic, the user's own).
    ``torchvision`` is the ``torchvision.datasets`` class of a dataset read from ``data_dir`` and fetched by
    the ``download_data`` rule; None for a built-in one, which is never downloaded. ``folder`` is where
    torchvision keeps its files under ``data_dir``; ``checksummed``: torchvision checks them against the
    release's md5s (``verify_checksums: false`` skips that).
    """

    name: str
    about: str
    shape: tuple[int, int, int] | None = None
    torchvision: str | None = None
    folder: str | None = None
    checksummed: bool = False

    @property
    def downloadable(self) -> bool:
        return self.torchvision is not None


def _index(*entries):
    return {entry.name: entry for entry in entries}


DATASETS: dict[str, Dataset] = _index(
    # built in: generated or shipped with a package, nothing to download
    Dataset("digits", "scikit-learn's 8×8 digits: 1297 train / 500 test, 10 classes", shape=(64, 1797, 0)),
    Dataset("synthetic", "seeded tanh-teacher regression x ~ N(0, I_d)"),
    Dataset("single_point", "one training point (x, y) of a closed-form instance (normsharp.theory)"),
    # read from data_dir (torchvision), fetched once by the download_data rule
    Dataset("mnist", "MNIST 28×28 grey: 60000 train / 10000 test", shape=(784, 60000, 10000),
            torchvision="MNIST", folder="MNIST/raw"),
    Dataset("fashionmnist", "FashionMNIST 28×28 grey: 60000 train / 10000 test", shape=(784, 60000, 10000),
            torchvision="FashionMNIST", folder="FashionMNIST/raw"),
    Dataset("cifar10", "CIFAR-10 32×32 colour: 50000 train / 10000 test", shape=(3072, 50000, 10000),
            torchvision="CIFAR10", folder="cifar-10-batches-py", checksummed=True),
    Dataset("cifar100", "CIFAR-100 32×32 colour, 100 classes: 50000 train / 10000 test", shape=(3072, 50000, 10000),
            torchvision="CIFAR100", folder="cifar-100-python", checksummed=True),
    Dataset("svhn", "SVHN 32×32 colour digits: 73257 train / 26032 test", shape=(3072, 73257, 26032),
            torchvision="SVHN", folder=".", checksummed=True),
    # the user's own (normsharp.custom)
    Dataset("npz", "the user's arrays x_train, y_train, x_test, y_test in an .npz file"),
    Dataset("custom", "the user's function 'module:function' returning those arrays"),
)
DOWNLOADABLE: tuple[str, ...] = tuple(name for name, d in DATASETS.items() if d.downloadable)


def shape_of(name: str) -> tuple[int, int, int] | None:
    """(input features, training pool, test set) of a dataset the registry knows the size of; else None."""
    known = DATASETS.get(name)
    return known.shape if known is not None else None

# model.arch: builders in normsharp.architectures (custom: normsharp.custom), assembled by normsharp.models
ARCHITECTURES: dict[str, str] = {
    "fcn": "fully connected net: depth hidden layers of width units",
    "cnn": "conv3×3 → σ → 2×2 average pool per layer, linear head",
    "resnet": "stem conv, residual blocks without BatchNorm (norm: batchnorm optional), linear head",
    "vit": "Vision Transformer: patches, pre-LN blocks, mean or cls pooling",
    "diagonal_linear": "f(x) = ⟨w^{⊙D}, x⟩ (or u^{⊙D} − v^{⊙D}), the closed-form counter-example",
    "custom": "the user's factory 'module:function'(input_shape, output_dim, generator, **kwargs)",
}

# The update rule of the sweep (a setup's ``optimizer.name``): normsharp.optimizers.OPTIMIZERS holds the classes,
# under the same names (tests/test_registry.py). A new optimiser adds an entry here and its class there.
OPTIMISERS: dict[str, str] = {
    "gd": "full-batch gradient descent θ ← θ − η∇L(θ); edge 2/η",
    "momentum": "full-batch heavy ball or Nesterov (β); edge (2 + 2β)/η, Nesterov (2 + 2β)/((1 + 2β)η)",
    "sgd": "mini-batch SGD (batch_size, optional momentum); batch sharpness against 2/η",
    "rmsprop": "RMSProp (β₂, ε); preconditioned sharpness λ_max(P⁻¹H) against 2/η",
    "adam": "Adam with bias correction (β₁, β₂, ε); λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)η)",
}

# The figures a study draws: normsharp.plots draws them, the workflow lists figures/NAME.png and .pdf as
# the figures rule's outputs.
FIGURES: tuple[str, ...] = ("sharpness_vs_eta", "norms_vs_eta", "test_loss_vs_eta", "sharpness_norm_tradeoff",
                            "trajectories", "phase_diagram", "gap_to_flow", "trace_vs_eta", "test_loss_correlations")
# drawn against the closed form, only for diagonal-linear-network setups on single_point data
DIAGONAL_FIGURES: tuple[str, ...] = ("dln_zero_loss_set", "dln_vs_eta")
# drawn for the whole study, only when a setup uses an optimiser other than plain GD
OPTIMIZER_FIGURES: tuple[str, ...] = ("optimizer_edges",)
# drawn only when the config turns on the opt-in measure of the geometry key they map to
# (normsharp.sharpness_measures.enabled, normsharp.end_points.is_on; the workflow adds them with
# wfconfig.measure_figures)
MEASURE_FIGURES: dict[str, str] = {"spectral_density": "density", "adaptive_sharpness_vs_eta": "adaptive_sharpness",
                                   "layer_sharpness_vs_eta": "layer_sharpness", "end_points_vs_eta": "end_points"}

# The shipped closed-form instances of the single_point dataset (``dataset.instance``); their numbers
# live in normsharp.theory.INSTANCES, in this order.
SINGLE_POINT_INSTANCES: tuple[str, ...] = ("d2", "d5", "d2-depth3")
