"""The import layers of proxy/ and storage/: nothing imports upward, and the pure
packages (protocol/, adaptors/) import no I/O library.

Layers, lowest first. A module may import its own layer and the ones below it.
``TYPE_CHECKING`` imports count too: a type that lives above is a design smell.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (layer, what it holds): the first pattern a module name matches (exact, or a package prefix ending in ".").
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("pure leaves", ("storage.base", "storage.errors", "storage.records", "proxy.protocol.", "proxy.upstream.health", "proxy.http.responses",
                     "proxy.ids", "proxy.outcome")),
    ("core", ("proxy.money", "proxy.catalog", "proxy.errors", "proxy.billing")),
    ("pure request rules, configuration, keys, storage backends",
     ("proxy.adaptors.", "proxy.config", "proxy.auth", "storage.", "storage")),
    ("edges: sockets, upstream, ASGI plumbing, metrics", ("proxy.netio", "proxy.direct_body", "proxy.upstream.",
                                                           "proxy.http.exchange", "proxy.metrics", "proxy.logs",
                                                           "proxy.reasoning_key")),
    ("a request's state, limits and money", ("proxy.gateway", "proxy.limits", "proxy.metering", "proxy.instance",
                                             "proxy.throttle")),
    ("the request flow", ("proxy.relay",)),
    ("the web side and the admin library", ("proxy.http.", "proxy.admin", "proxy.accounts", "proxy.payments")),
    ("entry points", ("proxy.serve", "proxy.cli", "proxy.__main__")),
]
PURE = ("proxy/protocol", "proxy/adaptors")
# (h11 is allowed: it is sans-I/O, a state machine fed bytes, as protocol/ is.)
IO_LIBRARIES = {"trio", "quart", "quart_trio", "httpx", "hypercorn", "sqlite_utils", "sqlite3", "socket",
                "ssl", "asyncio", "os", "psycopg", "redis"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for folder in ("proxy", "storage") for p in (ROOT / folder).rglob("*.py")}


def _layer(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".") and module.startswith(pattern)):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known)
    found.discard(module)
    return found


def _bare_package(path: Path) -> bool:
    """An ``__init__.py`` that imports nothing (importing it is importing a folder)."""
    return path.name == "__init__.py" and not any(
        isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(ast.parse(path.read_text())))


def test_every_module_has_a_layer_and_nothing_imports_upward():
    modules = _modules()
    assert len(modules) > 40
    upward = []
    for module, path in sorted(modules.items()):
        if _bare_package(path):
            continue
        for imported in _imports(module, path, set(modules)):
            if _bare_package(modules[imported]):
                continue
            if _layer(imported) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {imported} "
                              f"({LAYERS[_layer(imported)][0]})")
    assert upward == []


def test_protocol_and_adaptors_import_no_io_library():
    files = [p for folder in PURE for p in (ROOT / folder).glob("*.py")]
    assert {"sse.py", "stream_filter.py", "translate.py", "thinking.py", "base.py", "openai.py"} <= {
        p.name for p in files}
    impure = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            impure += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[0] in IO_LIBRARIES]
    assert impure == []
