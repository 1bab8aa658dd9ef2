"""What passes between the supervisor and a worker through the worker's stdin and stdout:
the configuration (pickled, after its length), then ``ready`` back once the worker serves.
Kept apart so that the supervisor does not import the gateway it never runs."""

from __future__ import annotations

import os
import pickle
import struct

from ..config import Config

READY = b"ready\n"
_LENGTH = struct.Struct(">I")


def handoff(config: Config) -> bytes:
    """What the supervisor writes to a worker's stdin."""
    blob = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(blob)) + blob


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the supervisor closed the pipe before the configuration was read")
        data += chunk
    return data


def read_handoff(fd: int) -> Config:
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    config = pickle.loads(_read_exactly(fd, size))  # (from our own supervisor, through a private pipe)
    if not isinstance(config, Config):
        raise TypeError("the supervisor sent no configuration")
    return config
