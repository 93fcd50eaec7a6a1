"""Reduced precision, applied once to a loaded model, whatever its family; and which one ``auto`` picks on
which class of hardware.

- ``fp32``: always available; the reference.
- ``bf16``: PyTorch autocast to bfloat16 (matmuls/convolutions in bf16, reductions in fp32), compiled ahead
  of time on CPU. Fast on CPUs with AVX512-BF16 or AMX, and on CUDA.
- ``int8``: ONNX Runtime, 8-bit weights in blocks of 16 along the input dimension and activations quantised
  to 8 bits per token and per block of 16 at run time (``MatMulNBits``, ``accuracy_level=4``); the attention
  value projections stay fp32. The quantised graph is cached beside the fp32 one, under the recipe's name.
- ``auto``: the precision the model declares as verified for this hardware class (``ModelSpec.auto_precision``),
  else fp32.

The int8 recipe, chosen by measurement (``bench/int8_recipes.py``: minilm, 2 threads, batch 32, AMD EPYC with
AVX512-BF16/VNNI, 2026-12-07, load average ~3.9 from other work, rounds interleaved; min cosine to fp32 over the
512-text benchmark corpus / the 1,200 standard-library docstring sentences; speed relative to ONNX fp32):

=================================================================  ===============  =============
recipe                                                             min cosine       x ONNX fp32
=================================================================  ===============  =============
``quantize_dynamic``: per-channel int8 weights, one activation     0.9591 / 0.9816  1.75
scale per tensor, int8 embedding tables (the earlier recipe)
the same on MatMuls only                                           0.9708 / 0.9772  1.72
the same with ``reduce_range`` (7-bit weights, for AVX2)           0.9553 / 0.9725  1.79
``MatMulNBits`` 8-bit, blocks of 32, every MatMul                  0.9981 / 0.9990  1.02
the same, attention value projections fp32                         0.9988 / 0.9996  1.05
**the same, blocks of 16** (this recipe)                           0.9993 / 0.9996  1.04
=================================================================  ===============  =============

One activation scale per tensor cannot keep the vectors: minilm's LayerNorm outputs carry a few channels ~15x
the median, and some tokens ~8x the others, so a batch-wide scale leaves short texts a few levels (SmoothQuant,
alpha 0.5 / 0.75, then the same: 0.937 / 0.981). Simulated, per-channel int8 weights alone cost 0.9963 and
per-token int8 activations alone 0.980 (0.996 after SmoothQuant 0.75): both need blocks along K. Quantising one
MatMul at a time (blocks of 32, the rest fp32; mean cosine lost on the 300 worst texts) put layer 5's and 4's
value projections first (1.2e-4, 9.4e-5), then layer 4's FFN input (7.2e-5) and layer 3's value projection
(5.2e-5); the six value projections carry half the summed loss at 1/12 of the weight FLOPs, so they stay fp32.
On MLAS's AVX2 kernels (run under emulation, ``qemu-x86_64 -cpu EPYC-Rome``: accuracy only, never speed) the
recipe's vectors differ from these by up to 0.004 and keep their minimum cosine, 0.99928 / 0.99959 on the 160
worst texts of each corpus. The price: ONNX Runtime's blockwise int8 kernels run minilm's shapes about as fast
as its fp32 ones on this CPU (its per-tensor QGEMM ~3x), so ``int8`` is offered, and is a default only where
measured faster than the class's other verified paths (nowhere yet: docs/benchmarks.md, "Per CPU class").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.registry import ModelSpec
from omniembed.runtime.base import cached_artifact, cpu_flags
from omniembed.runtime.compiled import CompiledEncoder
from omniembed.runtime.onnx import OnnxEncoder
from omniembed.settings import Settings

__all__ = [
    "HARDWARE_CLASSES",
    "INT8_RECIPE",
    "PRECISIONS",
    "apply_precision",
    "cpu_class",
    "cpu_supports_bf16",
    "hardware_class",
    "quantize_int8",
    "resolve_precision",
    "verified_precisions",
]

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "int8")
HARDWARE_CLASSES = ("cuda", "amx", "avx512_bf16", "avx512_vnni", "avx2", "other")
"""The classes a model's ``auto_precision`` names, from the newest CPU features down (``other``: none of them).
A CPU belongs to the first class whose feature it has: an AMX CPU is ``amx`` even though it also has
AVX512-BF16, since its kernels (and so its speeds) differ."""
NATIVE = {"bf16": ("cuda", "amx", "avx512_bf16"), "fp32": ()}
"""Where the single-precision form ``auto_precision="bf16"`` applies: the hardware with native bf16."""
INT8_RECIPE = "nb8b16v"
"""Names the int8 recipe in the cache key of the quantised graph: change it whenever ``quantize_int8`` changes."""
INT8_BITS, INT8_BLOCK, INT8_ACCURACY = 8, 16, 4
"""MatMulNBits: 8-bit symmetric weights in blocks of 16 along K; accuracy level 4 = int8 compute, with the
activations quantised per row and block at run time."""


def cpu_class(flags: frozenset[str] | None = None) -> str:
    """The class of this CPU (or of ``flags``) in ``HARDWARE_CLASSES`` terms."""
    flags = cpu_flags() if flags is None else flags
    if {"amx_bf16", "amx_int8"} & flags:
        return "amx"
    for name in ("avx512_bf16", "avx512_vnni", "avx2"):
        if name in flags:
            return name
    return "other"


def hardware_class(device: str) -> str:
    """``cuda`` for the CUDA device, else the CPU's class (``auto`` devices are judged by their CPU, as before)."""
    return "cuda" if device == "cuda" else cpu_class()


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def verified_precisions(spec: ModelSpec) -> dict[str, str]:
    """The model's verified precision per hardware class: its ``auto_precision`` table, or for the single
    form (``"bf16"``) that precision on every class with native support for it."""
    declared = spec.auto_precision
    if isinstance(declared, str):
        if declared not in NATIVE:
            raise ValueError(f"{spec.name}: auto_precision {declared!r} must be a per-class table")
        return dict.fromkeys(NATIVE[declared], declared)
    table = dict(declared)
    unknown = sorted(set(table) - set(HARDWARE_CLASSES)) + sorted(set(table.values()) - set(PRECISIONS[1:]))
    if unknown:
        raise ValueError(f"{spec.name}: auto_precision names unknown classes or precisions {unknown}")
    return table


def resolve_precision(precision: str, spec: ModelSpec, runtime: str, device: str) -> tuple[str, str]:
    """A concrete ``(precision, runtime)``. ``auto`` picks the model's verified precision for this hardware
    class (bf16 runs on torch and int8 on onnx, so an ``auto`` runtime moves to it); an explicit runtime is
    never overridden (the precision falls back to fp32 then)."""
    if precision not in PRECISIONS:
        raise ParameterInvalid(
            f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", param="precision"
        )
    if precision == "auto":
        wanted = verified_precisions(spec).get(hardware_class(device), "fp32")
        if wanted == "bf16" and runtime in ("auto", "torch"):
            return "bf16", "torch"
        if wanted == "int8" and runtime in ("auto", "onnx") and device != "cuda":
            return "int8", "onnx"
        return "fp32", runtime
    if precision == "bf16":
        if runtime == "onnx":
            raise ParameterInvalid("precision 'bf16' runs on the torch runtime; use runtime='torch' or 'auto'",
                                   param="precision")
        return "bf16", "torch"
    if precision == "int8":
        if runtime == "torch":
            raise ParameterInvalid("precision 'int8' runs on the onnx runtime; use runtime='onnx' or 'auto'",
                                   param="precision")
        return "int8", "onnx"
    return "fp32", runtime


def _value_projections(model: Any) -> list[str]:
    """The MatMuls that compute attention values: their output reaches, through Add/Reshape/Transpose only, the
    right operand of a MatMul whose left operand comes from a Softmax (through Where/Cast, as exporters mask it)."""
    nodes = list(model.graph.node)
    weights = {i.name for i in model.graph.initializer}
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def from_softmax(name: str, depth: int = 3) -> bool:
        node = producer.get(name)
        if node is None or depth == 0:
            return False
        return node.op_type == "Softmax" or (node.op_type in ("Where", "Cast") and
                                             any(from_softmax(i, depth - 1) for i in node.input))

    found = []
    for node in nodes:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        frontier = [node.output[0]]
        while frontier:
            name = frontier.pop()
            for user in consumers.get(name, []):
                if user.op_type in ("Add", "Reshape", "Transpose"):
                    frontier.append(user.output[0])
                elif user.op_type == "MatMul" and user.input[1] == name and from_softmax(user.input[0]):
                    found.append(node.name)
                    frontier = []
                    break
    return found


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """ONNX Runtime's matmul_nbits_quantizer calls ``logging.basicConfig(level=INFO)`` when imported: undo that
    (the host application owns the root logger) and keep its per-node INFO lines out of the log."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quantizer = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        quantizer.setLevel(logging.WARNING)


def quantize_int8(source: Path, target: Path) -> None:
    """Write the int8 variant of the fp32 graph ``source`` to ``target`` (the recipe in the module docstring)."""
    import onnx

    with _root_logging_kept():
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    model = onnx.load(str(source))
    weights = {i.name for i in model.graph.initializer}
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    keep = _value_projections(model)
    if not set(matmuls) - set(keep):
        raise ValueError("the graph has no weight MatMul for the int8 recipe to quantise (it covers transformers)")
    config = DefaultWeightOnlyQuantConfig(block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=INT8_ACCURACY,
                                          bits=INT8_BITS)
    with _root_logging_kept():
        quantizer = MatMulNBitsQuantizer(model, bits=INT8_BITS, block_size=INT8_BLOCK, is_symmetric=True,
                                         accuracy_level=INT8_ACCURACY, nodes_to_exclude=keep, algo_config=config)
        quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def _quantized(path: Path, settings: Settings) -> Path:
    """The int8 variant of a cached ONNX graph, made once, cached beside it under the recipe's name."""
    return cached_artifact(path.parent.with_name(f"{path.parent.name}-int8-{INT8_RECIPE}"), path.name,
                           lambda folder: quantize_int8(path, folder / path.name))


def _compiled_bf16(encoder: Any, settings: Settings) -> Any:
    """The ahead-of-time compiled bf16 encoder for an eager CPU encoder, or None (compilation off, not on
    CPU, or it failed: then eager autocast is used and the log says why)."""
    if not settings.compile or encoder.device != "cpu" or getattr(encoder, "graph", None) is None:
        return None
    try:
        return CompiledEncoder.from_graph(encoder.graph, "bf16", settings)
    except Exception as exc:
        log.warning("%s; using eager bf16 autocast instead (slower; OMNIEMBED_COMPILE=false skips compiling)",
                    getattr(exc, "message", str(exc)))
        return None


def apply_precision(loaded: Any, precision: str, settings: Settings) -> Any:
    """Switch every encoder of a loaded model to ``precision`` (fp32 leaves it as built)."""
    if precision == "fp32":
        return loaded
    for modality, encoder in list(loaded.encoders.items()):
        if precision == "bf16":
            if not hasattr(encoder, "enable_bf16"):
                raise RuntimeUnavailable(f"bf16 needs the torch runtime ({loaded.spec.name} {modality})",
                                         param="precision", model=loaded.spec.name)
            compiled = _compiled_bf16(encoder, settings)
            if compiled is not None:
                loaded.encoders[modality] = compiled
            else:
                encoder.enable_bf16()
        elif precision == "int8":
            if not isinstance(encoder, OnnxEncoder):
                raise RuntimeUnavailable(f"int8 needs the onnx runtime ({loaded.spec.name} {modality})",
                                         param="precision", model=loaded.spec.name)
            try:
                path = _quantized(encoder.path, settings)
            except Exception as exc:
                raise RuntimeUnavailable(f"int8 quantisation of {loaded.spec.name} failed ({type(exc).__name__})",
                                         param="precision", model=loaded.spec.name,
                                         detail=f"{type(exc).__name__}: {exc}") from exc
            loaded.encoders[modality] = OnnxEncoder(path, encoder.device, settings.threads())
    loaded.precision = precision
    return loaded
