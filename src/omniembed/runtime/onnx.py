"""The ONNX Runtime runtime: export once with torch's exporter, cache on disk, re-use on later starts.

Cache layout: ``<cache_dir>/onnx/<cache_key>/model.onnx`` (plus external data when the exporter writes
any). A graph is exported into a temporary sibling folder and moved into place in one rename, so a
crash mid-export never leaves a half-written graph that a later start would load. On a cache hit the
torch module is never built: the weights are not even read.

Exporting is the slow part of a cold start, so it says so: one line when it starts and one when it is
done, on the ``omniembed.runtime`` logger at INFO (``omniembed serve`` and ``models prepare`` show them).
The exporter's own chatter (onnxscript's and onnx_ir's INFO messages, some 1,000 characters long, and
its print()s) is kept out of the log and off stdout.

No telemetry. ONNX Runtime 1.32's Linux wheel (its POSIX "1DS" telemetry, on by default; macOS's too)
looks up ``mobile.events.data.microsoft.com`` about 6 s after the first session starts and retries on a
back-off (measured here: 5.5, 8, 21, 43 s apart), and keeps an event queue and a device id under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime``. Its only full off switch is the environment variable
``ORT_DISABLE_TELEMETRY=1``, read once, when onnxruntime is imported (set later, or
``onnxruntime.disable_telemetry_events()`` alone, it still looks the host up: measured). So importing
this module (``import omniembed`` does) sets it unless the environment already says otherwise, before
anything here imports onnxruntime; child processes (the server's, Ray's workers) inherit it. Every session
also calls ``disable_telemetry_events()``, which is what is left when onnxruntime was imported first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from omniembed.errors import RuntimeUnavailable
from omniembed.runtime.base import GraphSpec, cached_artifact, export_inputs, first_line, named_outputs
from omniembed.settings import Settings

__all__ = ["TELEMETRY_SWITCH", "OnnxEncoder", "export_graph", "quiet_exporters", "step"]

log = logging.getLogger(__name__)
progress = logging.getLogger("omniembed.runtime")
"""Where the one-off preparation steps are announced (``step``), whichever runtime prepares."""
GRAPH_FILE = "model.onnx"
OPSET = 18
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                    "torch._inductor", "torch.fx.experimental.symbolic_shapes")
"""Loggers of torch's exporters and compilers that report every pass at INFO (onnxscript alone wrote 201
of the 215 lines of a cold ``omniembed serve``)."""
TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"
"""ONNX Runtime's off switch for its telemetry, read when onnxruntime is imported."""
_OPERATOR_CHOICE = os.environ.get(TELEMETRY_SWITCH)
"""The environment's own value, if any: ``ORT_DISABLE_TELEMETRY=0`` is an operator's choice, and kept."""
_IMPORTED_FIRST = "onnxruntime" in sys.modules
"""onnxruntime was imported before omniembed: the switch below comes too late for this process."""
os.environ.setdefault(TELEMETRY_SWITCH, "1")
_warned = False


def _no_telemetry(ort: object) -> None:
    """Turn ONNX Runtime's telemetry events off for this process (unless the environment asked for them),
    and say once when it was imported before omniembed and so still looks up its collector."""
    global _warned
    if _OPERATOR_CHOICE is not None and _OPERATOR_CHOICE.strip().lower() in ("0", "false", "no", "off"):
        return
    ort.disable_telemetry_events()  # type: ignore[attr-defined]
    if _IMPORTED_FIRST and _OPERATOR_CHOICE is None and not _warned:
        _warned = True
        log.warning("onnxruntime was imported before omniembed, so its telemetry could only be muted, not "
                    "turned off: it may still look up its collector. Set %s=1 in the environment to turn it "
                    "off", TELEMETRY_SWITCH)


def quiet_exporters() -> None:
    """Raise the exporters' loggers to WARNING, except those whose level someone has set on purpose."""
    for name in EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _label(cache_key: str) -> str:
    """A graph's cache key as a person reads it: the weights hash and recipe tag dropped (``minilm``)."""
    return re.sub(r"-g\d+$", "", re.sub(r"-[0-9a-f]{12,}(?=-|$)", "", cache_key)) or cache_key


@contextlib.contextmanager
def step(cache_key: str, what: str) -> Iterator[None]:
    """Log ``preparing NAME: WHAT...`` before a one-off build and ``preparing NAME: done in 12.3 s`` after,
    on the ``omniembed.runtime`` logger; the exporters stay quiet meanwhile, and their print()s go to stderr
    (stdout may be the CLI's JSON output)."""
    label = _label(cache_key)
    quiet_exporters()
    started = time.perf_counter()
    progress.info("preparing %s: %s...", label, what)
    with contextlib.redirect_stdout(sys.stderr):
        yield
    progress.info("preparing %s: done in %.1f s", label, time.perf_counter() - started)


def export_graph(graph: GraphSpec, folder: Path) -> None:
    """Export ``graph`` with torch's exporter (dynamic shapes) into ``folder``/model.onnx."""
    import torch

    module = graph.build()
    args, shapes = export_inputs(graph, module)
    quiet_exporters()
    # torch's own logger for the exporter has its own handler and level (torch._logging): its warnings
    # (e.g. "torchvision is not installed. Skipping torchvision::nms", per export) are muted meanwhile.
    torch_onnx = logging.getLogger("torch.onnx")
    level = torch_onnx.level
    torch_onnx.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(folder / GRAPH_FILE),
                input_names=list(graph.input_names),
                output_names=list(graph.output_names),
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        torch_onnx.setLevel(level)


def cached_graph(graph: GraphSpec, settings: Settings) -> Path:
    """Path of the cached ONNX graph for ``graph``, exporting it first when absent."""

    def export(folder: Path) -> None:
        try:
            with step(graph.cache_key, f"exporting to ONNX (once; cached in {settings.onnx_cache_dir})"):
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
            raise RuntimeUnavailable("runtime 'onnx' needs onnxruntime: pip install onnxruntime",
                                     hint="pip install onnxruntime") from exc
        _no_telemetry(ort)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.path = path
        self.device = device

    @classmethod
    def from_graph(cls, graph: GraphSpec, device: str, settings: Settings) -> OnnxEncoder:
        return cls(cached_graph(graph, settings), device, settings.threads())

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the graph, by name."""
        return named_outputs(self.output_names, self.session.run(None, {n: feeds[n] for n in self.input_names}))

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self.session.run(self.output_names[:1], {n: feeds[n] for n in self.input_names})[0]
        result: np.ndarray = np.asarray(out, dtype=np.float32)
        return result
