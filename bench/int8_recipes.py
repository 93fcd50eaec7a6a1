"""int8 recipes for minilm, side by side: how far each moves the vectors, and how fast it runs (issue 22).

What it measures: the fp32 ONNX graph of ``minilm`` (omniembed's own export) quantised by each recipe below,
swapped into the engine in place of the fp32 encoder, so tokenisation, length-sorted batching (batch 32), mean
pooling and normalisation are the engine's. For each recipe: the minimum and mean cosine to the fp32 vectors
over the benchmark corpus (``text_throughput.build_corpus(512)``) and the bar corpus (the 1,200 standard-library
docstring sentences, ``text_throughput.docstring_corpus``), and texts/s over the benchmark corpus, best of
``--repeat`` rounds interleaved between the recipes (so load from other processes hits all of them alike).

* ``dynamic``: ``quantize_dynamic`` (per-channel int8 weights, one uint8 activation scale per tensor), its
  defaults (embedding tables too): omniembed's earlier int8;
* ``dynamic-matmul`` / ``dynamic-matmul-rr``: the same on MatMuls only; with ``reduce_range`` (7-bit weights,
  what AVX2's vpmaddubsw needs to never saturate);
* ``nbits-b32`` / ``nbits-b32-keepv``: ``MatMulNBits`` (8-bit weights in blocks of 32 along K, activations
  quantised per row and block at run time, ``accuracy_level=4``), on every MatMul / with the attention value
  projections left fp32;
* ``shipped``: omniembed's ``precision="int8"`` recipe (``runtime.precision.quantize_int8``).

``--sensitivity RECIPE`` also quantises one MatMul at a time with that recipe's settings (the rest fp32) and ranks
them by the mean cosine they cost, the measurement behind which MatMuls stay fp32.

Run from the project root::

    .venv/bin/python bench/int8_recipes.py                   # every recipe, best of 3
    .venv/bin/python bench/int8_recipes.py --recipes dynamic,shipped --repeat 2
    .venv/bin/python bench/int8_recipes.py --sensitivity nbits-b32 --recipes shipped
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_class import cpu_class_line
from text_throughput import build_corpus, docstring_corpus

MODEL = "minilm"


def _dynamic(op_types: list[str] | None, reduce_range: bool) -> Callable[[Path, Path, list[str]], None]:
    def make(source: Path, target: Path, only: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=op_types, nodes_to_quantize=only or None)

    return make


def _nbits(block: int, keep_values: bool) -> Callable[[Path, Path, list[str]], None]:
    def make(source: Path, target: Path, only: list[str]) -> None:
        import onnx

        from omniembed.runtime import precision

        with precision._root_logging_kept():
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )
        model = onnx.load(str(source))
        weights = {i.name for i in model.graph.initializer}
        names = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
        keep = [n for n in names if n not in only] if only else (precision._value_projections(model) if keep_values
                                                                  else [])
        config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=8)
        with precision._root_logging_kept():
            quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=block, is_symmetric=True, accuracy_level=4,
                                             nodes_to_exclude=keep, algo_config=config)
            quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)

    return make


def _shipped(source: Path, target: Path, only: list[str]) -> None:
    from omniembed.runtime.precision import quantize_int8

    if only:
        raise ValueError("--sensitivity needs one of the other recipes (the shipped one fixes its node set)")
    quantize_int8(source, target)


RECIPES: dict[str, Callable[[Path, Path, list[str]], None]] = {
    "dynamic": _dynamic(None, False),
    "dynamic-matmul": _dynamic(["MatMul"], False),
    "dynamic-matmul-rr": _dynamic(["MatMul"], True),
    "nbits-b32": _nbits(32, False),
    "nbits-b32-keepv": _nbits(32, True),
    "shipped": _shipped,
}


class Bench:
    """The engine with its fp32 ONNX minilm loaded, whose text encoder can be swapped for a quantised graph."""

    def __init__(self, cache: Path, threads: int) -> None:
        import omniembed
        from omniembed.runtime.onnx import OnnxEncoder

        self.engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, num_threads=threads, hub_offline=True,
                                                          precision="fp32"))
        self.loaded = self.engine.load(MODEL, runtime="onnx", precision="fp32")
        self.modality = omniembed.Modality.TEXT
        self.fp32 = self.loaded.encoders[self.modality]
        self.source = Path(self.fp32.path)
        self.make_encoder = lambda path: OnnxEncoder(path, "cpu", threads)
        self.corpora = {"bench": build_corpus(512), "docstrings": docstring_corpus(1200)}
        self.reference = {name: self.embed(self.fp32, texts) for name, texts in self.corpora.items()}

    def embed(self, encoder: Any, texts: list[str]) -> np.ndarray:
        self.loaded.encoders[self.modality] = encoder
        try:
            out = self.engine.embed_batch(MODEL, texts, runtime="onnx", precision="fp32", batch_size=32)
        finally:
            self.loaded.encoders[self.modality] = self.fp32
        return np.stack([e.data for e in out])

    def cosines(self, encoder: Any) -> dict[str, tuple[float, float]]:
        out = {}
        for name, texts in self.corpora.items():
            cos = np.sum(self.embed(encoder, texts) * self.reference[name], axis=1)
            out[name] = (float(cos.min()), float(cos.mean()))
        return out


def sensitivity(bench: Bench, recipe: str, folder: Path) -> list[str]:
    """One MatMul quantised at a time (the rest fp32): the rows of a table ranked by mean cosine lost."""
    import onnx

    model = onnx.load(str(bench.source))
    weights = {i.name for i in model.graph.initializer}
    names = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    roles = ("query", "key", "value", "attention output", "FFN in", "FFN out")
    rows = []
    for k, name in enumerate(names):
        target = folder / f"one-{k}.onnx"
        RECIPES[recipe](bench.source, target, [name])
        cos = bench.cosines(bench.make_encoder(target))
        role = f"layer {k // 6} {roles[k % 6]}" if len(names) == 36 else name
        loss = 1 - min(m for _, m in cos.values())
        rows.append((loss, f"| {role} ({name}) | {cos['bench'][0]:.5f} | {cos['docstrings'][0]:.5f} | {loss:.2e} |"))
        print(f"  sensitivity {k + 1}/{len(names)}: {name} {cos}", file=sys.stderr, flush=True)
    return [row for _, row in sorted(rows, reverse=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated subset of {','.join(RECIPES)}")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds, interleaved; the best counts")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sensitivity", choices=[r for r in RECIPES if r != "shipped"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    args = parser.parse_args()
    names = [r.strip() for r in args.recipes.split(",") if r.strip()]
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="omniembed-int8-") as tmp:
        bench = Bench(Path(tmp) / "cache", args.threads)
        encoders: dict[str, Any] = {"fp32 (ONNX)": bench.fp32}
        for name in names:
            target = Path(tmp) / f"{name}.onnx"
            RECIPES[name](bench.source, target, [])
            encoders[name] = bench.make_encoder(target)
        accuracy = {name: bench.cosines(enc) for name, enc in encoders.items()}
        texts = bench.corpora["bench"]
        best = dict.fromkeys(encoders, float("inf"))
        for round_ in range(args.repeat):
            for name, enc in encoders.items():
                started = time.perf_counter()
                bench.embed(enc, texts)
                best[name] = min(best[name], time.perf_counter() - started)
                print(f"  round {round_ + 1}: {name} {len(texts) / best[name]:.1f} texts/s", file=sys.stderr)
        ranked = sensitivity(bench, args.sensitivity, Path(tmp)) if args.sensitivity else []
    print("## int8 recipes for minilm: cosine to fp32 and speed, side by side")
    print()
    print(cpu_class_line())
    print()
    print(f"Command: `{shlex.join(sys.orig_argv)}`; {args.threads} threads; batch 32; best of {args.repeat} "
          f"interleaved rounds over the 512-text benchmark corpus; load average before {load_before}, after "
          + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + ".")
    print()
    print("| recipe | min cosine, benchmark corpus | min cosine, docstrings | mean cosine (bench / docs) | texts/s "
          "| x ONNX fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    fp32_rate = len(texts) / best["fp32 (ONNX)"]
    for name in encoders:
        (b_min, b_mean), (d_min, d_mean) = accuracy[name]["bench"], accuracy[name]["docstrings"]
        rate = len(texts) / best[name]
        print(f"| {name} | {b_min:.5f} | {d_min:.5f} | {b_mean:.6f} / {d_mean:.6f} | {rate:.1f} "
              f"| {rate / fp32_rate:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "repeat": args.repeat, "accuracy": accuracy,
                                         "texts_per_s": {k: len(texts) / v for k, v in best.items()}}, indent=2))
    if ranked:
        print()
        print(f"Sensitivity ({args.sensitivity}, one MatMul quantised at a time, the rest fp32), most harmful first:")
        print()
        print("| MatMul | min cosine, benchmark corpus | min cosine, docstrings | mean cosine lost (worst corpus) |")
        print("|---|---:|---:|---:|")
        for row in ranked:
            print(row)


if __name__ == "__main__":
    main()
