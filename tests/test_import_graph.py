"""No import cycle anywhere in bindiff, counting imports inside functions too.

The graph is read from the source with ``ast`` (not by importing), so an import kept alive
only by being deferred into a function body still counts as an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (("bindiff", "bindiff"), ("adapters", "bindiff.adapters"))


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for folder, name in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([name, *parts])] = (path, path.name == "__init__.py")
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_package) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_package else name.split(".")[:-1]
                if node.level:
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            # importing a.b.c runs a/__init__ and a/b/__init__ first: those are edges too (how
            # tasks.masks.schema -> config.keys made a cycle through config/__init__), except the
            # importer's own parent packages, which are always imported before it
            targets = [*targets, *(".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1))]
            graph[name] |= {t for t in targets if t in mods and t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_finds_a_cycle_it_is_shown():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "bindiff.core.process" in graph["bindiff.core.losses"]
    assert len(graph) > 50


def test_a_submodule_import_runs_its_packages_init():
    graph = import_graph()
    assert "bindiff.config" in graph["bindiff.tasks.masks.schema"]  # it imports bindiff.config.keys


def test_every_schema_module_imports_first_in_a_fresh_interpreter():
    import subprocess
    import sys

    for module in ("bindiff.tasks.masks.schema", "bindiff.tasks.recommendation.schema",
                   "bindiff.tasks.segmentation.schema", "bindiff.config.keys"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr  # an ImportError of a partially initialised module before


def test_bindiff_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)
