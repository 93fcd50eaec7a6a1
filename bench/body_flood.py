"""``/health`` latency while clients send large JSON bodies that the server must refuse (issue 25, defect 1).

A body of 32 million integers (62 MiB, under the 64 MiB body limit) used to be parsed and validated on the
event loop before the 2,048-item limit was checked: nothing was answered, ``/health`` included, for 11-55 s,
and four such bodies queued one after another. This starts a real ``omniembed serve`` on a free loopback
port, sends four such bodies at once from a second process (so the probe does not share its event loop),
and probes ``/health`` every 20 ms until all four are answered.

    .venv/bin/python bench/body_flood.py                 # 4 bodies of 32M integers, then 4 lists of lists
    .venv/bin/python bench/body_flood.py --kinds ints    # only the integers
    .venv/bin/python bench/body_flood.py --server http://127.0.0.1:8000   # a server already running

Prints one line per flood: the statuses, the time to answer each body, and /health p50 / max.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from service_util import Server  # the tests' real-server helper

FLOOD = r"""
import asyncio, sys, time, httpx
url, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "ints":    # 62 MiB: 32 million integers as one input
    path, body = "/v1/embeddings", b'{"model": "minilm", "input": [' + b"0," * 32_000_000 + b'0]}'
elif kind == "lists": # 60 MiB: 3,900 token-id lists of 8,000
    path, row = "/v1/embeddings", b"[" + b"0," * 7999 + b"0]"
    body = b'{"model": "minilm", "input": [' + b",".join([row] * 3900) + b"]}"
else:                 # 57 MiB: a batched job whose config list holds 20 million objects
    path = "/api/tasks/text-embedding/batched/minilm/jobs"
    body = b'{"text": ["a"], "config": [' + b"{}," * 20_000_000 + b"{}]}"
async def one(c):
    t0 = time.perf_counter()
    r = await c.post(url + path, content=body, headers={"content-type": "application/json"})
    return r.status_code, time.perf_counter() - t0
async def main():
    async with httpx.AsyncClient(timeout=600) as c:
        print(f"{len(body) / 2**20:.0f}", flush=True)  # the probe starts now
        rs = await asyncio.gather(*(one(c) for _ in range(n)))
        print(" ".join(f"{s}:{t:.2f}" for s, t in rs))
asyncio.run(main())
"""


def flood(url: str, kind: str, n: int) -> str:
    proc = subprocess.Popen([sys.executable, "-c", FLOOD, url, kind, str(n)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    mib = proc.stdout.readline().strip()
    health: list[float] = []
    with httpx.Client(timeout=600) as client:
        while proc.poll() is None:
            started = time.perf_counter()
            assert client.get(url + "/health").status_code == 200
            health.append(time.perf_counter() - started)
            time.sleep(0.02)
    answers = [a.split(":") for a in proc.stdout.read().split()]
    statuses = sorted({s for s, _ in answers})
    times = ", ".join(f"{float(t):.2f}" for _, t in answers)
    return (f"{n} x {mib} MiB {kind}: statuses {statuses}, answered after {times} s; /health during: "
            f"n={len(health)}, p50 {statistics.median(health) * 1000:.0f} ms, max {max(health) * 1000:.0f} ms")


def idle(url: str, seconds: float = 3.0) -> str:
    """/health latency with no flood: the baseline of this machine (its load, the probe's own overhead)."""
    health: list[float] = []
    with httpx.Client(timeout=60) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            assert client.get(url + "/health").status_code == 200
            health.append(time.perf_counter() - started)
            time.sleep(0.02)
    return (f"no flood: /health n={len(health)}, p50 {statistics.median(health) * 1000:.0f} ms, "
            f"max {max(health) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="ints,lists,config", help="ints, lists, config (comma-separated)")
    parser.add_argument("-n", type=int, default=4, help="bodies sent at once")
    parser.add_argument("--server", help="the URL of a running server (default: start one)")
    args = parser.parse_args()
    server = None
    url = args.server
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="omniembed-body-flood-"))
        server = Server(tmp / "data", tmp / "cache", OMNIEMBED_PRECISION="fp32").start()
        url = server.url
    try:
        print(idle(url), flush=True)
        for kind in args.kinds.split(","):
            print(flood(url, kind, args.n), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
