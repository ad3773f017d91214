"""The docs match the code: generated tables up to date, every column and config key described, links resolve."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from normsharp import analysis, files, wfconfig

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs/generate.py")
generate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = generate
_spec.loader.exec_module(generate)

FIX = f"run `{generate.COMMAND}` and commit the result"


def test_generated_sections_are_up_to_date():
    stale = [str(p.relative_to(REPO)) for p in generate.stale_pages()]
    assert not stale, f"out of date: {', '.join(stale)}; {FIX}"


def test_every_generator_has_a_section():
    text = "".join(p.read_text() for p in generate.PAGES)
    missing = [name for name in generate.GENERATORS if f"<!-- BEGIN GENERATED: {name} -->" not in text]
    assert not missing, f"no page holds the generated sections {missing}"


def test_a_stale_section_is_found_and_rewritten(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- BEGIN GENERATED: trajectory-columns -->\n| old |\n"
                    "<!-- END GENERATED: trajectory-columns -->\nrest\n")
    assert generate.stale_pages([page]) == [page]
    page.write_text(generate.render(page.read_text(), {}))
    assert generate.stale_pages([page]) == [] and "`test_accuracy`" in page.read_text()
    assert page.read_text().startswith("intro\n") and page.read_text().endswith("-->\nrest\n")


def test_every_run_column_is_described_and_every_description_is_a_column():
    code, described = set(analysis.RUN_COLUMNS), set(generate.RUN_COLUMN_DOCS)
    assert set(analysis.GAP_COLUMNS) <= code
    assert not code - described, f"columns without a description in docs/generate.py RUN_COLUMN_DOCS: " \
                                 f"{sorted(code - described)}; add them, then {FIX}"
    assert not described - code, f"described columns that the code does not have: {sorted(described - code)}"
    assert all(generate.RUN_COLUMN_DOCS.values())


def test_extra_run_columns_are_written_by_the_library():
    """Columns outside RUN_COLUMNS: each name occurs in the library's source (eta_<grid key> from the η grid)."""
    source = "\n".join(p.read_text() for p in (REPO / "src/normsharp").rglob("*.py"))
    schema = yaml.safe_load(generate.SCHEMA.read_text())
    grid_keys = {f"eta_{k}" for k in schema["definitions"]["eta_grid"]["properties"] if k != "refine"}
    assert "f\"eta_{k}\"" in source  # train_gd records the grid point under eta_<key>
    for name in generate.EXTRA_RUN_COLUMNS:
        assert name not in analysis.RUN_COLUMNS, f"{name} is in RUN_COLUMNS: describe it in RUN_COLUMN_DOCS only"
        assert re.search(rf"\b{name}\b", source) or name in grid_keys, f"no code writes the column {name!r}"


def test_every_correlation_column_is_described():
    from normsharp import correlations

    assert set(correlations.COLUMNS) == set(generate.CORRELATION_COLUMN_DOCS), f"describe each column of " \
        f"normsharp.correlations.COLUMNS in docs/generate.py CORRELATION_COLUMN_DOCS, then {FIX}"


def test_every_trajectory_column_is_described():
    code, described = set(files.TRAJECTORY_COLUMNS), set(generate.TRAJECTORY_COLUMN_DOCS)
    assert code == described, f"TRAJECTORY_COLUMNS {sorted(code)} vs described {sorted(described)}; {FIX}"


def _keys(node, schema, prefix=""):
    rows = generate.config_rows(node, schema, prefix)
    return [(row[0].strip("`"), row[4]) for row in rows]


def test_every_config_key_has_a_description():
    schema = yaml.safe_load(generate.SCHEMA.read_text())
    missing = [key for key, description in _keys(schema, schema) if not description]
    assert not missing, f"add `description:` to these keys of workflow/schemas/config.schema.yaml: {missing}"


def _leaves(node, schema, prefix=""):
    """(dotted key, resolved node) of every leaf below ``node``, each $ref expanded at every use."""
    for key, sub, _ in generate._children(node):
        sub, _ = generate._resolve(sub, schema)
        if generate.is_leaf(sub):
            yield prefix + key, sub
        else:
            yield from _leaves(sub, schema, f"{prefix}{key}.")


def test_every_config_key_has_a_kind_and_the_code_agrees():
    """x-kind on every leaf of the schema (science or execution), on no mapping; the execution keys are those
    the workflow keeps out of the jobs' params (normsharp.wfconfig.EXECUTION, RUN_EXECUTION of gd and gf)."""
    schema = yaml.safe_load(generate.SCHEMA.read_text())
    leaves = dict(_leaves(schema, schema))
    missing = [key for key, node in leaves.items() if node.get("x-kind") not in generate.KINDS]
    assert not missing, f"give these keys `x-kind: science` or `x-kind: execution` in the schema: {missing}"
    execution = {key for key, node in leaves.items() if node["x-kind"] == "execution"}
    expected = set(wfconfig.EXECUTION) | {f"{prefix}{method}.{key}" for prefix in ("", "setups.NAME.")
                                          for method in wfconfig.INHERITED for key in wfconfig.RUN_EXECUTION}
    assert execution == expected
    assert {"dtype", "gd.log_every", "gf.log_every", "setups.NAME.loss_threshold"} <= set(leaves) - execution

    def mappings(node):
        for _, sub, _ in generate._children(node):
            if "$ref" not in sub and not generate.is_leaf(sub):
                yield sub
                yield from mappings(sub)

    assert not [m for m in mappings(schema) if "x-kind" in m], "x-kind belongs on the leaves, not on mappings"
    rows = {row[0].strip("`"): row[3] for row in generate.config_rows(schema, schema)}
    assert rows["device"] == "execution" and rows["dtype"] == "science" and rows["gd"] == "mixed"
    assert rows["geometry"] == "science"


def test_config_reference_lists_every_schema_key_once():
    schema = yaml.safe_load(generate.SCHEMA.read_text())
    keys = [key for key, _ in _keys(schema, schema)]
    assert len(keys) == len(set(keys))
    assert {"experiment", "eta.refine.width", "gd.max_steps", "gf.tol", "setups.NAME.dataset.name",
            "setups.NAME.model.arch", "setups.NAME.gd"} <= set(keys)
    assert "setups.NAME.gd.max_steps" not in keys  # a $ref is expanded once, at its first use


def test_module_map_reads_imports_with_ast(tmp_path, monkeypatch):
    package = tmp_path / "normsharp"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package."""\n__version__ = "0"\n')
    (package / "a.py").write_text('"""Module a. More text.\n\nDetails."""\nfrom typing import TYPE_CHECKING\n'
                                  "from . import __version__\nfrom .b import thing\n"
                                  "if TYPE_CHECKING:\n    from .c import Hint\n"
                                  "def f():\n    from .sub import d\n    import normsharp.c\n")
    for name in ("b.py", "c.py", "sub/__init__.py", "sub/d.py"):
        (package / name).write_text("from .. import a\n" if name == "sub/d.py" else "")
    monkeypatch.setattr(generate, "PACKAGE", package)
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in generate.module_map().splitlines()[2:]}
    assert set(rows) == {"__init__", "a", "b", "c", "sub/__init__", "sub/d"}
    assert rows["a"][1:] == ["11", "b, c, sub.d", "Module a |"]
    assert rows["sub/d"][2] == "a" and rows["b"][2] == "—"


# ---- links ---------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {_anchor(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.MULTILINE)}


def _links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for match in LINK.finditer(text):
        yield match.group(1)


@pytest.mark.parametrize("page", generate.PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(REPO) if file.is_relative_to(REPO) else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(REPO)})")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


def test_link_check_catches_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n\n[ok](#title-here) [bad](b.md) [bad anchor](#nope)\n")
    targets = list(_links(tmp_path / "a.md"))
    assert targets == ["#title-here", "b.md", "#nope"]
    assert _anchors(tmp_path / "a.md") == {"title-here"}
    assert _anchor("Refining the η grid") == "refining-the-η-grid"
    assert _anchor("Measured needs per rule (what the requests are sized from)") == \
        "measured-needs-per-rule-what-the-requests-are-sized-from"


def test_readme_is_a_door_with_the_set_up_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert 'pip install -c requirements.lock -e ".[test]"' in readme and "snakemake --cores 2" in readme
    assert "`pytest -q`" in readme and "docs/development.md" in readme
    assert "pytest -q" in (REPO / ".ci/run").read_text()
    assert "§" not in readme and not any("DESIGN.md" in p.read_text() for p in generate.PAGES)
