"""Write one script's section into benchmarks/RESULTS.md, between ``<!-- NAME -->`` and ``<!-- /NAME -->``.

Sections sit below bench_core.py's ``<!-- notes -->`` marker, which bench_core keeps when it rewrites its table.
"""

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``text``."""
    old = RESULTS.read_text() if RESULTS.exists() else "<!-- notes -->\n"
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(new)
