"""Latency of small requests to one model while another model is busy (issue 25, defect 6).

Starts a real ``omniembed serve`` (fp32, ONNX Runtime; minilm loaded at start) and measures the latency of
small requests sent one after another:

- **idle**: minilm, one short text, nothing else running (the floor);
- **(a) cold**: minilm, one short text, while the first request to ``efficientnet-lite0`` prepares it
  cold (its ONNX graph is deleted from the cache first, so it is exported again);
- **(b) long**: efficientnet-lite0, one small image, while eight texts of 999,999 characters go to minilm
  in one request;
- **(c) both busy**: items per second of minilm (16 short texts a request) and efficientnet-lite0 (4 images
  a request), four clients each for ``--seconds``, and each alone for half that: what running two models at
  once costs on these cores (``sum_of_shares``: each model's rate together over its rate alone, summed; 1.0
  is what taking turns on one thread would give at best).

Run it on the code to compare (the server runs whatever ``omniembed`` the interpreter imports):

    .venv/bin/python bench/model_isolation.py [CACHE_DIR] [--cases abc]   # this checkout
    git worktree add /tmp/oe-before HEAD~3
    PYTHONPATH=/tmp/oe-before/src .venv/bin/python bench/model_isolation.py   # an older one

Prints one JSON line per case (latencies in ms: n, p50, p90, max; (c): items/s per model).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from image_data import photo, png_bytes  # the tests' generated images
from service_util import Server  # the tests' real-server helper

SECONDS = 15.0
IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes(photo("chelsea"))).decode()


def _stats(ms: list[float]) -> dict[str, Any]:
    ms = sorted(ms)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": round(statistics.median(ms)), "p90": round(ms[int(0.9 * (len(ms) - 1))]),
            "max": round(ms[-1])}


def _probe_while(url: str, body: dict[str, Any], busy: Callable[[], Any]) -> tuple[list[float], float, Any]:
    """Send ``body`` one request after another while ``busy()`` runs in a thread; latencies (ms), the busy
    call's own seconds and its result."""
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.perf_counter()
        out["result"] = busy()
        out["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=run)
    latencies: list[float] = []
    with httpx.Client(timeout=300) as client:
        thread.start()
        time.sleep(0.05)  # the busy request is on its way
        while thread.is_alive():
            started = time.perf_counter()
            r = client.post(url + "/v1/embeddings", json=body)
            assert r.status_code == 200, r.text
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
    thread.join()
    return latencies, out["seconds"], out["result"]


def _flood(url: str, bodies: dict[str, tuple[dict[str, Any], int]], seconds: float) -> dict[str, float]:
    """Four clients per model post their body for ``seconds``; items per second per model."""
    done = {name: 0 for name in bodies}
    stop = time.perf_counter() + seconds

    def client(name: str) -> None:
        body, items = bodies[name]
        with httpx.Client(timeout=300) as http:
            while time.perf_counter() < stop:
                r = http.post(url + "/v1/embeddings", json=body)
                assert r.status_code == 200, r.text
                done[name] += items

    threads = [threading.Thread(target=client, args=(name,)) for name in bodies for _ in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {name: round(n / elapsed, 1) for name, n in done.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", type=Path, help="cache dir (minilm's graph is kept; default: a new one)")
    parser.add_argument("--cases", default="abc", help="which of the cases (a), (b), (c) to run")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="(c): seconds both models are flooded")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="omniembed-isolation-"))
    cache = args.cache or tmp / "cache"
    for old in (cache / "onnx").glob("efficientnet*") if "a" in args.cases else ():  # (a): a cold model
        shutil.rmtree(old)
    server = Server(tmp / "data", cache, OMNIEMBED_SERVE_MODELS="minilm", OMNIEMBED_REQUEST_TIMEOUT_SEC="600",
                    OMNIEMBED_PRECISION="fp32").start(timeout=600)
    text = {"model": "minilm", "input": "a short text to embed"}
    image = {"model": "efficientnet-lite0", "modality": "image", "input": IMAGE}
    try:
        with httpx.Client(timeout=60) as client:
            idle = []
            for _ in range(40):
                started = time.perf_counter()
                assert client.post(server.url + "/v1/embeddings", json=text).status_code == 200
                idle.append((time.perf_counter() - started) * 1000)
        print(json.dumps({"case": "idle: minilm", **_stats(idle)}))

        def cold() -> int:
            return httpx.post(server.url + "/v1/embeddings", json=image, timeout=600).status_code

        if "a" in args.cases:
            ms, seconds, status = _probe_while(server.url, text, cold)
            print(json.dumps({"case": "(a) minilm while efficientnet-lite0 is prepared cold", **_stats(ms),
                              "cold_request_s": round(seconds, 1), "cold_status": status}))

        def long_texts() -> int:
            body = {"model": "minilm", "input": ["word " * 199_999 + "end!"] * 8}  # 999,999 characters each
            return httpx.post(server.url + "/v1/embeddings", json=body, timeout=600).status_code

        if "b" in args.cases:
            ms, seconds, status = _probe_while(server.url, image, long_texts)
            print(json.dumps({"case": "(b) efficientnet-lite0 while minilm embeds 8 texts of 999,999 chars",
                              **_stats(ms), "long_request_s": round(seconds, 1), "long_status": status}))

        if "c" in args.cases:
            bodies = {"minilm": ({"model": "minilm", "input": ["a short text to embed"] * 16}, 16),
                      "efficientnet-lite0": ({**image, "input": [IMAGE] * 4}, 4)}
            _flood(server.url, bodies, 3)  # warm: the image model's first batches, the arenas
            rates = _flood(server.url, bodies, args.seconds)
            alone = {name: _flood(server.url, {name: body}, args.seconds / 2)[name] for name, body in bodies.items()}
            share = sum(rates[name] / alone[name] for name in bodies)
            print(json.dumps({"case": "(c) items/s, both models busy at once", "together": rates, "alone": alone,
                              "sum_of_shares": round(share, 2)}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
