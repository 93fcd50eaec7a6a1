"""How networks run: PyTorch or ONNX Runtime, on CPU or CUDA, behind one small ``Encoder`` interface.

A model family describes its network as a ``GraphSpec`` (how to build the torch module, its named
inputs and their dynamic axes); ``build_encoder`` turns that into something that maps numpy feeds to
a numpy output, exporting and caching an ONNX graph when the ONNX runtime is chosen.
"""

from __future__ import annotations

from omniembed.runtime.base import Encoder, GraphSpec, build_encoder, resolve_runtime
from omniembed.runtime.cache import ModelCache

__all__ = ["Encoder", "GraphSpec", "ModelCache", "build_encoder", "resolve_runtime"]
