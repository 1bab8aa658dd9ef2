"""proxy/protocol/ is pure: it must not import trio, quart, httpx or hypercorn."""

import ast
from pathlib import Path

FORBIDDEN = {"trio", "quart", "quart_trio", "httpx", "hypercorn", "sqlite_utils", "sqlite3", "socket"}


def test_protocol_package_imports_no_io_libraries():
    root = Path(__file__).resolve().parent.parent / "proxy" / "protocol"
    files = list(root.glob("*.py"))
    assert len(files) >= 4
    assert {"sse.py", "stream_filter.py", "translate.py", "thinking.py"} <= {p.name for p in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
