"""Write the tables of the docs that code produces: `python docs/generate.py` (check only: `--check`).

Each table sits between ``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->`` in README.md or
docs/*.md and is rebuilt from its source, so it cannot drift from the code:

- ``config``: the configuration reference, from workflow/schemas/config.schema.yaml (key, type, default, kind
  (``x-kind``: science or execution), description), in docs/configuration.md and config/README.md.
- ``run-columns`` / ``trajectory-columns``: the columns of runs.parquet and trajectories.parquet, from the code's
  column tables, described by :data:`RUN_COLUMN_DOCS`, :data:`EXTRA_RUN_COLUMNS` and :data:`TRAJECTORY_COLUMN_DOCS`.
- ``correlation-columns`` / ``correlation-measures``: the columns of correlations.parquet
  (:data:`CORRELATION_COLUMN_DOCS`) and the measures it correlates (normsharp.correlations.MEASURES).
- ``dln-minimisers``: the diagonal-linear-network minimisers, :func:`normsharp.theory.markdown_table`.
- ``module-map``: every module of src/normsharp with its first docstring sentence, lines and normsharp imports.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PACKAGE = REPO / "src/normsharp"
PAGES = [REPO / "README.md", REPO / "config/README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = "python docs/generate.py"
MARKER = re.compile(r"(<!-- BEGIN GENERATED: ([\w-]+) -->\n)(.*?)(<!-- END GENERATED: \2 -->)", re.DOTALL)

# ---- the columns of runs.parquet and trajectories.parquet ---------------------------------------------------

# One description per column of the code's table (normsharp's RUN_COLUMNS, which includes GAP_COLUMNS and the
# provenance columns); tests/test_docs.py fails when the two key sets differ.
RUN_COLUMN_DOCS = {
    "experiment": "the config's `experiment`",
    "setup": "the setup's name under `setups`",
    "dataset": "the setup's `dataset.name`",
    "arch": "the setup's `model.arch`",
    "loss": "`mse` or `ce`",
    "seed": "init seed: θ₀ is drawn from it",
    "method": "`gd` or `gf` (the gradient-flow reference)",
    "eta": "learning rate η (NaN for `gf`)",
    "eta_c": "predicted η_c of the run's optimiser: c/(s_GF + shift), GD's 2/s_GF (the `gf` row's); NaN for "
             "rmsprop/adam, which have none",
    "s_gf": "s_GF: the largest sharpness along the setup and seed's gradient flow until L < ε",
    "eta_transition": "observed transition of the setup and seed's sweep "
                      "([definition](experiments.md#observed-versus-predicted-transition)); NaN if none",
    "eta_over_eta_c": "η/η_c",
    "regime": "`flow-aligned` (η < η_c), `eos` (η ≥ η_c), `gf` for the reference; NA without η_c (adaptive)",
    "status": "`converged` (L < ε), `max_steps` or `diverged`",
    "steps": "GD steps (integrator steps for `gf`)",
    "train_loss": "final training loss L(θ)",
    "test_loss": "final test loss",
    "test_accuracy": "final test accuracy (NaN for regression)",
    "sharpness": "final signed eigenvalue of largest magnitude of the training-loss Hessian (NaN if diverged)",
    "l1_norm": "‖θ‖₁ of the flat parameter vector",
    "l2_norm": "‖θ‖₂ of the flat parameter vector",
    "dist_to_init": "‖θ − θ₀‖₂",
    "trace": "Hutchinson estimate of the Hessian's trace",
    "train_accuracy": "final training accuracy (NaN for regression)",
    "gen_error": "exact expected generalisation error G(β) = (β − β*)ᵀΣ(β − β*) of the end point where the setup "
                 "has a closed form (`single_point` data, `diagonal_linear` model); NaN otherwise and for "
                 "non-finite end points",
    "time": "η·steps (t_ε for `gf`)",
    "n_grad": "gradients computed by the run (sgd: mini-batch gradients)",
    "n_hvp": "Hessian-vector products of the run and of its evaluation",
    "wall_seconds": "wall time of the GD or GF job",
    "dist_to_gf": "‖θ − θ_GF‖₂ to the same seed's gradient-flow end point (0 for `gf`, NaN if diverged)",
    "rel_dist_to_gf": "`dist_to_gf` ÷ ‖θ_GF − θ₀‖₂",
    "train_loss_gap_gf": "L(θ) − L(θ_GF), signed",
    "sharpness_gap_gf": "S(θ) − S(θ_GF), signed",
    "normsharp_version": "normsharp version that computed the run (GD or GF job)",
    "git_commit": "commit of the checkout the library ran from; NA outside a git checkout",
    "git_dirty": "whether tracked files differed from that commit; NA outside a git checkout",
    "torch_version": "torch version of the run's job",
    "python_version": "Python version of the run's job",
    "device": "`cpu` or `cuda`",
    "device_name": "CPU model or GPU name",
    "dtype": "`float64` or `float32`",
    # the execution settings the GD or GF job used (docs/configuration.md#science-and-execution-settings)
    "threads": "torch threads of the GD or GF job (`threads`: the rule's threads)",
    "chunk_size": "examples per chunk of its full-batch sums (`chunk_size`; NA: unchunked)",
    "checkpoint_every": "its `gd.checkpoint_every` or `gf.checkpoint_every` (0: no checkpoints)",
    "resumed_at_step": "the step its last job resumed from a checkpoint at (0: computed from θ₀ in one job)",
    "eval_device": "`cpu` or `cuda`: the device of the run's evaluate job",
    "eval_threads": "torch threads of the evaluate job",
    "eval_chunk_size": "`chunk_size` of the evaluate job (NA: unchunked)",
    "optimizer": "the run's optimiser (`setups.NAME.optimizer.name`; `gd` for runs written before it existed, NA "
                 "for `gf`)",
    "opt_sharpness": "final sharpness the optimiser's edge is met by: S + shift (gd, momentum), λ_max(P⁻¹(H + l2·I)) "
                     "(rmsprop, adam), batch sharpness (sgd); = `sharpness` for plain GD; NaN for `gf`",
    "edge": "the optimiser's edge c/η (GD 2/η, heavy ball (2 + 2β)/η, …); NaN for `gf`",
    "edge_ratio": "`opt_sharpness` ÷ `edge` = S_opt·η/c: 1 at the optimiser's edge of stability",
    # the opt-in sharpness measures (docs/measures.md); NaN (costs 0) where off or diverged
    "density_n_hvp": "HVPs of the spectral density (stochastic Lanczos quadrature, `geometry.density`): ≤ probes × "
                     "steps; 0 when off; the nodes and weights are in spectra.parquet",
    "density_seconds": "wall seconds of the spectral density",
    "adaptive_sharpness_max": "worst-case adaptive sharpness max_{‖δ/|θ|‖_p ≤ ρ} L(θ + δ) − L(θ) by projected "
                              "gradient ascent (a lower bound; `geometry.adaptive_sharpness`), in units of the loss",
    "adaptive_sharpness_avg": "average-case adaptive sharpness E_{δ∼N(0, ρ²diag(θ²))} L(θ + δ) − L(θ), Monte "
                              "Carlo, in units of the loss",
    "adaptive_sharpness_avg_stderr": "standard error of `adaptive_sharpness_avg` over its samples",
    "adaptive_sharpness_n_grad": "gradients of the worst-case ascent (the average case adds samples + 1 losses)",
    "adaptive_sharpness_seconds": "wall seconds of both adaptive sharpnesses",
    "layer_sharpness_n_hvp": "HVPs of the per-layer block eigenvalues (`geometry.layer_sharpness`)",
    "layer_sharpness_seconds": "wall seconds of the per-layer block eigenvalues",
    # the norms beyond ℓ1/ℓ2 (docs/measures.md#norms), every run
    "spectral_norm_product": "Π_l σ_max(m_l W_l) over the linear maps the weight layers apply (fcn: its linear layers; "
                             "diagonal_linear: (max_i |w_i|)^D; cnn: each convolution's operator norm on its input "
                             "shape, then the head); NaN for resnet, vit, custom and diverged runs; units of the "
                             "output per unit of the input",
    "path_norm": "ℓ2 path norm φ₂ = (Σ_paths Π_e w_e²)^{1/2} of Neyshabur et al. 2015, biases as edges from a "
                 "constant unit (fcn; diagonal_linear: (Σ_i w_i^{2D})^{1/2}); NaN for cnn, resnet, vit, custom",
    # is the growth real? (geometry.end_points, docs/measures.md#is-the-growth-real): plain-GD runs with η ≥ η_c
    # that did not diverge; NaN (costs 0, status NA) for every other run and when off
    **{f"{p}_{m}": f"{what} {point}" for p, point in (
        ("avg", "at θ̄, the mean of the W = `window` GD iterates θ_K, …, θ_{K+W−1} from the end point θ_K at η"),
        ("cont", "at the point where the gradient flow from θ_K reaches L < `continue_factor`·ε"))
       for m, what in (("sharpness", "signed max|λ| of the Hessian (Lanczos, `geometry.tol`)"),
                       ("l1_norm", "ℓ1 norm"), ("l2_norm", "ℓ2 norm"), ("train_loss", "training loss"),
                       ("test_loss", "test loss"), ("dist_to_end", "distance to θ_K, ‖θ − θ_K‖₂,"))},
    "avg_n_grad": "gradients of the averaging window (W − 1)",
    "avg_n_hvp": "HVPs of `avg_sharpness`",
    "avg_seconds": "wall seconds of the averaged end point (window and its measures)",
    "cont_n_grad": "gradients of the continued gradient flow",
    "cont_n_hvp": "HVPs of the continued flow (its S along the way) and of `cont_sharpness`",
    "cont_seconds": "wall seconds of the continued end point (flow and its measures)",
    "cont_time": "flow time t the continuation ran for",
    "cont_status": "how the continued flow ended: `converged` (L < continue_factor·ε), `max_time` (flow time "
                   "max_time_factor·K·η reached first), `max_steps` (`geometry.end_points.max_steps`) or "
                   "`diverged`; NA where not measured",
}

# Columns outside the code's typed table: lists, and what the run files add (name: (type, description)).
EXTRA_RUN_COLUMNS = {
    "top_eigenvalues": ("list of float64", "top-k Hessian eigenvalues by magnitude (`geometry.top_k`)"),
    "beta": ("list of float64",
             "the end point's β = w^{⊙D} (`uv`: u^{⊙D} − v^{⊙D}) where `gen_error` is defined; empty otherwise"),
    "layer_sharpness": ("list of float64", "signed top-|λ| of each layer's Hessian block ∇²_{θ_l θ_l}L (a layer: one "
                        "module's weight and bias together), in `layer_names` order; empty when off or diverged"),
    "layer_names": ("list of string", "the layer blocks, in θ order: a module's weight and bias together, named "
                    "by the module (`θ` for parameters of the root module); of every run"),
    "layer_l1_norms": ("list of float64", "‖θ_l‖₁ of each layer block, in `layer_names` order (they sum to "
                       "`l1_norm`)"),
    "layer_l2_norms": ("list of float64", "‖θ_l‖₂ of each layer block, in `layer_names` order (their squares sum "
                       "to `l2_norm`²)"),
    "trace_stderr": ("float64", "standard error of `trace`"),
    "sharpness_converged": ("boolean", "whether Lanczos met `geometry.tol` for `sharpness` (NaN if diverged)"),
    "final_sharpness": ("float64", "`gf`: S at the flow's end point, from the integrator (NaN for `gd`)"),
    "eta_relative": ("float64", "the grid point as configured, a multiple of η_c (only when the sweep has one)"),
    "eta_absolute": ("float64", "the grid point as configured, an absolute η (only when the sweep has one)"),
    "optimizer_settings": ("string", "the optimiser's settings with its defaults, as JSON (NA for `gf`)"),
    "edge_measure": ("string", "which sharpness meets the edge: `hessian`, `preconditioned` or `batch`"),
    "edge_constant": ("float64", "c of the edge c/η"),
    "sharpness_shift": ("float64", "what weight decay adds to S before it meets c/η (l2 + f·decoupled)"),
}

TRAJECTORY_COLUMN_DOCS = {
    "step": "GD step (integrator step for `gf`)",
    "time": "η·step (the flow's time t for `gf`)",
    "train_loss": "training loss L(θ)",
    "sharpness": "S(θ), every `sharpness_every` steps (NaN in between)",
    "test_loss": "test loss, every `test_every` steps and at the end (NaN in between and when off)",
    "test_accuracy": "test accuracy, as `test_loss` (NaN for regression)",
    "opt_sharpness": "the optimiser's own sharpness (as in runs.parquet) where `sharpness` is computed; NaN for "
                     "`gf` and for runs written before it existed",
    "edge": "the optimiser's edge c/η; NaN for `gf` and for runs written before it existed",
}


# correlations.parquet (normsharp.correlations.COLUMNS); tests/test_docs.py fails when the key sets differ
CORRELATION_COLUMN_DOCS = {
    "experiment": "the config's `experiment`",
    "setup": "the setup's name under `setups`",
    "seed": "init seed",
    "measure": "the measure's name in the table below",
    "kind": "`sharpness` or `norm`",
    "column": "the runs.parquet column it is read from",
    "tau": "Kendall's τ-b of the measure with `test_loss` over the setup and seed's converged GD runs (one per η); "
           "NaN when n < 2 or either is constant",
    "p_value": "two-sided p-value of τ = 0 (normal approximation with the tie-corrected variance); NaN when n < 3",
    "n": "runs with both the measure and the test loss finite",
}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_columns() -> str:
    from normsharp import analysis

    rows = [[f"`{name}`", dtype, RUN_COLUMN_DOCS.get(name, "")] for name, dtype in analysis.RUN_COLUMNS.items()]
    rows += [[f"`{name}`", dtype, text] for name, (dtype, text) in EXTRA_RUN_COLUMNS.items()]
    return _table(["column", "type", "meaning"], rows)


def trajectory_columns() -> str:
    from normsharp import files

    return _table(["column", "meaning"],
                  [[f"`{name}`", TRAJECTORY_COLUMN_DOCS.get(name, "")] for name in files.TRAJECTORY_COLUMNS])


def correlation_columns() -> str:
    from normsharp import correlations

    return _table(["column", "type", "meaning"], [[f"`{name}`", dtype, CORRELATION_COLUMN_DOCS.get(name, "")]
                                                  for name, dtype in correlations.COLUMNS.items()])


def correlation_measures() -> str:
    from normsharp import correlations

    return _table(["measure", "column", "kind", "what"], [[f"`{name}`", f"`{m.column}`", m.kind, m.description]
                                                         for name, m in correlations.MEASURES.items()])


def dln_minimisers() -> str:
    from normsharp import theory

    return theory.markdown_table()


# ---- the configuration reference ----------------------------------------------------------------------------

def _resolve(node: dict, schema: dict) -> tuple[dict, str | None]:
    """``node`` with its ``$ref`` target merged in (the node's own keys win), and the reference."""
    ref = node.get("$ref")
    if ref is None:
        return node, None
    target = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}, ref


def _flow(value) -> str:
    """A value as YAML writes it inline (floats as Python prints them: 1e-07, 0.02, 1.0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(map(_flow, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else str(value)


def _type(node: dict) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kinds = node.get("type", "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    bounds = ", ".join(f"{op} {_flow(node[key])}" for key, op in (
        ("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")) if key in node)
    words = []
    for kind in kinds:
        if kind == "array":
            size = "non-empty " if node.get("minItems") == 1 else ""
            words.append(f"{size}list of {_type(node.get('items', {})) or 'values'}")
        elif kind == "object":
            words.append("mapping")
        elif kind == "null":
            words.append("null")
        else:
            words.append(f"{kind} {bounds}".strip())
    return " or ".join(words)


KINDS = ("science", "execution")


def _children(node: dict) -> list[tuple[str, dict, bool]]:
    """(key, sub-schema, required) of a mapping's keys; ``NAME`` for its open keys (``additionalProperties``)."""
    children = [(key, sub, key in node.get("required", [])) for key, sub in node.get("properties", {}).items()]
    if isinstance(node.get("additionalProperties"), dict):
        children.append(("NAME", node["additionalProperties"], False))
    return children


def is_leaf(node: dict) -> bool:
    """A key that holds a value, not keys of its own (an open mapping such as ``kwargs`` is a leaf)."""
    return not _children(node)


def kind(node: dict, schema: dict) -> str:
    """A leaf's ``x-kind`` (``science``: changes a result, reruns what uses it; ``execution``: how it is computed,
    reruns nothing); a mapping's is its keys' kind, or ``mixed``."""
    node, _ = _resolve(node, schema)
    if is_leaf(node):
        return node.get("x-kind", "")
    kinds = {kind(sub, schema) for _, sub, _ in _children(node)}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def config_rows(node: dict, schema: dict, prefix: str = "", seen: set | None = None) -> list[list[str]]:
    """Rows (key, type, default, kind, description) for every key below ``node``, a ``$ref`` expanded once."""
    seen = set() if seen is None else seen
    rows = []
    for key, sub, required in _children(node):
        sub, ref = _resolve(sub, schema)
        path = prefix + key
        default = "required" if required else (f"`{_flow(sub['default'])}`" if "default" in sub else "")
        rows.append([f"`{path}`", _type(sub), default, kind(sub, schema), sub.get("description", "")])
        if ref in seen:
            continue
        if ref is not None:
            seen.add(ref)
        rows += config_rows(sub, schema, path + ".", seen)
    return rows


def config_reference() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    return _table(["key", "type", "default", "kind", "meaning"], config_rows(schema, schema))


# ---- the module map -----------------------------------------------------------------------------------------

def _first_sentence(docstring: str | None) -> str:
    paragraph = " ".join((docstring or "").strip().split("\n\n")[0].split())
    paragraph = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", paragraph).replace("``", "`")
    match = re.search(r"^(.*?\.)(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).rstrip(".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(path: Path, modules: set[str]) -> list[str]:
    """The normsharp modules that ``path`` imports at run time (anywhere in it, not under ``if TYPE_CHECKING``)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ('normsharp', ...)
    found = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "normsharp")
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                as_module = f"{target}.{alias.name}"
                found.add(as_module if as_module in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return sorted(name.removeprefix("normsharp.") for name in found
                  if name.startswith("normsharp.") and name in modules)


def module_map() -> str:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in files}
    rows = []
    for path in names.values():
        text = path.read_text()
        imports = module_imports(path, set(names))
        rows.append([f"`{path.relative_to(PACKAGE).with_suffix('').as_posix()}`", str(len(text.splitlines())),
                     ", ".join(imports) or "—", _first_sentence(ast.get_docstring(ast.parse(text)))])
    return _table(["module", "lines", "imports (normsharp)", "what"], rows)


GENERATORS = {
    "config": config_reference,
    "run-columns": run_columns,
    "trajectory-columns": trajectory_columns,
    "correlation-columns": correlation_columns,
    "correlation-measures": correlation_measures,
    "dln-minimisers": dln_minimisers,
    "module-map": module_map,
}


def render(text: str, cache: dict) -> str:
    """``text`` with every generated section rebuilt (``cache`` holds each generator's output)."""
    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise KeyError(f"unknown generated section {name!r}; known: {', '.join(GENERATORS)}")
        if name not in cache:
            cache[name] = GENERATORS[name]()
        return f"{match.group(1)}{cache[name]}\n{match.group(4)}"

    return MARKER.sub(fill, text)


def stale_pages(pages=PAGES) -> list[Path]:
    """The pages whose generated sections differ from what the code produces now."""
    cache = {}
    return [page for page in pages if render(page.read_text(), cache) != page.read_text()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date pages (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for page in stale:
            print(f"out of date: {page.relative_to(REPO)} (run `{COMMAND}`)", file=sys.stderr)
        return 1 if stale else 0
    cache = {}
    for page in PAGES:
        text = page.read_text()
        new = render(text, cache)
        if new != text:
            page.write_text(new)
            print(f"rewrote {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
