"""The package's module graph: no import cycles, not even under
``TYPE_CHECKING``, and the layers stay in order (the transport never imports
the room; the state mirror never imports the room; the session knows no
participant, state or event)."""

from __future__ import annotations

import ast
from pathlib import Path

import lkrtc_trio

PKG = Path(lkrtc_trio.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every lkrtc_trio module ``path`` imports, wherever the import stands."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("lkrtc_trio."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lkrtc_trio."):
                    out.add(alias.name.split(".")[1])
    return out


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PKG.glob("_*.py") if p.stem != "__init__"}
    return {name: imports_of(path) & set(modules) - {name} for name, path in modules.items()}


def test_no_import_cycles() -> None:
    g = graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(g[node]):
            visit(dep, [*path, node])
        done.add(node)

    for node in sorted(g):
        visit(node, [])


def test_layers() -> None:
    g = graph()

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for dep in g[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    transport = {"_native", "_bridge", "_dispatch", "_runtime"}
    for module in transport:
        assert not reaches(module) & {"_room", "_session", "_state", "_participant"}, module
    assert "_room" not in reaches("_state")
    assert not reaches("_session") & {"_room", "_state", "_participant", "_events"}
    assert not reaches("_participant") & {"_room", "_state", "_events"}
