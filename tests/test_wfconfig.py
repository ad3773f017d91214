"""normsharp.wfconfig without Snakemake's workflow: the canonical form of a config and the run names of an η grid."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from normsharp.wfconfig import canonical, eta_spec, gd_runs, inherit_setups, prepare_config, schema_numbers

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def prepared(config: dict) -> dict:
    return prepare_config(config, copy.deepcopy(SCHEMA), lambda c: validate(c, str(SCHEMA_PATH)))


MINIMAL = {
    "experiment": "x",
    "eta": {"relative": [0.5, 2.0]},
    "setups": {"a": {"dataset": {"name": "digits"}, "model": {"arch": "fcn"}, "loss": "mse", "loss_threshold": 0.05}},
}


def test_canonical_sorts_keys_at_every_depth_and_keeps_list_order():
    value = {"b": {"z": 1, "a": [{"y": 2, "x": (3, {"q": 0, "p": 1})}]}, "a": None}
    out = canonical(value)
    assert list(out) == ["a", "b"] and list(out["b"]) == ["a", "z"]
    assert list(out["b"]["a"][0]) == ["x", "y"]
    assert out["b"]["a"][0]["x"] == [3, {"p": 1, "q": 0}] and list(out["b"]["a"][0]["x"][1]) == ["p", "q"]
    assert list(value) == ["b", "a"], "canonical returns a copy"


def test_canonical_sorts_mixed_keys_by_their_string():
    assert list(canonical({2: "b", "10": "c", 1: "a"})) == [1, "10", 2]


@pytest.mark.parametrize("value, types, expected", [
    ("1e-3", "number", 0.001),    # PyYAML reads 1e-3 (no dot) as a string
    (" 5e-2 ", "number", 0.05),
    ("+.5", "number", 0.5),
    (1, "number", 1.0),
    (1.0, "integer", 1),
    ("1e3", "integer", 1000),
    ("1.5", "integer", "1.5"),     # not integral: left for validation to reject
    (2.5, "integer", 2.5),
    ("fast", "number", "fast"),
    ("1e-3", "string", "1e-3"),
    (True, "number", True),        # a bool is not a number here
    (3, ["integer", "null"], 3),
    (3, ["integer", "number"], 3),
    (None, ["integer", "null"], None),
])
def test_schema_numbers_gives_numbers_the_schema_form(value, types, expected):
    out = schema_numbers(value, {"type": types}, {})
    assert out == expected and type(out) is type(expected)


def test_schema_numbers_follows_refs_properties_items_and_additional_properties():
    root = {
        "definitions": {"grid": {"$ref": "#/definitions/inner"},
                        "inner": {"type": "object", "properties": {"relative": {"type": "array",
                                                                                "items": {"type": "number"}}}}},
        "type": "object",
        "properties": {"eta": {"$ref": "#/definitions/grid"}, "steps": {"type": "integer"}},
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "number"}},
    }
    value = {"eta": {"relative": [1, "2e0", 0.5]}, "steps": 10.0, "named": {"u": 3, "v": "4"}, "eta2": None}
    relative = value["eta"]["relative"]
    out = schema_numbers(value, root, root)
    assert out is value and out["eta"]["relative"] is relative, "in place"
    assert out == {"eta": {"relative": [1.0, 2.0, 0.5]}, "steps": 10, "named": {"u": 3.0, "v": 4.0}, "eta2": None}
    assert [type(v) for v in relative] == [float] * 3 and type(out["steps"]) is int
    assert type(out["named"]["u"]) is float


def test_inherit_setups_takes_eta_whole_and_gd_gf_key_by_key():
    config = {"eta": {"relative": [1.0]}, "gd": {"max_steps": 10, "log_every": 5}, "gf": {"alpha": 1.0},
              "setups": {"own": {"eta": {"absolute": [0.1]}, "gd": {"log_every": 1}},
                         "bare": {}}}
    inherit_setups(config)
    own, bare = config["setups"]["own"], config["setups"]["bare"]
    assert own["eta"] == {"absolute": [0.1]}
    assert own["gd"] == {"max_steps": 10, "log_every": 1} and own["gf"] == {"alpha": 1.0}
    assert bare == {"eta": {"relative": [1.0]}, "gd": {"max_steps": 10, "log_every": 5}, "gf": {"alpha": 1.0}}
    bare["gd"]["max_steps"] = 99
    assert config["gd"]["max_steps"] == 10, "a setup's gd is its own copy"


@pytest.mark.parametrize("config, expected", [
    ({"gd": 100, "setups": {"a": {}}}, {"gd": 100, "setups": {"a": {"eta": None, "gf": {}}}}),
    ({"gf": {"alpha": 1.0}, "setups": {"a": {"gf": "fast"}}},
     {"gf": {"alpha": 1.0}, "setups": {"a": {"gf": "fast", "eta": None, "gd": {}}}}),
    ({"setups": ["a"]}, {"setups": ["a"]}),
    ({"setups": {"a": "b"}}, {"setups": {"a": "b"}}),
])
def test_inherit_setups_leaves_wrong_types_for_validation(config, expected):
    assert inherit_setups(config) == expected


def test_prepare_config_fills_defaults_sorts_keys_and_types_numbers():
    config = copy.deepcopy(MINIMAL)
    config["gd"] = {"max_steps": 200.0}
    config["setups"]["a"]["loss_threshold"] = "5e-2"
    out = prepared(config)
    assert out is config
    a = out["setups"]["a"]
    assert a["loss_threshold"] == 0.05 and a["gd"]["max_steps"] == 200 and type(a["gd"]["max_steps"]) is int
    assert a["gd"]["log_every"] == 10 and out["gd"]["max_steps"] == 200  # defaults of the schema filled in
    assert a["eta"] == {"relative": [0.5, 2.0]}
    assert repr(out) == repr(canonical(out))


def test_equivalent_spellings_prepare_to_the_same_repr():
    """What Snakemake's params trigger compares: the repr of what the config holds."""
    spelled = yaml.safe_dump(MINIMAL, sort_keys=False)
    variants = [
        yaml.safe_dump(MINIMAL),
        spelled.replace("loss_threshold: 0.05", "loss_threshold: 5e-2"),
        spelled.replace("- 0.5\n  - 2.0", "- 0.5\n  - 2"),
        yaml.safe_dump({**MINIMAL, "gd": {"max_steps": 100000.0}, "threads": 1}, sort_keys=False),
        yaml.safe_dump({**MINIMAL, "setups": {"a": {**MINIMAL["setups"]["a"], "gf": {"alpha": 1}}}}),
    ]
    assert spelled not in variants and len(set(variants)) == len(variants)
    reference = repr(prepared(yaml.safe_load(spelled)))
    assert [repr(prepared(yaml.safe_load(v))) for v in variants] == [reference] * len(variants)
    other = yaml.safe_load(spelled.replace("loss_threshold: 0.05", "loss_threshold: 0.04"))
    assert repr(prepared(other)) != reference


def test_prepare_config_hands_the_inherited_config_to_validate():
    seen = []
    config = copy.deepcopy(MINIMAL)
    config["gd"] = {"max_steps": "1e3"}
    prepare_config(config, SCHEMA, lambda c: seen.append(copy.deepcopy(c)))
    assert seen[0]["setups"]["a"]["gd"] == {"max_steps": 1000} and seen[0]["setups"]["a"]["eta"] == MINIMAL["eta"]


def test_gd_runs_relative_then_absolute_each_by_increasing_eta_once():
    eta = {"absolute": [0.1, 0.01, "1e-3"], "relative": [2, 0.25, 1.0, 0.25, 40]}
    assert gd_runs(eta) == ["r0.25", "r1.0", "r2.0", "r40.0", "a0.001", "a0.01", "a0.1"]
    assert gd_runs({"relative": [0.5]}) == ["r0.5"] and gd_runs({"absolute": [1e-5]}) == ["a1e-05"]


def test_eta_spec_reads_back_what_gd_runs_writes():
    eta = {"relative": [0.25, 1.6], "absolute": [0.1, 1e-5]}
    specs = [eta_spec(name) for name in gd_runs(eta)]
    assert specs == [{"relative": 0.25}, {"relative": 1.6}, {"absolute": 1e-5}, {"absolute": 0.1}]
    assert all(type(next(iter(s.values()))) is float for s in specs)


def _setup(**more):
    return {"dataset": {"name": "digits"}, "eta": {"relative": [1.0]}, **more}


def test_setup_optimizers_default_to_plain_gd_and_check_each_setup():
    from normsharp.errors import ConfigError
    from normsharp.optimizers import GD, Momentum
    from normsharp.wfconfig import setup_optimizers

    chosen = setup_optimizers({"a": _setup(), "b": _setup(optimizer={"name": "momentum", "beta": 0.5})})
    assert chosen == {"a": GD(), "b": Momentum(beta=0.5)}
    cases = [
        ({"b": _setup(optimizer={"name": "momentum", "betas": 0.9})}, "setups.b.optimizer.betas: unknown key"),
        # no n_train: the registry's pool of digits (1797) is the training set
        ({"b": _setup(optimizer={"name": "sgd", "batch_size": 1798})}, "setups.b.optimizer.batch_size is 1798"),
        ({"b": _setup(optimizer={"name": "adam"})}, "setups.b.eta: adam has no predicted η_c"),
    ]
    for setups, message in cases:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            setup_optimizers(setups)
    # a spec's own n_train wins over the registry's pool; a dataset of unknown size is checked by the job
    ok = _setup(optimizer={"name": "sgd", "batch_size": 1798})
    assert setup_optimizers({"c": {**ok, "dataset": {"name": "digits", "n_train": 1798}}})["c"].batch_size == 1798
    assert setup_optimizers({"d": {**ok, "dataset": {"name": "synthetic"}}})["d"].batch_size == 1798


def test_execution_settings_come_from_the_config_and_leave_the_run_settings():
    from normsharp.wfconfig import execution, science

    config = prepared({**copy.deepcopy(MINIMAL), "threads": 3, "device": "cpu", "gd": {"checkpoint_every": 7},
                       "setups": {"a": {**MINIMAL["setups"]["a"], "gf": {"checkpoint_every": 5}}}})
    assert execution(config) == {"data_dir": "data", "device": "cpu", "threads": 3, "chunk_size": None,
                                 "progress_seconds": 10.0}
    assert execution(config, "a", "gd", threads=2) == {**execution(config), "threads": 2, "checkpoint_every": 7}
    assert execution(config, "a", "gf")["checkpoint_every"] == 5
    gd = config["setups"]["a"]["gd"]
    assert "checkpoint_every" not in science(gd) and science(gd)["log_every"] == gd["log_every"] == 10


def test_continuation_is_empty_unless_end_points_are_on_and_holds_only_the_integrator():
    from normsharp.wfconfig import continuation

    setup = {"loss_threshold": 0.01, "gf": {"method": "rkc", "tol": 1e-7, "alpha": 1.0, "max_steps": 200000,
                                             "sharpness_every": 5, "sharpness_tol": 1e-5, "log_every": 10,
                                             "divergence_factor": 1000.0, "checkpoint_every": 1000, "test_every": 0}}
    assert continuation({}, setup) == {} and continuation({"end_points": {"enabled": False}}, setup) == {}
    on = continuation({"end_points": {"enabled": True}}, setup)
    assert on == {"gf": {"alpha": 1.0, "divergence_factor": 1000.0, "method": "rkc", "sharpness_every": 5,
                         "sharpness_tol": 1e-5, "tol": 1e-7}, "loss_threshold": 0.01}
    assert list(on) == sorted(on) and list(on["gf"]) == sorted(on["gf"])
