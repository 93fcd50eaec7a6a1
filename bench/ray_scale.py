"""Scale-out on Ray Data: texts/s of in-process ``embed_batch`` against ``omniembed.ray.embed_dataset`` with one
encoder actor and with two actors on two nodes.

What it measures, on the bars-style mixed-length corpus of ``bench/text_throughput.py`` (``build_corpus``,
``--n`` texts, default 2,000) with ``minilm`` (``--precision``, default fp32):

* in-process ``Engine.embed_batch`` with one compute thread (the unit one actor gets) and with every core;
* Ray with 1 actor: a local 2-node cluster (``ray.cluster_utils.Cluster``: a head and a worker node with one
  CPU each, as in the tests) running ``embed_dataset(..., concurrency=1)``;
* Ray with 2 actors on 2 nodes (one CPU each): ``concurrency=2``.

The in-process runs are measured before and after the Ray runs (best counts), as the load of a shared
machine drifts. Each Ray run is timed end to end (actor start and model load included: the cost a job pays)
and in steady state (the second half of the rows: the rate a longer job converges to, without the burst of
first results).
The model is
loaded and its ONNX graph exported before any timing (the actors share that cache). Reported next to the
rates: the driver's peak RSS and the object store's peak (the high-water mark of the tmpfs pages in
/dev/shm the plasma stores touched, over the baseline before the run).

Run from the project root::

    .venv/bin/python bench/ray_scale.py                 # 2,000 texts, best of 2
    .venv/bin/python bench/ray_scale.py --quick         # 400 texts, one repeat
    .venv/bin/python bench/ray_scale.py --json out.json # also the numbers as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
STORE = 200 * 1024 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def shm_used() -> int:
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ShmPeak:
    """Samples every 50 ms while a run lasts: ``peak``, the high-water mark of /dev/shm over ``base`` (its use
    before the cluster started: the plasma stores' touched pages), and ``driver``, this process's peak RSS."""

    base = 0

    def __init__(self) -> None:
        self.peak, self.driver, self._stop = 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak, self.driver = max(self.peak, shm_used() - self.base), max(self.driver, rss())
            time.sleep(0.05)

    def __enter__(self) -> ShmPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def best(repeat: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [run() for _ in range(repeat)]
    return max(results, key=lambda r: r["steady"])


def in_process(texts: list[str], settings: Any, threads: int) -> dict[str, float]:
    from omniembed.api import Engine

    engine = Engine(settings.model_copy(update={"num_threads": threads}))
    engine.embed_batch("minilm", texts[:64])  # load (and the ONNX graph), untimed
    started = time.perf_counter()
    engine.embed_batch("minilm", texts)
    rate = len(texts) / (time.perf_counter() - started)
    return {"end_to_end": rate, "steady": rate}


def on_ray(texts: list[str], settings: Any, actors: int) -> dict[str, float]:
    import pyarrow as pa
    import ray

    from omniembed.ray import embed_dataset

    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    block = max(32, len(texts) // (actors * 8))
    ds = ray.data.from_arrow([table.slice(s, block) for s in range(0, len(texts), block)])
    out = embed_dataset(ds, "minilm", settings=settings, concurrency=actors, batch_size=256)
    rows, arrivals = 0, []
    with ShmPeak() as shm:
        started = time.perf_counter()
        for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
            rows += batch.num_rows
            arrivals.append((time.perf_counter(), rows))
        ended = time.perf_counter()
    assert rows == len(texts), f"{rows} rows came back for {len(texts)}"
    # steady state: the second half of the rows (the first results come in a burst after the actors start)
    half_time, half_rows = next((t, r) for t, r in arrivals if r >= rows / 2)
    steady = (rows - half_rows) / (ended - half_time) if rows > half_rows else rows / (ended - started)
    return {"end_to_end": rows / (ended - started), "steady": steady, "store_peak_mb": shm.peak / 2**20,
            "driver_rss_mb": shm.driver / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="texts (default 2000; 400 with --quick)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per configuration (best counts)")
    parser.add_argument("--precision", default="fp32", help="minilm precision (default fp32)")
    parser.add_argument("--quick", action="store_true", help="400 texts, one repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    n = args.n or (400 if args.quick else 2000)
    repeat = 1 if args.quick else args.repeat

    import ray
    from ray.cluster_utils import Cluster

    from omniembed.settings import Settings
    from text_throughput import build_corpus

    texts = build_corpus(n)
    cache = Path(tempfile.mkdtemp(prefix="omniembed-ray-bench-"))
    settings = Settings(cache_dir=cache, hub_offline=True, precision=args.precision)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, dict[str, float]] = {}
    log(f"in-process, 1 thread and {len(os.sched_getaffinity(0))} threads ({n} texts)")
    results["in-process, 1 thread"] = best(repeat, lambda: in_process(texts, settings, 1))
    results["in-process, all cores"] = best(repeat, lambda: in_process(texts, settings, 0))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(BENCH.parent / "src"), os.environ.get("PYTHONPATH", "")])
    ShmPeak.base = shm_used()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for actors in (1, 2):
            log(f"ray, {actors} actor(s)")
            results[f"ray, {actors} actor{'s on 2 nodes' if actors > 1 else ''}"] = best(
                repeat, lambda a=actors: on_ray(texts, settings, a))  # type: ignore[misc]
    finally:
        ray.shutdown()
        cluster.shutdown()
    log("in-process again (the machine's load drifts: each configuration keeps its best run)")
    for name, threads in (("in-process, 1 thread", 1), ("in-process, all cores", 0)):
        results[name] = max(results[name], in_process(texts, settings, threads), key=lambda r: r["steady"])
    driver_mb = max(r.get("driver_rss_mb", 0.0) for r in results.values())
    base = results["in-process, 1 thread"]["steady"]
    one = results["ray, 1 actor"]
    two = results["ray, 2 actors on 2 nodes"]
    summary = {"ray1_vs_inprocess_steady": one["steady"] / base,
               "ray1_vs_inprocess_end_to_end": one["end_to_end"] / base,
               "ray2_vs_ray1_steady": two["steady"] / one["steady"],
               "ray2_vs_ray1_end_to_end": two["end_to_end"] / one["end_to_end"],
               "driver_peak_rss_mb": driver_mb,
               "store_peak_mb": max(r.get("store_peak_mb", 0.0) for r in results.values())}
    print(f"minilm ({args.precision}), {n} mixed-length texts, best of {repeat}; load average before: {load_before}, "
          f"after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| configuration | texts/s end to end | texts/s steady | object store peak | driver peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        store = f"{r['store_peak_mb']:.1f} MiB" if "store_peak_mb" in r else "-"
        driver = f"{r['driver_rss_mb']:.0f} MiB" if "driver_rss_mb" in r else "-"
        print(f"| {name} | {r['end_to_end']:.1f} | {r['steady']:.1f} | {store} | {driver} |")
    print(f"\nRay, 1 actor / in-process (1 thread): {summary['ray1_vs_inprocess_steady']:.2f} steady, "
          f"{summary['ray1_vs_inprocess_end_to_end']:.2f} end to end. 2 actors / 1 actor: "
          f"{summary['ray2_vs_ray1_steady']:.2f} steady, {summary['ray2_vs_ray1_end_to_end']:.2f} end to end. "
          f"Driver peak RSS during the Ray runs {driver_mb:.0f} MiB (this process, which also holds the in-process "
          f"runs' model); object store peak {summary['store_peak_mb']:.1f} MiB over both nodes.")
    if args.json is not None:
        args.json.write_text(json.dumps({"n": n, "repeat": repeat, "precision": args.precision,
                                         "results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
