"""What the supervisor decides, without I/O: when a dead worker is started again, how a
worker's end is told, how long a stop may take and the exit code. Pure."""

from __future__ import annotations

import signal
from dataclasses import dataclass

RESTART_FIRST = 0.5   # seconds before a worker that died is started again ...
RESTART_MAX = 30.0    # ... doubling with each death in a row, up to this
STABLE_AFTER = 60.0   # a worker that ran this long before it died starts a new streak
STOP_MARGIN = 5.0     # past shutdown_grace, for a worker to settle, unregister and exit, then it is killed


@dataclass(frozen=True)
class Restarts:
    """One worker slot's deaths in a row (each of a worker that ran less than STABLE_AFTER)."""

    streak: int = 0

    def after_death(self, ran_for: float) -> "Restarts":
        return Restarts(1 if ran_for >= STABLE_AFTER else self.streak + 1)

    @property
    def delay(self) -> float:
        """Seconds to wait before the slot's next worker starts."""
        if self.streak <= 0:
            return 0.0
        return min(RESTART_MAX, RESTART_FIRST * 2 ** min(self.streak - 1, 32))


def stop_deadline(grace: float) -> float:
    """Seconds after a stop began when the workers still running are killed."""
    return grace + STOP_MARGIN


def ending(returncode: int | None) -> str:
    """A worker's end in words: ``exited with code 1``, ``was killed by SIGKILL``."""
    if returncode is None:
        return "could not be started"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def exit_code(stop_signal: int | None, failed: bool) -> int:
    """The supervisor's: 1 when a worker could not start, 130 after Ctrl-C (as a single
    process exits), else 0 (SIGTERM: a clean stop)."""
    if failed:
        return 1
    return 130 if stop_signal == signal.SIGINT else 0
