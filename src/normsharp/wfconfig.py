"""The workflow's config in canonical form, and the run names of an η grid. Imports no Snakemake.

Snakemake's params trigger compares the repr of each param, so a config that means the same but is spelled
otherwise (keys in another order, ``1e-3`` for ``0.001``, ``1`` for ``1.0``, a default written out) would rerun
finished jobs. So numbers take one form where the schema types them, validation fills the defaults, and every
mapping gets sorted keys (:func:`prepare_config`); input functions that build a dict return it through
:func:`canonical`.
"""

import re
from collections.abc import Callable

from . import optimizers
from .errors import ConfigError
from .registry import shape_of

NUMERIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
INHERITED = ("gd", "gf")  # mappings a setup merges key by key over the experiment's; eta is taken whole
# The execution settings (``x-kind: execution`` in the schema, checked by tests/test_docs.py): how a result is
# computed, not what it is. They are no job's params, so changing them reruns nothing; the jobs read them from the
# config (:func:`execution`) and record what they used per run (provenance columns).
EXECUTION = ("results_dir", "data_dir", "device", "threads", "chunk_size", "progress_seconds")
RUN_EXECUTION = ("checkpoint_every",)  # of gd and gf, also in a setup's gd and gf


def canonical(value):
    """A copy of ``value`` with the keys of every mapping sorted, at every depth (tuples become lists)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def resolve_ref(schema, root_schema):
    """``schema`` with its local ``$ref`` (``#/a/b``) followed inside ``root_schema``, repeatedly."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root_schema
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def schema_numbers(value, schema, root_schema):
    """``value`` with what the schema types ``number`` as a float and ``integer`` as an int, in place where
    ``value`` is a mapping or list (and returned).

    A numeric string counts as a number there (PyYAML reads ``1e-3``, without a dot, as a string); anything
    else is left as it is, for validation to reject with its message. ``$ref`` resolves in ``root_schema``."""
    schema = resolve_ref(schema, root_schema)
    if not isinstance(schema, dict):
        return value
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if isinstance(value, str) and types & {"number", "integer"} and NUMERIC.fullmatch(value.strip()):
        number = float(value)
        if "number" in types or number.is_integer():
            value = number
    if isinstance(value, float) and "integer" in types and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and "number" in types:
        return value if "integer" in types else float(value)
    if isinstance(value, dict):
        extra = schema.get("additionalProperties")
        for key in value:
            sub = schema.get("properties", {}).get(key, extra)
            value[key] = schema_numbers(value[key], sub, root_schema)
    elif isinstance(value, list) and "items" in schema:
        value[:] = [schema_numbers(v, schema["items"], root_schema) for v in value]
    return value


def inherit_setups(config: dict) -> dict:
    """Each setup, in place, takes the experiment's ``eta`` and ``optimizer`` unless it has its own, and the
    experiment's ``gd``/``gf`` overridden key by key by its own. Values of the wrong type are left as they are, for
    validation to name (defaults are filled afterwards, so a setup inherits only what the user wrote)."""
    setups = config.get("setups")
    for setup in setups.values() if isinstance(setups, dict) else ():
        if isinstance(setup, dict):
            setup.setdefault("eta", config.get("eta"))
            if config.get("optimizer") is not None:  # taken whole, as eta: keys of two optimisers do not mix
                setup.setdefault("optimizer", config["optimizer"])
            for key in INHERITED:
                top, own = config.get(key) or {}, setup.get(key) or {}
                if isinstance(top, dict) and isinstance(own, dict):
                    setup[key] = {**top, **own}
    return config


def prepare_config(config: dict, schema: dict, validate: Callable[[dict], object]) -> dict:
    """The config, in place, as the workflow reads it: setups inherit, numbers take the schema's form,
    ``validate(config)`` checks it and fills the defaults in place, numbers again (the defaults), then sorted
    keys everywhere."""
    inherit_setups(config)
    schema_numbers(config, schema, schema)
    validate(config)
    prepared = canonical(schema_numbers(config, schema, schema))
    config.clear()
    config.update(prepared)
    return config


def science(settings: dict) -> dict:
    """A setup's gd or gf settings without the execution keys (:data:`RUN_EXECUTION`): a job's params."""
    return {k: v for k, v in settings.items() if k not in RUN_EXECUTION}


def execution(config: dict, setup: str | None = None, method: str | None = None, threads: int | None = None) -> dict:
    """What a job of ``setup`` (a ``method``'s run: 'gd' or 'gf') needs to know about how to compute, from the
    prepared config: ``device``, ``chunk_size``, ``progress_seconds``, ``data_dir``, ``threads`` (the job's
    Snakemake threads when given, else the config's) and the run's ``checkpoint_every``. Never a job's params."""
    out = {k: config[k] for k in EXECUTION if k != "results_dir"}
    if threads is not None:
        out["threads"] = int(threads)
    if setup is not None and method is not None:
        out.update({k: config["setups"][setup][method][k] for k in RUN_EXECUTION})
    return out


def gd_runs(eta: dict) -> list[str]:
    """Run names of an η grid's GD sweep, by increasing η: ``r<multiple of η_c>``, then ``a<absolute η>``,
    each value once, written as Python's repr of the float (``r0.5``, ``r2.0``, ``a0.001``)."""
    names = [f"r{r!r}" for r in sorted(set(map(float, eta.get("relative", []))))]
    names += [f"a{a!r}" for a in sorted(set(map(float, eta.get("absolute", []))))]
    return names


def eta_spec(run: str) -> dict:
    """The η of a GD run name: ``r2.0`` → ``{"relative": 2.0}`` (η = 2 η_c), ``a0.01`` → ``{"absolute": 0.01}``
    (the inverse of :func:`gd_runs`)."""
    value = float(run[1:])
    return {"relative": value} if run[0] == "r" else {"absolute": value}


def setup_optimizers(setups: dict) -> dict:
    """Each setup's optimiser (:func:`normsharp.optimizers.from_config`), checked before any job runs.

    A bad key or value, a batch larger than the training set (where the spec's ``n_train`` or the registry's
    pool gives its size; the job checks again on the data) or a relative η grid (or refinement) for an optimiser
    without η_c raises ConfigError naming ``setups.NAME....``.
    """
    chosen = {}
    for name, setup in setups.items():
        try:
            opt = optimizers.from_config(setup.get("optimizer"))
            n_train = setup["dataset"].get("n_train", (shape_of(setup["dataset"]["name"]) or (None, None))[1])
            if not opt.full_batch and n_train is not None:
                optimizers.check_batch_size(opt.batch_size, n_train)
        except ConfigError as err:
            raise ConfigError(f"setups.{name}.{err}") from None
        if opt.adaptive and set(setup["eta"]) & {"relative", "refine"}:
            raise ConfigError(f"setups.{name}.eta: {opt.name} has no predicted η_c (no flow limit gives one), so "
                              f"the grid must be absolute: eta.absolute, without relative or refine")
        chosen[name] = opt
    return chosen


def measure_figures(geometry: dict) -> list[str]:
    """The figures of normsharp.registry.MEASURE_FIGURES whose opt-in measure the ``geometry`` settings turn on."""
    from .end_points import is_on
    from .registry import MEASURE_FIGURES
    from .sharpness_measures import enabled

    on = {**enabled(geometry), "end_points": is_on(geometry)}
    return [name for name, key in MEASURE_FIGURES.items() if on[key]]


def continuation(geometry: dict, setup: dict) -> dict:
    """The evaluate job's ``continuation``: {} unless geometry.end_points is on; then the setup's ε
    (``loss_threshold``) and the integrator settings of its ``gf`` (normsharp.end_points.FLOW_KEYS), so an
    edit of gf.test_every or gf.checkpoint_every re-evaluates nothing."""
    from .end_points import FLOW_KEYS, is_on

    if not is_on(geometry):
        return {}
    return canonical({"loss_threshold": setup["loss_threshold"],
                      "gf": {k: setup["gf"][k] for k in FLOW_KEYS if k in setup["gf"]}})
