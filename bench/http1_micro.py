"""CPU per relayed event of protocol.http1 (h11) against the hand-written parsers it
replaced: ``python -m bench.http1_micro``.

The upstream transport reads one socket read at a time; on a paced SSE stream a read
carries one chunk of one event (~100-300 bytes). This times, on one core and with no
I/O, what the reader costs per read for the golden stream's events framed that way
(and four events per read, as a busy gateway sees), and what a response head costs.
The yardsticks are copies of the decoder and head parser that lived in
``proxy/upstream/transport.py`` before: kept here only to be measured against.

The rule it informs (issue 10): a hand-written chunk decoder stays only if h11 costs
more than 10% of the gateway's CPU per relayed event (~150 µs at 128 streams).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Iterable

from proxy.protocol.http1 import ResponseReader, chunk_frame

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "thinking_text_tool.sse"
HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
HEAD_JSON = (b"HTTP/1.1 200 OK\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\ncontent-type: application/json\r\n"
             b"content-length: 812\r\nconnection: keep-alive\r\nrequest-id: req_011CUZ1234567890abcdef\r\n"
             b"x-robots-tag: none\r\nanthropic-organization-id: 1234-5678\r\nvia: 1.1 google\r\n"
             b"cf-cache-status: DYNAMIC\r\nserver: cloudflare\r\n\r\n")


def h11_body(reads: Iterable[bytes]) -> None:
    reader = ResponseReader(b"POST")
    reader.feed(HEAD_CHUNKED)
    reader.read_head()
    for data in reads:
        reader.feed(data)
        reader.read_payload()


def hand_written_body(reads: Iterable[bytes]) -> None:
    """The reference: transport._Body._chunked's decoding, without its I/O."""
    buffer, payload_left, crlf_left = b"", 0, 0
    for data in reads:
        buffer += data
        out = []
        position, size = 0, len(buffer)
        while True:
            if payload_left:
                take = min(payload_left, size - position)
                if take:
                    out.append(buffer[position:position + take])
                    position += take
                    payload_left -= take
                if payload_left:
                    break
                crlf_left = 2
            if crlf_left:
                skip = min(crlf_left, size - position)
                position += skip
                crlf_left -= skip
                if crlf_left:
                    break
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            payload_left = int(buffer[position:line_end].split(b";", 1)[0].strip(), 16)
            if not payload_left:
                return  # the last chunk (no trailers here)
            position = line_end + 2
        if out:
            _ = out[0] if len(out) == 1 else b"".join(out)
        buffer = buffer[position:]


def h11_head() -> None:
    reader = ResponseReader(b"POST")
    reader.feed(HEAD_JSON)
    reader.read_head()


def hand_written_head() -> None:
    """The reference: transport._read_head's parsing, without its I/O."""
    end = HEAD_JSON.find(b"\r\n\r\n")
    lines = HEAD_JSON[:end].split(b"\r\n")
    int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip(), value.strip()
        name.lower()


def best_us(run: Callable[[], None], per: int, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in CPU µs per unit (per read or per head)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / per * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http1_micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=300, help="copies of the golden stream per run")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    events = [e + b"\n\n" for e in GOLDEN.read_bytes().split(b"\n\n") if e]
    framed = [chunk_frame(e) for e in events] * args.streams + [b"0\r\n\r\n"]
    size = sum(map(len, events)) / len(events)
    print(f"golden stream: {len(events)} events, {size:.0f} bytes per event on average")
    for per_read in (1, 4):
        reads = [b"".join(framed[i:i + per_read]) for i in range(0, len(framed), per_read)]
        h11_us = best_us(lambda: h11_body(reads), len(framed), args.repeat)
        hand_us = best_us(lambda: hand_written_body(reads), len(framed), args.repeat)
        print(f"chunked body, {per_read} event(s) per read: h11 {h11_us:.2f} µs/event, hand-written "
              f"{hand_us:.2f} µs/event, delta {h11_us - hand_us:+.2f} µs/event "
              f"({(h11_us - hand_us) / 150 * 100:.1f}% of 150 µs/event)")
    heads = 20000
    h11_us = best_us(lambda: [h11_head() for _ in range(heads)], heads, args.repeat)
    hand_us = best_us(lambda: [hand_written_head() for _ in range(heads)], heads, args.repeat)
    print(f"response head (11 headers): h11 {h11_us:.2f} µs, hand-written {hand_us:.2f} µs, "
          f"delta {h11_us - hand_us:+.2f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
