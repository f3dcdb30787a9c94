"""Draw the folder diagram of docs/architecture.md from the code's own imports.

    python docs/tools/architecture_graph.py          # rewrite the diagram in the page
    python docs/tools/architecture_graph.py --check  # exit 1 when the page is out of date

The graph is grimp's (the library under import-linter): one node per folder or top-level module
of ``clsclip``, one arrow per "imports from", the small core modules everyone uses left out.
A test keeps the page equal to what this prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "architecture.md"
BEGIN, END = "<!-- graph:begin (docs/tools/architecture_graph.py) -->", "<!-- graph:end -->"
CORE = ("checks", "optional", "geometry", "version")
"""Modules nearly everything imports; drawn as one note, not as arrows."""
HIDDEN = ("__main__",)


def edges() -> list[tuple[str, str]]:
    """(importer, imported) pairs between the top-level parts of ``clsclip``."""
    import grimp

    graph = grimp.build_graph("clsclip")
    found = set()
    for module in graph.modules:
        if module == "clsclip":
            continue
        source = module.split(".")[1]
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == "clsclip":
                continue
            target = imported.split(".")[1]
            if source != target and not {source, target} & {*CORE, *HIDDEN}:
                found.add((source, target))
    return sorted(found)


def diagram() -> str:
    """The mermaid block of the page."""
    lines = ["```mermaid", "flowchart TD"]
    lines += [f"    {a} --> {b}" for a, b in edges()]
    core = ", ".join(CORE)
    lines += [f'    core["core modules used by all: {core}"]', "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the page")
    args = parser.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    current = text[start:stop].strip()
    wanted = diagram()
    if args.check:
        return 0 if current == wanted else 1
    PAGE.write_text(text[:start] + "\n" + wanted + "\n" + text[stop:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
