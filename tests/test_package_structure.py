"""The package's import graph has no cycle, and the algorithms stay apart from the runtime.

Edges are read from the source (`import` and `from ... import` statements anywhere in a module,
including imports inside functions): `from specbranch.pkg import name` points at the submodule
`specbranch.pkg.name` when that is a module, else at the package `specbranch.pkg`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import specbranch

ROOT = Path(specbranch.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The specbranch modules `name` imports."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
            subs = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(subs or {base})
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle() -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    GRAPH["specbranch.errors"].add("specbranch.config")  # config imports errors: now a cycle
    try:
        assert find_cycle() is not None
    finally:
        GRAPH["specbranch.errors"].discard("specbranch.config")


def test_decoders_import_neither_runtime_models_probe_nor_hrad():
    forbidden = ("specbranch.transport.process", "specbranch.models", "specbranch.probe", "specbranch.hrad",
                 "specbranch.runtime")
    for name, imported in GRAPH.items():
        if name.startswith("specbranch.decoders"):
            bad = sorted(m for m in imported if m.startswith(forbidden))
            assert not bad, f"{name} imports {bad}"
