"""The Encoder interface, runtime/device selection and the factory that builds an encoder."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.settings import Settings

if TYPE_CHECKING:
    import torch

__all__ = ["Encoder", "GraphSpec", "build_encoder", "resolve_runtime"]

RUNTIMES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")


class Encoder(Protocol):
    """Maps named numpy inputs (a batch) to the network's numpy output."""

    runtime: str
    device: str

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class GraphSpec:
    """A network as the runtime layer needs to know it."""

    cache_key: str
    """Unique for these exact weights and graph (model name + weights fingerprint + variant)."""
    build: Callable[[], torch.nn.Module]
    """Builds the eval-mode module; it takes the inputs positionally, in ``input_names`` order."""
    input_names: tuple[str, ...]
    output_name: str
    dynamic_axes: Mapping[str, Mapping[int, str]]
    """Per input, its dynamic axes by name, e.g. ``{"input_ids": {0: "batch", 1: "seq"}}``."""
    example: Callable[[], dict[str, np.ndarray]]
    """A small batch of real-looking inputs, used to trace the ONNX export."""


def _nvidia_driver_present() -> bool:
    """Cheap pre-check: without an NVIDIA driver there is no CUDA, and torch need not be imported."""
    return os.path.exists("/proc/driver/nvidia/version") or os.environ.get("OMNIEMBED_ASSUME_CUDA") == "1"


def _cuda_available(runtime: str) -> bool:
    if not _nvidia_driver_present():
        return False
    if runtime == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    import torch

    return bool(torch.cuda.is_available())


def resolve_runtime(runtime: str, device: str) -> tuple[str, str]:
    """Turn ``auto`` choices into a concrete ``(runtime, device)``; unavailable choices are errors.

    ``auto`` runtime is ONNX Runtime on CPU (1.7-6x faster than eager PyTorch on the CPUs measured)
    and PyTorch on CUDA.
    """
    if runtime not in RUNTIMES:
        raise ParameterInvalid(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}", param="runtime")
    if device not in DEVICES:
        raise ParameterInvalid(f"device must be one of {', '.join(DEVICES)}, not {device!r}", param="device")
    if device == "auto":
        probe = "torch" if runtime == "auto" else runtime
        device = "cuda" if _cuda_available(probe) else "cpu"
    elif device == "cuda" and not _cuda_available("torch" if runtime == "auto" else runtime):
        raise RuntimeUnavailable(
            f"device 'cuda' was asked for but no CUDA device is usable by the {runtime} runtime here; "
            "use device='cpu' or 'auto'",
            param="device",
        )
    if runtime == "auto":
        runtime = "onnx" if device == "cpu" else "torch"
    return runtime, device


def build_encoder(graph: GraphSpec, runtime: str, device: str, settings: Settings) -> Encoder:
    """An encoder for ``graph`` on a concrete runtime and device (see ``resolve_runtime``)."""
    if runtime == "onnx":
        from omniembed.runtime.onnx import OnnxEncoder

        return OnnxEncoder.from_graph(graph, device, settings)
    from omniembed.runtime.torch import TorchEncoder

    return TorchEncoder(graph.build(), graph.input_names, device, settings.threads())
