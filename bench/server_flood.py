"""``/health`` latency while clients flood ``/v1/embeddings`` with model names a server must refuse.

Issue 13: names such as ``org/name``, ``/etc`` or ``~x`` used to trigger hub lookups and filesystem checks on
the event loop (1,000 took 188 s, and ``/health`` answered at p50 5.1 s meanwhile). This starts a real
``omniembed serve`` on a free loopback port, sends N such requests at once from a second process (so the
probe does not share the flood's event loop), and probes ``/health`` every 20 ms until the flood is answered.

    .venv/bin/python bench/server_flood.py            # 200, then 1,000 concurrent bad names
    .venv/bin/python bench/server_flood.py 500

Prints one line per flood: the status codes seen, the time for all answers, and /health p50 / max.
"""

from __future__ import annotations

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
url, n = sys.argv[1], int(sys.argv[2])
names = ["org/name", "/etc", "~x", "../x", "/nonexistent"]
async def main():
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as c:
        t0 = time.perf_counter()
        rs = await asyncio.gather(*(c.post(url + "/v1/embeddings", json={"model": names[i % 5], "input": "x"})
                                    for i in range(n)))
        print(sorted({r.status_code for r in rs}), round(time.perf_counter() - t0, 2))
asyncio.run(main())
"""


def main(sizes: list[int]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="omniembed-flood-"))
    server = Server(tmp / "data", tmp / "cache", OMNIEMBED_PRECISION="fp32").start()
    try:
        for n in sizes:
            flood = subprocess.Popen([sys.executable, "-c", FLOOD, server.url, str(n)], stdout=subprocess.PIPE,
                                     text=True)
            health: list[float] = []
            with httpx.Client(timeout=60) as client:
                while flood.poll() is None:
                    started = time.perf_counter()
                    assert client.get(server.url + "/health").status_code == 200
                    health.append(time.perf_counter() - started)
                    time.sleep(0.02)
            assert flood.stdout is not None
            codes, seconds = flood.stdout.read().strip().rsplit(" ", 1)
            print(f"{n} bad names: statuses {codes}, all answered in {seconds} s; /health during: "
                  f"n={len(health)}, p50 {statistics.median(health) * 1000:.0f} ms, max {max(health) * 1000:.0f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200, 1000])
