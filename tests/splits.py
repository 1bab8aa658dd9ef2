"""Chunk-split helpers for exhaustive stream tests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """Whole; every two-chunk split; byte by byte; and 200 seeded random multi-splits."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(1234)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(2, 40))))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
