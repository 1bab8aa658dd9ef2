"""The house's structure, derived from its folders: no import circle and no room that
depends on a room depending on it.

A *room* is a first-level folder of proxy/ or storage/ (``proxy.relay``, ``storage.sqlite``)
or a module at the top of one (``proxy.money``, ``storage.base``). Imports between rooms
must form no cycle (their topological order is the layering: nothing imports from a room
above it), and imports between modules must form none either, ``TYPE_CHECKING`` imports
included. The pure rooms import no I/O library. Nothing here is a hand-kept list of
modules: add a folder and it is a room.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("proxy", "storage")
PURE = ("proxy.protocol", "proxy.adaptors")
# (h11 is allowed: it is sans-I/O, a state machine fed bytes, as protocol/ is.)
IO_LIBRARIES = {"trio", "quart", "quart_trio", "httpx", "hypercorn", "sqlite_utils", "sqlite3", "socket",
                "ssl", "asyncio", "os", "psycopg", "psycopg_pool", "redis", "stripe"}
MAX_TOP_MODULES = 14
MAX_LINES = 500


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for folder in TOPS for p in (ROOT / folder).rglob("*.py")}


def room(module: str) -> str:
    """The room a module lives in: its first-level folder, or itself at the top."""
    return ".".join(module.split(".")[:2])


def _imports(module: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of the house it imports, top-level names of everything it imports)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    libraries: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
                libraries.add(target.split(".")[0])
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
            libraries.update(alias.name.split(".")[0] for alias in node.names)
        else:
            continue
        hits = [c for c in candidates if c in known]
        # "from x import y" names module x.y when it exists, else x itself
        found.update(hits[:-1] if len(hits) > 1 and hits[-1] == target else hits)
    found.discard(module)
    return found, libraries


def _bare_package(path: Path) -> bool:
    """An ``__init__.py`` that imports nothing (importing it is importing a folder)."""
    return path.name == "__init__.py" and not any(
        isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(ast.parse(path.read_text())))


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    known = {m for m, p in modules.items() if not _bare_package(p)}
    graph: dict[str, set[str]] = {}
    libraries: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module], libraries[module] = _imports(module, path, known)
    return graph, libraries


def _order(graph: dict[str, set[str]], what: str) -> list[tuple[str, ...]]:
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise AssertionError(f"an import circle between {what}: {' -> '.join(exc.args[1])}") from None
    levels = []
    while sorter.is_active():
        ready = sorter.get_ready()
        levels.append(tuple(sorted(ready)))
        sorter.done(*ready)
    return levels


def layers() -> list[tuple[str, ...]]:
    """The rooms in the order they may import each other, lowest first (also for the docs)."""
    graph, _ = _graph()
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    return _order(rooms, "rooms")


def test_no_import_circle_between_modules():
    graph, _ = _graph()
    _order(graph, "modules")


def test_no_import_circle_between_rooms():
    """A room importing a room that imports it back is an upward import, whichever is 'above'."""
    assert len(layers()) > 3


def test_the_layer_check_catches_a_circle():
    graph = {"proxy.a": {"proxy.b"}, "proxy.b": {"proxy.c"}, "proxy.c": {"proxy.a"}}
    try:
        _order(graph, "modules")
    except AssertionError as exc:
        assert "proxy.a" in str(exc)
    else:
        raise AssertionError("a circle went unnoticed")


def test_a_type_checking_import_counts(tmp_path):
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    path = tmp_path / "a.py"
    path.write_text(source)
    found, _ = _imports("proxy.x.a", path, {"proxy.x.b"})
    assert found == {"proxy.x.b"}


def test_the_pure_rooms_import_no_io_library():
    _, libraries = _graph()
    for module, names in libraries.items():
        if room(module) in PURE:
            assert not (names & IO_LIBRARIES), f"{module} imports {sorted(names & IO_LIBRARIES)}"


def test_the_top_of_proxy_stays_small_and_modules_stay_short():
    top = sorted(p.name for p in (ROOT / "proxy").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules at the top of proxy/: {top}"
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
