"""Imports go one way: no module of src/scratchnet imports, even lazily, a module that imports it back.

The graph is read from the source (ast), so imports inside functions count
too: a lazy import still ties the two modules together.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scratchnet"


def module_names():
    """{dotted name: path} of every module of the package."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(name, path, modules):
    """The package's modules that module ``name`` imports (``from . import x`` counts as x, not the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def reachable(start, graph):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles():
    """The groups of modules that import each other, directly or not."""
    modules = module_names()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    reach = {name: reachable(name, graph) for name in graph}
    groups = []
    for name in sorted(graph):
        if name in reach[name] and not any(name in g for g in groups):
            groups.append({other for other in reach[name] if name in reach[other]})
    return groups


def test_the_reader_finds_the_package_and_its_imports():
    modules = module_names()
    assert {"scratchnet", "scratchnet.training", "scratchnet.backends.numba.engine"} <= set(modules)
    training = imported("scratchnet.training", modules["scratchnet.training"], modules)
    assert {"scratchnet.backends", "scratchnet.network", "scratchnet._config"} <= training


def test_no_import_cycles():
    assert cycles() == []


def test_the_library_does_not_import_its_command_line():
    """Only the command line itself, and ``python -m scratchnet`` (its entry point), import scratchnet.cli."""
    modules = module_names()
    importers = {
        name
        for name, path in modules.items()
        if any(m == "scratchnet.cli" or m.startswith("scratchnet.cli.") for m in imported(name, path, modules))
    }
    assert {n for n in importers if not n.startswith("scratchnet.cli")} == {"scratchnet.__main__"}
