"""Regions fanned out to a Ray cluster for ``export_batch(..., engine="ray")`` (or ``engine=RayEngine(...)``).

``chunk_embedder`` returns a drop-in for ``get_embeddings_batch``: each chunk of regions the exporter hands it
is cut into one part per parallel slot, and each part runs as a Ray task on some node, which reads its
rasters and embeds them there with an engine built from the caller's settings (cached per worker process,
so a model loads once per worker). The results come back in order to the exporter, which saves the items
and writes the files and manifests exactly as a local export does, resume included.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from omniembed.api import Engine
from omniembed.errors import ParameterInvalid
from omniembed.geo.api import get_embeddings_batch
from omniembed.ray import RayEngine, connect
from omniembed.ray.stages import build_engine
from omniembed.registry import ModelSpec

__all__ = ["chunk_embedder"]

_engines: dict[str, Engine] = {}
"""Per worker process: one engine per (settings, extra specs), so its loaded models are reused by later tasks."""


def _worker_engine(settings: dict[str, Any], specs: Sequence[ModelSpec]) -> Engine:
    key = json.dumps(settings, sort_keys=True, default=str) + "|" + ",".join(s.name for s in specs)
    if key not in _engines:
        _engines[key] = build_engine(settings, specs)
    return _engines[key]


def _embed_part(settings: dict[str, Any], specs: Sequence[ModelSpec], model: str, kwargs: dict[str, Any]) -> list[Any]:
    """One part of a chunk, on a worker: ``get_embeddings_batch`` with ``errors="return"``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="temporal=None")
        return get_embeddings_batch(model, engine=_worker_engine(settings, specs), **kwargs)


def _resolve(engine: Any) -> RayEngine:
    if isinstance(engine, RayEngine):
        return engine
    if isinstance(engine, str) and engine.strip().lower() == "ray":
        return RayEngine.from_engine(None)
    raise ParameterInvalid(f"engine must be an Engine, a RayEngine or 'ray', not {engine!r}", param="engine")


def chunk_embedder(engine: Any) -> Callable[..., list[Any]]:
    """A function with ``get_embeddings_batch``'s keywords that runs its regions on the Ray cluster."""
    conf = _resolve(engine)
    ray = connect(conf.address)
    task = ray.remote(num_cpus=conf.num_cpus, num_gpus=conf.num_gpus or None)(_embed_part)
    if conf.num_gpus and conf.settings.get("device", "auto") == "auto":
        conf = type(conf)(**{**conf.__dict__, "settings": {**conf.settings, "device": "cuda"}})
    slots = conf.parallelism or max(1, int(ray.cluster_resources().get("CPU", 1) // max(conf.num_cpus, 0.01)))
    settings_ref = ray.put(conf.settings)

    def run(model: str, *, spatials: list[Any], engine: Any = None, **kwargs: Any) -> list[Any]:
        parts = max(1, min(slots, len(spatials)))
        size = -(-len(spatials) // parts)
        pending = [task.remote(settings_ref, conf.specs, model, {**kwargs, "spatials": spatials[s:s + size]})
                   for s in range(0, len(spatials), size)]
        results: list[Any] = []
        for start, part in zip(range(0, len(spatials), size), ray.get(pending), strict=True):
            results += [r.shifted(start) if hasattr(r, "shifted") else r for r in part]
        return results

    return run
