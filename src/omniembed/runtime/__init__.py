"""How networks run: PyTorch or ONNX Runtime, on CPU or CUDA, behind one small ``Encoder`` interface.

A model family describes its network as a ``GraphSpec`` (how to build the torch module, its named
inputs and their dynamic axes); ``build_encoder`` turns that into something that maps numpy feeds to
a numpy output, exporting and caching an ONNX graph when the ONNX runtime is chosen.
"""

from __future__ import annotations

from omniembed.runtime.base import Encoder, GraphSpec, PassThroughEncoder, resolve_runtime
from omniembed.runtime.cache import ModelCache
from omniembed.runtime.onnx import OnnxEncoder
from omniembed.runtime.torch import TorchEncoder
from omniembed.settings import Settings

__all__ = ["Encoder", "GraphSpec", "ModelCache", "PassThroughEncoder", "build_encoder", "resolve_runtime"]


def build_encoder(graph: GraphSpec, runtime: str, device: str, settings: Settings) -> Encoder:
    """An encoder for ``graph`` on a concrete runtime and device (see ``resolve_runtime``): ONNX Runtime over
    the cached export, or eager PyTorch."""
    if runtime == "onnx":
        return OnnxEncoder.from_graph(graph, device, settings)
    return TorchEncoder(graph, device, settings.threads())
