"""The bench's view of a gateway run with --workers: a process and the children it started,
from whichever thread (trio starts processes from worker threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from bench import procs


def test_children_started_from_another_thread_count_in_the_tree():
    started: list[subprocess.Popen] = []
    spawned, checked = threading.Event(), threading.Event()

    def spawn() -> None:  # (the child is listed under this thread while it lives)
        started.append(subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                        stdin=subprocess.PIPE))
        spawned.set()
        checked.wait(10)

    thread = threading.Thread(target=spawn)
    thread.start()
    spawned.wait(10)
    [child] = started
    try:
        assert child.pid in procs.children(os.getpid())
        assert procs.tree_rss(os.getpid()) > procs.process_rss(os.getpid())
        assert procs.tree_cpu(os.getpid()) >= procs.process_cpu(os.getpid())
    finally:
        checked.set()
        thread.join()
        child.stdin.close()
        child.wait(10)
    assert child.pid not in procs.children(os.getpid())
