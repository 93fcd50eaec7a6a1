"""Reduced precision, applied once to a loaded model, whatever its family.

- ``fp32``: always available; the reference.
- ``bf16``: PyTorch autocast to bfloat16 (matmuls/convolutions in bf16, reductions in fp32). Fast on CPUs
  with AVX512-BF16 or AMX, and on CUDA.
- ``int8``: ONNX Runtime dynamic quantisation (int8 weights, per channel; activations quantised at run
  time; VNNI on CPUs that have it). The quantised graph is cached beside the fp32 one.
- ``auto``: the model's ``auto_precision`` where the hardware supports it, else fp32. A model declares
  ``auto_precision`` only after its minimum cosine to fp32 over the benchmark corpus was measured >= 0.9995.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.registry import ModelSpec
from omniembed.runtime.base import cached_artifact, cpu_flags
from omniembed.runtime.compiled import CompiledEncoder
from omniembed.runtime.onnx import OnnxEncoder
from omniembed.settings import Settings

__all__ = ["PRECISIONS", "apply_precision", "cpu_supports_bf16", "resolve_precision"]

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(precision: str, spec: ModelSpec, runtime: str, device: str) -> tuple[str, str]:
    """A concrete ``(precision, runtime)``. ``auto`` picks the model's verified reduced precision where the
    hardware has it (bf16 runs on torch, so an ``auto`` runtime moves to torch for it); an explicit
    runtime is never overridden."""
    if precision not in PRECISIONS:
        raise ParameterInvalid(
            f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", param="precision"
        )
    if precision == "auto":
        wanted = spec.auto_precision
        hardware = device == "cuda" or cpu_supports_bf16()
        if wanted == "bf16" and hardware and runtime in ("auto", "torch"):
            return "bf16", "torch"
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


def _quantized(path: Path, settings: Settings) -> Path:
    """The int8 (dynamic, per-channel) variant of a cached ONNX graph, made once."""

    def make(folder: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(folder / path.name), weight_type=QuantType.QInt8, per_channel=True)

    return cached_artifact(path.parent.with_name(path.parent.name + "-int8"), path.name, make)


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
