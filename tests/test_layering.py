"""The package's modules import each other without circles, and the numpy-only ones never reach torch.

Every import statement counts, also those inside functions or ``if TYPE_CHECKING:``: a lazy import hides
a circle from the interpreter, not from the reader.
"""

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "normsharp"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
# modules that load only the standard library (the diagonal-network theory: and numpy, scipy's root finder inside
# two functions); the workflow reads the first two while it builds the DAG, `normsharp status` runs the last two
NUMPY_ONLY = ("theory", "dln_closed_form", "dln_limits", "dln_instances")
TORCH_FREE = ("registry", "resources", "containers", "errors", *NUMPY_ONLY, "status", "progress")


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never executed)."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def imports(module: str, runtime: bool = False) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level external packages) that ``module`` imports anywhere in its source;
    ``runtime``: leave out the imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    hidden = _type_checking_only(tree) if runtime else set()
    internal, external = set(), set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("normsharp."):
                    internal.add(alias.name.split(".")[1])
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("normsharp"):
                external.add(node.module.split(".")[0])
                continue
            parts = (node.module or "").removeprefix("normsharp").lstrip(".").split(".")
            if parts[0]:  # from .data import x / from normsharp.data import x
                internal.add(parts[0])
            else:  # from . import theory / from . import __version__
                internal.update(a.name if a.name in MODULES else "__init__" for a in node.names)
    internal.discard(module)
    return internal, external


GRAPH = {module: imports(module)[0] for module in MODULES}


def test_every_internal_import_names_a_module_of_the_package():
    for module, targets in GRAPH.items():
        assert targets <= set(MODULES), f"{module} imports {targets - set(MODULES)}"


def test_the_internal_import_graph_has_no_cycle():
    try:
        order = list(TopologicalSorter(GRAPH).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert set(order) == set(MODULES)


def test_layers_come_before_the_nets_and_the_nets_before_the_assembly():
    assert "layers" in GRAPH["architectures"] and "architectures" in GRAPH["models"]
    assert not GRAPH["layers"] & {"architectures", "models"}
    assert GRAPH["containers"] == set() and GRAPH["registry"] == set()


def _reachable(module: str) -> set[str]:
    """The package's modules that importing ``module`` executes (itself included)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(imports(current, runtime=True)[0])
    return seen


@pytest.mark.parametrize("module", TORCH_FREE)
def test_numpy_only_modules_import_no_torch_even_indirectly(module):
    allowed = set(sys.stdlib_module_names) | ({"numpy", "scipy"} if module in NUMPY_ONLY else set())
    for reached in _reachable(module):
        external = imports(reached, runtime=True)[1]
        assert external <= allowed, f"importing {module} runs {reached}, which imports {external - allowed}"


def test_importing_theory_loads_no_torch():
    code = "import sys, normsharp.theory, normsharp.resources; assert 'torch' not in sys.modules, 'torch loaded'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
