"""Ahead-of-time compiled PyTorch (AOTInductor), used for bf16 on CPU.

Eager bf16 autocast leaves the elementwise work between matmuls (layer norm, GELU, softmax, the dtype
casts autocast inserts) as separate passes over memory, which on a 2-core CPU with AVX512-BF16 costs a
large share of the time once the matmuls run in bf16. ``torch.export`` + AOTInductor fuses those passes,
folds the weights into the compiled package (``freezing``) and runs with no Python per op: minilm ~230 ->
~335 texts/s on the benchmark machine.

Compiling takes ~20-30 s once per model, so the package is cached on disk like the ONNX graph:
``<cache_dir>/aoti/<cache_key>-<precision>-<recipe>-<platform tag>/model.pt2``, written atomically. The
platform tag covers what the generated code depends on: torch version, CPU vector ISA and thread count.
On a cache hit the torch module is never built and loading takes well under a second.

It needs a C++ compiler (the one torch's Inductor finds, e.g. ``g++``). Where compiling fails the caller
falls back to eager autocast and says so in the log (``OMNIEMBED_COMPILE=false`` skips it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import platform
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.errors import RuntimeUnavailable
from omniembed.runtime.base import GraphSpec, cached_artifact, cpu_flags, export_inputs, first_line, named_outputs
from omniembed.runtime.onnx import step
from omniembed.runtime.torch import store_weights_bf16
from omniembed.settings import Settings

__all__ = ["CompiledEncoder", "compiled_package", "platform_tag"]

log = logging.getLogger(__name__)
PACKAGE_FILE = "model.pt2"
PRECISIONS = ("bf16",)
RECIPE = "c3"
"""Bumped whenever ``compile_graph`` changes what it builds, so that older cached packages are not reused."""


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")
"""The CPU features the generated code may use; a package is only reused where they are the same."""


def platform_tag(threads: int) -> str:
    """What a compiled package depends on besides the weights: torch version, CPU ISA, thread count."""
    import torch

    flags = cpu_flags()
    isa = ",".join(f for f in ISA_FLAGS if f in flags) if flags else platform.processor()
    raw = f"{torch.__version__}|{platform.machine()}|{isa}|{threads}|{sys.version_info[:2]}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _bf16_module(module: Any) -> Any:
    """``module`` with Linear/conv weights in bf16, whose forward runs under bf16 autocast and returns
    float32: export captures the autocast region, so the package computes what eager bf16 computes."""
    import torch

    store_weights_bf16(module)

    class Bf16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.inner(*tensors)
            if isinstance(out, (tuple, list)):  # a graph with extra outputs (a pooled head beside a grid)
                return tuple(o.float() for o in out)
            return out.float()

    return Bf16().eval()


def _plain_attention(module: Any) -> None:
    """Switch Hugging Face models inside ``module`` to their plain attention (matmul, softmax, matmul).

    Compiled, it is ~8% faster for minilm than the SDPA path, whose CPU flash kernel is slow at small
    head sizes (32) and short sequences; profiled: 24% of the time in attention with SDPA. The math is
    the same (cosine to the SDPA package >= 0.99993 over the benchmark corpus)."""
    for m in module.modules():
        switch = getattr(m, "set_attn_implementation", None)
        if callable(switch) and getattr(getattr(m, "config", None), "_attn_implementation", None) == "sdpa":
            switch("eager")


def compile_graph(graph: GraphSpec, precision: str, folder: Path) -> None:
    """Export ``graph`` with dynamic shapes and compile it with AOTInductor into ``folder``/model.pt2."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"ahead-of-time compilation is only used for {PRECISIONS}, not {precision!r}")
    built = graph.build()
    _plain_attention(built)
    module = _bf16_module(built)
    args, shapes = export_inputs(graph, module, inferred_ranges=True)
    with contextlib.redirect_stdout(sys.stderr), torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(module, args, dynamic_shapes=shapes)
        torch._inductor.aoti_compile_and_package(
            exported, package_path=str(folder / PACKAGE_FILE), inductor_configs={"freezing": True}
        )


def compiled_package(graph: GraphSpec, precision: str, settings: Settings) -> Path:
    """Path of the cached compiled package for ``graph`` at ``precision``, compiling it first when absent.

    A failure is remembered in ``<folder>.failed`` (with its reason) so that later loads do not spend the
    compile time again on the same failure; delete that file to retry (e.g. after installing ``g++``)."""
    tag = platform_tag(settings.threads())
    final = settings.cache_dir / "aoti" / f"{graph.cache_key}-{precision}-{RECIPE}-{tag}"
    failed = final.with_name(final.name + ".failed")
    if failed.is_file() and not (final / PACKAGE_FILE).is_file():
        raise RuntimeUnavailable(
            f"compiling {graph.cache_key} ({precision}) failed before: {failed.read_text()[:300]} "
            f"(delete {failed} to retry)",
            param="precision",
        )

    def make(folder: Path) -> None:
        try:
            with step(graph.cache_key, f"compiling for {precision} ahead of time (once; cached in {final.parent})"):
                compile_graph(graph, precision, folder)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)[:300]}"
            failed.write_text(reason, encoding="utf-8")
            raise RuntimeUnavailable(f"compiling {graph.cache_key} ({precision}) failed ({reason})",
                                     param="precision") from exc

    return cached_artifact(final, PACKAGE_FILE, make)


class CompiledEncoder:
    """Runs a compiled package on numpy feeds (inputs positionally, in ``input_names`` order); float32 out."""

    runtime = "torch"
    batch_tokens = 1024
    """Its best encoder batch in padded tokens for text (minilm: +2% over 512; ONNX fp32 prefers 512)."""

    def __init__(self, path: Path, input_names: tuple[str, ...], threads: int,
                 output_names: tuple[str, ...] = ("output",)) -> None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.fn = torch._inductor.aoti_load_package(str(path))
        self.path = path
        self.input_names = input_names
        self.output_names = output_names
        self.device = "cpu"

    @classmethod
    def from_graph(cls, graph: GraphSpec, precision: str, settings: Settings) -> CompiledEncoder:
        path = compiled_package(graph, precision, settings)
        return cls(path, graph.input_names, settings.threads(), graph.output_names)

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph, by name."""
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.inference_mode():
            out = self.fn(*tensors)
        return named_outputs(self.output_names, out if len(self.output_names) > 1 else
                             (out[0] if isinstance(out, (list, tuple)) else out))

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.outputs(feeds)[self.output_names[0]]
