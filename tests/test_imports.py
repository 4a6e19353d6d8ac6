"""Imports run one way: no circle between the library's files, nor between its sub-packages.

Every import statement counts, also one inside a function (a lazy import hides a circle from Python, not from
the reader). The graph is read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "robustdistiller_upstream"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` below ``root`` (a package's ``__init__.py`` is the package)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same library it imports (absolute and relative imports, at any depth)."""
    modules = module_files(root)

    def known(name: str) -> str | None:  # the module itself, or the package that defines the imported name
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(t for name in names if (t := known(name)) and t != module)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of the graph (``[a, b, ..., a]``), or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same edges between sub-packages (``robustdistiller_upstream.train`` ...); top-level modules stand alone."""
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (LIBRARY / parts[-1]).is_dir() else module

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    return packages


def test_no_import_cycle_between_files():
    cycle = find_cycle(import_graph(LIBRARY))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_subpackages():
    cycle = find_cycle(package_graph(import_graph(LIBRARY)))
    assert not cycle, "sub-package cycle: " + " -> ".join(cycle)


def test_a_lazy_circle_is_found(tmp_path):
    """The check sees a circle closed by an import inside a function, and a relative one."""
    lib = tmp_path / "lib"
    (lib / "train").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "train" / "__init__.py").write_text("")
    (lib / "train" / "runner.py").write_text("def f():\n    from lib.train.recipe import Recipe\n")
    (lib / "train" / "recipe.py").write_text("from .runner import f\nclass Recipe: ...\n")
    assert find_cycle(import_graph(lib)) == ["lib.train.recipe", "lib.train.runner", "lib.train.recipe"]
    (lib / "train" / "runner.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(lib)) == []
