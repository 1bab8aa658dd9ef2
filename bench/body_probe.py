"""python -m bench.body_probe: peak RSS of a real `cheaplm serve` (run from the current
directory's tree) under 16 concurrent 31 MB bodies sent with a forged key, and how long 200
connections trickling a body (a forged key, then a valid one) stay open. Loopback only; every
loop is bounded."""

import os
import subprocess
import sys
import time

import trio

PY = sys.executable
def rss(pid: int) -> tuple[int, int]:
    """(current, peak) resident MiB of a process."""
    fields = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024

async def big_forged(port, n=16, size=31_000_000):
    async def one():
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: sk-cl-FORGEDFORGEDFORGEDFORGEDFORGEDFORGEDFORG\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < size:
                await s.send_all(b" " * 65536); sent += 65536
        except trio.BrokenResourceError:
            pass
        return sent
    async with trio.open_nursery() as nursery:
        for _ in range(n): nursery.start_soon(one)

async def trickle(port, key, n=200, seconds=20):
    open_ = [0]
    async def one():
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n".encode())
        open_[0] += 1
        try:
            with trio.move_on_after(seconds):
                while True:
                    await s.send_all(b" ")
                    with trio.move_on_after(1.5):
                        if not await s.receive_some(65536):
                            break
                        # got an answer: read until close
                        while await s.receive_some(65536): pass
                        break
        except (trio.BrokenResourceError, OSError):
            pass
        open_[0] -= 1
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(n): nursery.start_soon(one)
        for t in (2, 5, 12, 19):
            await trio.sleep_until(trio.current_time() + max(0, t - (time.monotonic() - start)))
            print(f"  after {t:>2} s: {open_[0]} of {n} trickling connections still open")

def main() -> None:
    port = 18700
    db = "/tmp/probe-body.db"
    for f in (db, db + "-wal", db + "-shm"):
        if os.path.exists(f): os.remove(f)
    subprocess.run([PY, "-m", "proxy", "user", "create", "p", "--db", db], check=True, capture_output=True)
    subprocess.run([PY, "-m", "proxy", "topup", "p", "--credit", "5", "--db", db], check=True, capture_output=True)
    key = subprocess.run([PY, "-m", "proxy", "key", "create", "p", "--db", db], check=True, capture_output=True, text=True).stdout.strip()
    gw = subprocess.Popen([PY, "-m", "proxy", "serve", "--port", str(port), "--db", db], stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.5)
        print("idle RSS / peak MiB:", rss(gw.pid))
        trio.run(big_forged, port)
        print("after 16 x 31 MB forged-key bodies, RSS / peak MiB:", rss(gw.pid))
        print("200 trickling connections, forged key:")
        trio.run(trickle, port, "sk-cl-FORGEDFORGEDFORGEDFORGEDFORGEDFORGEDFORG")
        print("200 trickling connections, valid key (body_grace 10 s, body_min_rate 2048 B/s):")
        trio.run(trickle, port, key)
        print("RSS / peak MiB at the end:", rss(gw.pid))
    finally:
        gw.terminate(); gw.wait()
if __name__ == "__main__":
    main()
