"""Where a long-running server's memory goes: RSS of this process while minilm embeds batches of new shapes
(random 1-8 texts of the benchmark corpus, so batch size x padded length keeps changing) against the same
few shapes repeated. Issue 25's soak (``bench/soak.py``) grows round after round, ever more slowly; this
shows the growth is once per new input shape in the bf16 PyTorch path (oneDNN keeps a primitive per shape,
up to ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``), and flat for ONNX Runtime fp32 and for repeated shapes.

    .venv/bin/python bench/shape_memory.py                      # the default precision (auto) of this CPU
    .venv/bin/python bench/shape_memory.py --precision fp32     # ONNX Runtime fp32
    .venv/bin/python bench/shape_memory.py --fixed 5            # the same 5 batches over and over
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 .venv/bin/python bench/shape_memory.py
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import omniembed
from cpu_class import cpu_class_line
from text_throughput import build_corpus


def rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default=None, help="fp32 | bf16 | int8 (default: the settings', auto)")
    parser.add_argument("--eager", action="store_true", help="bf16 without ahead-of-time compiling")
    parser.add_argument("--batches", type=int, default=240)
    parser.add_argument("--fixed", type=int, default=0, help="repeat this many fixed batches instead of new ones")
    args = parser.parse_args()
    overrides: dict[str, object] = {} if args.precision is None else {"precision": args.precision}
    if args.eager:
        overrides["compile"] = False
    engine = omniembed.Engine(omniembed.Settings(**overrides))  # type: ignore[arg-type]
    texts = build_corpus(512)
    rng = random.Random(0)
    fixed = [rng.sample(texts, rng.randint(1, 8)) for _ in range(args.fixed)]
    first = engine.embed_batch("minilm", texts[:4])[0]
    print(cpu_class_line())
    print(f"minilm on {first.meta.runtime}, {first.meta.precision}; RSS after the first batch {rss_mib()} MiB")
    for k in range(args.batches):
        batch = fixed[k % len(fixed)] if fixed else rng.sample(texts, rng.randint(1, 8))
        engine.embed_batch("minilm", batch)
        if (k + 1) % max(1, args.batches // 8) == 0:
            print(f"after {k + 1} batches: RSS {rss_mib()} MiB", flush=True)


if __name__ == "__main__":
    main()
