"""The CPU class every benchmark table names (omniembed's ``precision="auto"`` terms), its SIMD flags, and the
kernels PyTorch and ONNX Runtime pick on it: the speed ratios depend on it. Its own module, so that the
throughput benchmarks and ``machine.py`` (which runs them) can all import it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
"""The CPU flags that decide which kernels ONNX Runtime's MLAS and PyTorch pick."""


def _mlas_kernels(flags: frozenset[str]) -> str:
    """The kernels ONNX Runtime's MLAS dispatches to on these flags (it reads CPUID itself and reports nothing;
    this follows its dispatch order: AMX, AVX512-VNNI, AVX-VNNI, AVX512 core, AVX2)."""
    fp32 = "AVX512F" if "avx512f" in flags else "AVX2/FMA" if "avx2" in flags else "SSE"
    if {"amx_int8"} & flags:
        int8 = "AMX"
    elif "avx512_vnni" in flags:
        int8 = "AVX512-VNNI (vpdpbusd: exact int32 sums)"
    elif "avx_vnni" in flags:
        int8 = "AVX-VNNI"
    elif "avx512f" in flags:
        int8 = "AVX512 core (vpmaddubsw: int16 pair sums, may saturate)"
    elif "avx2" in flags:
        int8 = "AVX2 (vpmaddubsw: int16 pair sums, may saturate)"
    else:
        int8 = "SSE"
    return f"fp32 {fp32}, int8 {int8} (inferred from the CPU flags)"


def cpu_class_info() -> dict[str, str]:
    """This CPU's class (omniembed's ``precision="auto"`` terms), its SIMD flags, and the kernels PyTorch and ONNX
    Runtime pick on it: every benchmark table names it, since the speed ratios depend on it."""
    import torch

    from omniembed.runtime.base import cpu_flags
    from omniembed.runtime.precision import cpu_class

    flags = cpu_flags()
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "class": cpu_class(flags), "flags": ", ".join(f for f in SIMD_FLAGS if f in flags) or "none",
            "torch_kernels": str(torch.backends.cpu.get_cpu_capability()), "onnxruntime_kernels": _mlas_kernels(flags)}


def cpu_class_line() -> str:
    """``cpu_class_info`` as one Markdown line."""
    info = cpu_class_info()
    return (f"CPU class: **{info['class']}** ({info['cpu']}; flags: {info['flags']}); PyTorch kernels: "
            f"{info['torch_kernels']}; ONNX Runtime (MLAS) kernels: {info['onnxruntime_kernels']}.")
