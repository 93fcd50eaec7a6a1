"""Memory over a long run: ``omniembed serve`` under ``--rounds`` (default 20) rounds of ``--requests``
(default 800) mixed requests, 16 in flight, the server's RSS and what could hold memory after each round.

The mix is ``bench/server_throughput.py``'s memory round: OpenAI texts (1-8 per request, truncate end/start,
some with a bad item), FES text jobs with a distinct ``start_offset_sec`` each (a new batcher queue per
value), and TwelveLabs audio clips at distinct offsets when an audio model is served. After each round
(and a pause of ``--settle`` seconds for running jobs to finish) it records the server's RSS (``VmRSS``),
peak RSS (``VmHWM``), thread count, open file descriptors, and from ``/metrics`` the batcher's queue-depth
series (one per model) and the job counts. Reported: the per-round table, and the growth over the last ten
rounds (the leak check: flat means the memory is a plateau, not a leak).

``--env KEY=VALUE`` (repeatable) sets server environment variables, to test one explanation at a time, e.g.
``--env OMNIEMBED_RUNTIME=torch`` (no ONNX Runtime arena) or ``--env MALLOC_ARENA_MAX=2`` (glibc arenas).

    .venv/bin/python bench/soak.py                       # 20 x 800, `make run`'s four models
    .venv/bin/python bench/soak.py --rounds 6 --requests 200 --models minilm
    .venv/bin/python bench/soak.py --env MALLOC_ARENA_MAX=2 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import omniembed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_class import cpu_class_line
from server_throughput import Server, corpus, log, mixed_round


def _probe(server: Server) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    queues = sum(1 for line in metrics.splitlines() if line.startswith("omniembed_queue_depth{"))
    return {"rss_mb": server.status_mb("VmRSS"), "hwm_mb": server.status_mb("VmHWM"), "threads": threads,
            "fds": fds, "queue_series": queues}


def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = corpus(args.n)
    work = Path(tempfile.mkdtemp(prefix="omniembed-soak-"))
    cache = args.cache if args.cache is not None else omniembed.Settings().cache_dir  # exports made once, kept
    server = Server(work, cache, args.models)
    for pair in args.env:
        key, _, value = pair.partition("=")
        server.env[key] = value
    audio = any(m in args.models.split(",") for m in ("sfx-cnn", "speaker-ge2e"))
    log(f"starting the server ({args.models}; env {args.env or 'default'})")
    result: dict[str, Any] = {"models": args.models, "env": args.env, "rounds": [], "cpu": cpu_class_line(),
                              "python": platform.python_version()}
    result["start_s"] = server.start(timeout=900)
    try:
        result["after_start"] = _probe(server)
        log(f"  ready in {result['start_s']:.1f} s; RSS {result['after_start']['rss_mb']:.0f} MiB")
        for k in range(args.rounds):
            started = time.perf_counter()
            statuses = asyncio.run(mixed_round(server.url, texts, args.requests, audio, seed=k))
            time.sleep(args.settle)
            row = {"round": k + 1, "seconds": time.perf_counter() - started, "statuses": statuses, **_probe(server)}
            result["rounds"].append(row)
            log(f"  round {k + 1}: RSS {row['rss_mb']:.0f} MiB (peak {row['hwm_mb']:.0f}), threads {row['threads']},"
                f" fds {row['fds']}, queues {row['queue_series']}, {statuses}, {row['seconds']:.1f} s")
    finally:
        server.stop()
    rounds = result["rounds"]
    last = rounds[-10:] if len(rounds) >= 10 else rounds
    result["last_ten_growth_mb"] = last[-1]["rss_mb"] - last[0]["rss_mb"]
    result["last_ten_growth_pct"] = 100 * (last[-1]["rss_mb"] / last[0]["rss_mb"] - 1)
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    rounds = result["rounds"]
    lines = [
        f"Soak: `{command}`; CPU: {result['cpu']}; Python {result['python']}; models {result['models']}"
        + (f"; server env {', '.join(result['env'])}" if result["env"] else "") + ".",
        "",
        f"After start: RSS {result['after_start']['rss_mb']:.0f} MiB, threads {result['after_start']['threads']}.",
        "",
        "| round | RSS MiB | peak MiB | threads | fds | queue series | seconds | answers by status |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        *(f"| {r['round']} | {r['rss_mb']:.0f} | {r['hwm_mb']:.0f} | {r['threads']} | {r['fds']} | "
          f"{r['queue_series']} | {r['seconds']:.1f} | "
          + ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items())) + " |" for r in rounds),
        "",
        f"Growth over the last {min(10, len(rounds))} rounds: {result['last_ten_growth_mb']:+.0f} MiB "
        f"({result['last_ten_growth_pct']:+.1f}%).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="RSS of `omniembed serve` over many rounds of mixed requests.")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=800, help="requests per round (default 800)")
    parser.add_argument("--models", default="minilm,efficientnet-lite0,sfx-cnn,speaker-ge2e")
    parser.add_argument("--n", type=int, default=512, help="corpus size in texts (default 512)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after each round before measuring")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    parser.add_argument("--cache", type=Path, default=None, help="OMNIEMBED_CACHE_DIR (default: the usual one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args)
    print(markdown(result, shlex.join(sys.orig_argv)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
