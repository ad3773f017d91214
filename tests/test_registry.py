"""normsharp.registry is the one list of names: the schema, the loaders, the builders, theory and the memory model
agree with it."""

from pathlib import Path

import pytest
import yaml

from normsharp import registry, resources

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SETUP = SCHEMA["properties"]["setups"]["additionalProperties"]["properties"]


def _enum(values):
    assert len(values) == len(set(values)), f"duplicates in {values}"
    return set(values)


def test_schema_dataset_names_are_the_registry_datasets():
    assert _enum(SETUP["dataset"]["properties"]["name"]["enum"]) == set(registry.DATASETS)


def test_schema_architectures_are_the_registry_architectures():
    assert _enum(SETUP["model"]["properties"]["arch"]["enum"]) == set(registry.ARCHITECTURES)


def test_every_dataset_has_a_loader_and_every_architecture_a_builder():
    from normsharp.architectures import BUILDERS
    from normsharp.data import RAW_LOADERS

    assert list(RAW_LOADERS) == list(registry.DATASETS)
    assert set(BUILDERS) | {"custom"} == set(registry.ARCHITECTURES)


def test_entries_are_named_by_their_key_and_downloadable_ones_say_where_their_files_are():
    assert all(name == entry.name for name, entry in registry.DATASETS.items())
    assert registry.DOWNLOADABLE == ("mnist", "fashionmnist", "cifar10", "cifar100", "svhn")
    for name in registry.DOWNLOADABLE:
        entry = registry.DATASETS[name]
        assert entry.folder and entry.shape, name
    for name in set(registry.DATASETS) - set(registry.DOWNLOADABLE):
        assert registry.DATASETS[name].folder is None and not registry.DATASETS[name].checksummed, name


def test_downloadable_datasets_name_real_torchvision_classes():
    import torchvision.datasets

    for name in registry.DOWNLOADABLE:
        assert hasattr(torchvision.datasets, registry.DATASETS[name].torchvision), name


def test_theory_ships_the_registry_instances_in_order():
    from normsharp import theory

    assert tuple(theory.INSTANCES) == registry.SINGLE_POINT_INSTANCES
    assert all(inst.name == name for name, inst in theory.INSTANCES.items())


def test_plots_draw_the_registry_figures():
    from normsharp import plots
    from normsharp.figures_common import DRAWINGS

    assert plots.FIGURES is registry.FIGURES and plots.DIAGONAL_FIGURES is registry.DIAGONAL_FIGURES
    # every listed figure has a drawing, every drawing a name
    assert set(DRAWINGS) == set(registry.FIGURES) | set(registry.MEASURE_FIGURES)
    assert not set(registry.FIGURES) & set(registry.DIAGONAL_FIGURES)
    assert not set(registry.FIGURES) & set(registry.MEASURE_FIGURES)


def test_measure_figures_follow_the_geometry_keys():
    from normsharp.wfconfig import measure_figures

    assert set(registry.MEASURE_FIGURES.values()) == {"density", "adaptive_sharpness", "layer_sharpness",
                                                      "end_points"}
    assert measure_figures({}) == [] and measure_figures({"density": {"probes": 0}}) == []
    assert measure_figures({"density": {"probes": 4}, "layer_sharpness": True}) == ["spectral_density",
                                                                                      "layer_sharpness_vs_eta"]
    assert measure_figures({"adaptive_sharpness": {"enabled": True}}) == ["adaptive_sharpness_vs_eta"]
    assert measure_figures({"end_points": {"enabled": True}}) == ["end_points_vs_eta"]
    assert measure_figures({"end_points": {"enabled": False, "window": 10}}) == []


def test_the_registry_optimisers_are_the_classes_of_normsharp_optimizers():
    from normsharp.optimizers import OPTIMIZERS

    assert list(registry.OPTIMISERS) == list(OPTIMIZERS)
    assert all(cls.name == name for name, cls in OPTIMIZERS.items())
    described = SCHEMA["definitions"]["optimizer"]["properties"]["name"]["description"]
    assert all(name in described for name in OPTIMIZERS)


def _setup(config: str) -> dict:
    (setup,) = yaml.safe_load((REPO / config).read_text())["setups"].values()
    return setup


@pytest.mark.parametrize("config, first, second", [
    ("config/config.yaml", 1600, 3200),  # digits, 200 examples, width 50
    ("config/experiments/mnist5k-fcn-mse.yaml", 2200, 4400),  # mnist, 5000 examples, width 200
])
def test_memory_requests_of_the_shipped_setups(config, first, second):
    setup = _setup(config)
    assert resources.job_mem_mb(setup, attempt=1) == first
    assert resources.job_mem_mb(setup, attempt=2) == second


def test_memory_model_terms():
    """8 bytes × ((n + n_test)·d + 10·n·width·depth + 220·(d·width + (depth−1)·width² + 10·width))."""
    mnist = {"dataset": {"name": "mnist", "n_train": 1000}, "model": {"width": 10, "depth": 1}}
    expected = 8e-6 * ((1000 + 10000) * 784 + 10 * 1000 * 10 + 220 * (784 * 10 + 10 * 10))
    assert resources.setup_working_set_mb(mnist) == pytest.approx(expected, rel=1e-12)
    # no n_train: the whole pool; unknown size (synthetic): the default shape
    assert resources.setup_working_set_mb({"dataset": {"name": "svhn"}, "model": {}}) == pytest.approx(
        8e-6 * ((73257 + 26032) * 3072 + 10 * 73257 * 200 + 220 * (3072 * 100 + 100 * 100 + 1000)))
    d, pool, n_test = resources.DEFAULT_SHAPE
    synthetic = {"dataset": {"name": "synthetic"}, "model": {"width": 100, "depth": 2}}
    assert resources.setup_working_set_mb(synthetic) == pytest.approx(
        8e-6 * ((pool + n_test) * d + 10 * pool * 200 + 220 * (d * 100 + 100 * 100 + 1000)))
    # a job of no setup asks for the base, and every request is a multiple of 100 MB
    assert resources.job_mem_mb(None, attempt=3) == 3 * resources.BASE_MB
    assert resources.job_mem_mb(mnist, attempt=1, base_mb=1501) % 100 == 0
