"""The ONNX Runtime runtime: export once with torch's exporter, cache on disk, re-use on later starts.

Cache layout: ``<cache_dir>/onnx/<cache_key>/model.onnx`` (plus external data when the exporter writes
any). A graph is exported into a temporary sibling folder and moved into place in one rename, so a
crash mid-export never leaves a half-written graph that a later start would load. On a cache hit the
torch module is never built: the weights are not even read.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from omniembed.errors import RuntimeUnavailable
from omniembed.runtime.base import GraphSpec, cached_artifact, export_inputs, first_line
from omniembed.settings import Settings

__all__ = ["OnnxEncoder", "export_graph"]

log = logging.getLogger(__name__)
GRAPH_FILE = "model.onnx"
OPSET = 18


def export_graph(graph: GraphSpec, folder: Path) -> None:
    """Export ``graph`` with torch's exporter (dynamic shapes) into ``folder``/model.onnx."""
    import torch

    module = graph.build()
    args, shapes = export_inputs(graph, module)
    # The exporter reports progress with print(): keep stdout clean for the CLI's JSON output.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(folder / GRAPH_FILE),
                input_names=list(graph.input_names),
                output_names=[graph.output_name],
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def cached_graph(graph: GraphSpec, settings: Settings) -> Path:
    """Path of the cached ONNX graph for ``graph``, exporting it first when absent."""

    def export(folder: Path) -> None:
        log.info("exporting %s to ONNX (once; cached in %s)", graph.cache_key, settings.onnx_cache_dir)
        try:
            export_graph(graph, folder)
        except Exception as exc:
            raise RuntimeUnavailable(
                f"exporting {graph.cache_key} to ONNX failed ({type(exc).__name__}: {first_line(exc)[:300]}); "
                "use runtime='torch' for this model",
                param="runtime",
            ) from exc

    return cached_artifact(settings.onnx_cache_dir / graph.cache_key, GRAPH_FILE, export)


class OnnxEncoder:
    """An ONNX Runtime session over a cached graph."""

    runtime = "onnx"

    def __init__(self, path: Path, device: str, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise RuntimeUnavailable("runtime 'onnx' needs onnxruntime: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.path = path
        self.device = device

    @classmethod
    def from_graph(cls, graph: GraphSpec, device: str, settings: Settings) -> OnnxEncoder:
        return cls(cached_graph(graph, settings), device, settings.threads())

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self.session.run(None, {n: feeds[n] for n in self.input_names})[0]
        result: np.ndarray = np.asarray(out, dtype=np.float32)
        return result
