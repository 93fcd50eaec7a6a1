"""HTTP server throughput and latency: ``omniembed serve`` under concurrent single-text clients.

What it measures:

* **Cold start**: wall time from launching ``python -m omniembed.cli serve`` (on a free 127.0.0.1 port,
  ``OMNIEMBED_SERVE_MODELS=--models``, offline hub) until ``GET /ready`` answers 200; once with an EMPTY cache
  (includes the one-off ONNX exports and bf16 compile) and once more with the cache filled by the first start.
* **Load**: against the second server, for each concurrency level C (default 1, 8, 64), C asyncio clients
  (one keep-alive connection each, pre-built HTTP/1.1 requests on uvloop streams: a light load generator,
  since it shares the machine) each send ONE text per ``POST /v1/embeddings`` (``model=minilm``,
  ``encoding_format=base64``, as the official OpenAI client asks) back to back until the level's request
  budget is spent (default 300 / 600 / 2000). Texts cycle through the text benchmark's mixed-length corpus
  (``bench/text_throughput.build_corpus``). Reported: requests/s (= texts/s), latency p50/p95/p99 measured
  by the client, and failed requests. Every level starts with an untimed warm-up and runs ``--repeat``
  rounds; the best round counts, as for the offline number.
* **Offline**: the library's ``Engine.embed_batch("minilm", corpus)`` in this process, after the server has
  stopped, with the same settings the server uses (default runtime, precision and batch size; same thread
  count: one per core), best of ``--repeat``; the server's texts/s at the highest level is shown as a
  percentage of it (issue 7 target: >= 70 % at 64 clients).
* **Memory**: the server process's peak RSS (``VmHWM`` in ``/proc/<pid>/status``) after the load; then
  ``--memory-rounds`` rounds (default 4) of ``--memory-requests`` (default 1,000) mixed requests, 16 at a
  time, with the server's RSS after each round: OpenAI texts (1-8 per request, truncate end/start, some
  with a bad item), FES text jobs whose config carries a distinct ``start_offset_sec`` each (a new batcher
  queue per value), and TwelveLabs audio clips at distinct ``audio_start_offset_sec`` (when an audio model
  is served; TwelveLabs texts otherwise). Growth between the last two rounds is the leak check (issue 13
  target: under 5 %).
* **Client CPU**: the share of a core the load generator used during each level (``time.process_time``).

The load generator runs on the same (2-core) machine as the server and takes CPU from it; the numbers are a
lower bound on what a separate client machine would see.

Run from the project root::

    .venv/bin/python bench/server_throughput.py                 # levels 1,8,64; 300/600/2000 requests
    .venv/bin/python bench/server_throughput.py --quick         # levels 1,8,64; 20/40/128 requests
    .venv/bin/python bench/server_throughput.py --json out.json # also write the numbers as JSON

The Markdown report goes to stdout; progress messages go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

MODEL = "minilm"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``omniembed serve`` subprocess on a free loopback port; ``start()`` returns seconds until /ready."""

    def __init__(self, work: Path, cache: Path, models: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "OMNIEMBED_DATA_DIR": str(work / "data"),
            "OMNIEMBED_CACHE_DIR": str(cache),
            "OMNIEMBED_HUB_OFFLINE": "1",
            "OMNIEMBED_SERVE_MODELS": models,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> float:
        started = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omniembed.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "warning"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def status_mb(self, key: str) -> float:
        """A memory field of /proc/<pid>/status (``VmHWM`` = peak RSS, ``VmRSS`` = current) in MiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def request_bytes(host: str, port: int, text: str) -> bytes:
    """One keep-alive ``POST /v1/embeddings`` as the OpenAI client sends it (one text, base64)."""
    body = json.dumps({"model": MODEL, "input": text, "encoding_format": "base64"}).encode()
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """Send one prepared request on a keep-alive connection; True when the answer is 200 with one embedding."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return status == 200 and len(json.loads(body)["data"]) == 1


async def load_level(url: str, texts: Sequence[str], clients: int, requests: int) -> dict[str, Any]:
    """``clients`` concurrent single-text clients sending ``requests`` requests in total (after a warm-up).

    The load generator shares the machine with the server, so it is kept light: each client owns one
    keep-alive connection and sends pre-built HTTP/1.1 requests on asyncio streams (uvloop when installed),
    reading each answer's status and JSON. (An httpx client took ~0.5 of a core at 64 clients; this takes
    a fraction of that, which the server gets back.)"""
    host, port = url.removeprefix("http://").split(":")
    prepared = [request_bytes(host, int(port), t) for t in texts]
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(clients)]

    async def one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], i: int) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            ok = await asyncio.wait_for(post(*conn, prepared[i % len(prepared)]), 120)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            ok = False
        return time.perf_counter() - started, ok

    await asyncio.gather(*(one(c, i) for i, c in enumerate(connections)))  # warm-up: every connection once
    latencies: list[float] = []
    failures = 0
    next_index = 0

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        nonlocal next_index, failures
        while next_index < requests:
            i = next_index
            next_index += 1
            elapsed, ok = await one(conn, i)
            if ok:
                latencies.append(elapsed)
            else:
                failures += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(c) for c in connections))
    wall, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for _, writer in connections:
        writer.close()
    latencies.sort()
    return {
        "clients": clients,
        "requests": requests,
        "failures": failures,
        "seconds": wall,
        "client_cpu_share": client_cpu / wall,  # CPU the load generator took from the shared cores (1.0 = one core)
        "requests_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def run_level(url: str, texts: Sequence[str], clients: int, requests: int) -> dict[str, Any]:
    """``load_level`` on uvloop when it is installed (it comes with uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load_level(url, texts, clients, requests))
    return uvloop.run(load_level(url, texts, clients, requests))


def offline_rate(texts: list[str], cache: Path, repeat: int) -> float:
    """Texts/s of ``embed_batch`` with the server's default settings (same cache, threads = cores)."""
    import omniembed

    engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, hub_offline=True))
    engine.load(MODEL)
    engine.embed_batch(MODEL, texts[:64])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        engine.embed_batch(MODEL, texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def _wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


async def mixed_round(url: str, texts: Sequence[str], requests: int, audio: bool, seed: int) -> dict[str, int]:
    """``requests`` mixed requests, 16 in flight; returns counts by HTTP status."""
    import random

    rng = random.Random(seed)
    wav = _wav()
    statuses: dict[str, int] = {}
    todo = list(range(requests))

    async def one(client: httpx.AsyncClient, k: int) -> None:
        kind = rng.random()
        if kind < 0.5:
            r = await client.post(f"{url}/v1/embeddings", json={
                "model": MODEL, "input": rng.sample(list(texts), rng.randint(1, 8)),
                "truncate": rng.choice(["end", "start"])})
        elif kind < 0.6:
            poison = json.dumps({"model": MODEL, "input": ["fine", "\ud800"]})  # ASCII JSON: a lone surrogate
            r = await client.post(f"{url}/v1/embeddings", content=poison, headers={"content-type": "application/json"})
        elif kind < 0.8:
            job = {"text": rng.choice(texts), "config": {"start_offset_sec": seed * requests + k}}
            r = await client.post(f"{url}/api/tasks/text-embedding/{MODEL}/jobs", json=job)
        elif audio:
            r = await client.post(f"{url}/v1.3/embed", data={"model_name": "sfx-cnn",
                                  "audio_start_offset_sec": str(round(rng.random() * 0.5, 4))},
                                  files={"audio_file": ("clip.wav", wav, "audio/wav")})
        else:
            r = await client.post(f"{url}/v1.3/embed", data={"model_name": MODEL, "text": rng.choice(texts)})
        statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

    async def worker(client: httpx.AsyncClient) -> None:
        while todo:
            await one(client, todo.pop())

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return statuses


def memory_rounds(
    server: Server, texts: Sequence[str], rounds: int, requests: int, audio: bool
) -> list[dict[str, Any]]:
    out = []
    for k in range(rounds):
        started = time.perf_counter()
        statuses = asyncio.run(mixed_round(server.url, texts, requests, audio, seed=k))
        time.sleep(1.0)  # let running jobs finish
        rss = server.status_mb("VmRSS")
        out.append({"round": k + 1, "rss_mb": rss, "seconds": time.perf_counter() - started, "statuses": statuses})
        log(f"  memory round {k + 1}: RSS {rss:.0f} MiB, {statuses}, {out[-1]['seconds']:.1f} s")
    return out


def corpus(n: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from text_throughput import build_corpus

    return build_corpus(n)


def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = corpus(args.n)
    work = Path(tempfile.mkdtemp(prefix="omniembed-bench-server-"))
    cache = work / "cache"
    result: dict[str, Any] = {"models": args.models, "corpus_n": len(texts), "threads": len(os.sched_getaffinity(0))}
    try:
        log(f"cold start, empty cache (models: {args.models})")
        first = Server(work, cache, args.models)
        try:
            result["cold_start_s"] = first.start()
        except RuntimeError as exc:  # e.g. an audio model's package missing: still measure the text server
            if args.models == MODEL:
                raise
            log(f"  start with {args.models} failed ({str(exc)[-300:]}); measuring with {MODEL} only")
            result["models_note"] = f"`omniembed serve` with {args.models} did not start; measured with {MODEL} only"
            result["models"] = MODEL
            first.stop()
            first = Server(work, cache, MODEL)
            result["cold_start_s"] = first.start()
        finally:
            first.stop()
        log(f"  {result['cold_start_s']:.1f} s; start again with the cache filled")
        server = Server(work, cache, result["models"])
        try:
            result["warm_start_s"] = server.start()
            log(f"  {result['warm_start_s']:.1f} s")
            result["rss_after_start_mb"] = server.status_mb("VmRSS")
            levels = []
            for clients, requests in zip(args.clients, args.requests, strict=True):
                rounds = []
                for _ in range(args.repeat):  # best of --repeat rounds, as the offline number
                    rounds.append(run_level(server.url, texts, clients, requests))
                    log(f"  {clients} clients: {rounds[-1]['requests_per_s']:.1f} req/s, "
                        f"p50 {rounds[-1]['p50_ms']:.0f} ms, p99 {rounds[-1]['p99_ms']:.0f} ms, "
                        f"{rounds[-1]['failures']} failed")
                level = max(rounds, key=lambda r: r["requests_per_s"])
                level["rounds_requests_per_s"] = [r["requests_per_s"] for r in rounds]
                level["failures"] = sum(r["failures"] for r in rounds)
                levels.append(level)
            result["levels"] = levels
            result["server_peak_rss_mb"] = server.status_mb("VmHWM")
            log(f"memory: {args.memory_rounds} rounds of {args.memory_requests} mixed requests")
            audio = "sfx-cnn" in result["models"].split(",")
            result["memory_rounds"] = memory_rounds(server, texts, args.memory_rounds, args.memory_requests, audio)
        finally:
            server.stop()
        log("offline embed_batch on the same texts")
        result["offline_texts_per_s"] = offline_rate(texts, cache, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    top = result["levels"][-1]
    result["ratio_top_level"] = top["requests_per_s"] / result["offline_texts_per_s"]
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    offline = result["offline_texts_per_s"]
    lines = [
        "## Server throughput and latency: `omniembed serve`, single-text OpenAI requests",
        "",
        f"Command: `{command}`",
        "",
        *([f"**Note:** {result['models_note']}.", ""] if "models_note" in result else []),
        f"Models loaded at start: {result['models']}; {result['threads']} threads (one per core); texts cycle "
        f"through the {result['corpus_n']}-text mixed-length corpus of the text benchmark; client and server share "
        "the machine. Latency is measured by the client (request sent to answer parsed).",
        "",
        f"Cold start until /ready: {result['cold_start_s']:.1f} s with an empty cache (incl. ONNX exports and the "
        f"bf16 compile), {result['warm_start_s']:.1f} s with the cache filled. Server RSS after start "
        f"{result['rss_after_start_mb']:.0f} MiB, peak RSS (VmHWM) after the load "
        f"{result['server_peak_rss_mb']:.0f} MiB.",
        "",
        "Each level runs as many rounds as the offline measurement (best round shown, as offline; every "
        "round's requests/s in the last column; failures counted over all rounds).",
        "",
        "| concurrent clients | requests | failed | requests/s | p50 ms | p95 ms | p99 ms | % of offline batch "
        "| client CPU (cores) | every round req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lv in result["levels"]:
        every = ", ".join(f"{r:.1f}" for r in lv.get("rounds_requests_per_s", [lv["requests_per_s"]]))
        lines.append(
            f"| {lv['clients']} | {lv['requests']} | {lv['failures']} | {lv['requests_per_s']:.1f} "
            f"| {lv['p50_ms']:.1f} | {lv['p95_ms']:.1f} | {lv['p99_ms']:.1f} "
            f"| {100 * lv['requests_per_s'] / offline:.0f}% | {lv['client_cpu_share']:.2f} | {every} |"
        )
    top = result["levels"][-1]
    lines += [
        "",
        "Client CPU: the share of a core the load generator itself used while the level ran (it competes with the "
        "server for the same cores).",
        "",
        f"Offline `embed_batch` (same texts, default settings): {offline:.1f} texts/s. "
        f"Server at {top['clients']} clients = {100 * result['ratio_top_level']:.0f}% of offline batch throughput "
        "(issue 7 target: >= 70% at 64 clients).",
    ]
    rounds = result.get("memory_rounds") or []
    if rounds:
        lines += [
            "",
            f"Memory under mixed load ({len(rounds)} rounds; OpenAI texts with a bad item now and then, FES jobs "
            "with a distinct option value each, TwelveLabs audio at distinct offsets or texts): server RSS after "
            "each round, MiB.",
            "",
            "| round | RSS MiB | seconds | answers by status |",
            "|---:|---:|---:|---|",
            *(f"| {r['round']} | {r['rss_mb']:.0f} | {r['seconds']:.1f} | "
              + ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items())) + " |" for r in rounds),
        ]
        if len(rounds) >= 2:
            growth = 100 * (rounds[-1]["rss_mb"] / rounds[-2]["rss_mb"] - 1)
            lines += ["", f"Growth between the last two rounds: {growth:+.1f}% (issue 13 target: under 5%)."]
    return "\n".join(lines)


def int_list(value: str) -> list[int]:
    try:
        numbers = [int(x) for x in value.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from exc
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return numbers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Requests/s and latency of `omniembed serve` vs offline batches.")
    parser.add_argument("--clients", type=int_list, default=[1, 8, 64], help="concurrency levels (default 1,8,64)")
    parser.add_argument("--requests", type=int_list, default=None,
                        help="requests per level (default 300,600,2000; 20,40,128 with --quick)")
    parser.add_argument("--n", type=int, default=512, help="corpus size in texts (default 512)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds per load level and offline timed runs, best counts (default 3; 1 quick)")
    parser.add_argument("--models", default=None,
                        help="OMNIEMBED_SERVE_MODELS for the server (default: `make run`'s "
                             "minilm,efficientnet-lite0,sfx-cnn,speaker-ge2e; minilm with --quick)")
    parser.add_argument("--memory-rounds", type=int, default=4, help="rounds of mixed load for RSS (default 4)")
    parser.add_argument("--memory-requests", type=int, default=None,
                        help="requests per memory round (default 1000; 100 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: few requests, minilm only, 128 texts")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = [20, 40, 128] if args.quick else [300, 600, 2000]
    if len(args.requests) != len(args.clients):
        parser.error("--requests needs one number per --clients level")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.memory_requests is None:
        args.memory_requests = 100 if args.quick else 1000
    if args.models is None:
        args.models = "minilm" if args.quick else "minilm,efficientnet-lite0,sfx-cnn,speaker-ge2e"
    if args.quick and args.n == 512:
        args.n = 128
    if MODEL not in args.models.split(","):
        parser.error(f"--models must include {MODEL}")
    result = run(args)
    print(markdown(result, shlex.join(sys.orig_argv)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
