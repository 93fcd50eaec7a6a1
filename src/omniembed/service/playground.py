"""The playground: a static page at ``/`` and ``/playground`` (files in ``omniembed/service/static``), and
one small JSON endpoint it needs beyond the public protocols.

- ``GET /`` and ``GET /playground`` answer the page; ``GET /playground/static/{name}`` its scripts and style.
  They hold no data, so they answer without an API key (``is_public``); the page asks for a key and sends it
  with every API call.
- ``GET /playground/api/runtime`` answers, for each model ``/v1/models`` lists, the runtime, device and
  precision this server runs it with (``{"models": [{"model", "runtime", "device", "precision", "loaded"}]}``):
  the loaded model's own where the engine holds it (``loaded: true``), else what the settings resolve to. These
  are per-input facts the page shows, which the OpenAI and TwelveLabs answers do not carry. It needs the key.
- ``GET /playground/api/geo`` and ``POST /playground/api/geo``: the Earth-observation panel (see below and
  docs/service.md); they need the key too.

Every embedding the page shows comes from the public API (``/v1/models``, ``/v1/embeddings``,
``/v1.3/embed``, ``/v1.3/embed/tasks``), so the page is also an example client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import mimetypes
import re
import time
import warnings
from collections.abc import Iterator
from datetime import date
from importlib import resources
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from omniembed.api import Engine, Loaded
from omniembed.contract import LoadedModel
from omniembed.embedding import Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.geo import BBox, OutputSpec, PointBuffer, TemporalSpec
from omniembed.geo.api import get_embedding, inspect_model_input, list_models
from omniembed.geo.files import pca_rgb
from omniembed.registry import ModelSpec
from omniembed.service.errors import NotFound, public_message
from omniembed.service.state import ServiceState, get_state

__all__ = ["is_public", "router"]

router = APIRouter(tags=["playground"], include_in_schema=False)
STATIC_PREFIX = "/playground/static/"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\.(?:html|js|css|svg|png|txt)")
_PAGE_PATHS = frozenset({"/", "/playground", "/playground/"})
# No inline script and no script or style from elsewhere; thumbnails may show blob:, data: or a URL input.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data: http: https:; "
    "media-src 'self' blob: data: http: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """Whether ``path`` is the page or one of its static files (served without an API key)."""
    return path in _PAGE_PATHS or path.startswith(STATIC_PREFIX)


def _read(name: str) -> bytes | None:
    if not _NAME.fullmatch(name):
        return None
    node = resources.files("omniembed.service").joinpath("static", name)
    return node.read_bytes() if node.is_file() else None


@router.get("/", response_class=HTMLResponse)
@router.get("/playground", response_class=HTMLResponse)
@router.get("/playground/", response_class=HTMLResponse)
async def page() -> Response:
    body = await asyncio.to_thread(_read, "index.html")
    assert body is not None, "omniembed/service/static/index.html is missing from the installation"
    return HTMLResponse(body, headers=_HEADERS)


@router.get(STATIC_PREFIX + "{name}")
async def static(name: str) -> Response:
    body = await asyncio.to_thread(_read, name)
    if body is None:
        raise NotFound(f"the playground has no file {name!r}")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media.startswith("text/") or media in ("application/javascript", "image/svg+xml"):
        media += "; charset=utf-8"
    return Response(body, media_type=media, headers=_HEADERS)


def _runtime_of(spec: ModelSpec, engine: Engine, loaded: dict[Loaded, LoadedModel]) -> dict[str, Any]:
    """What ``spec`` runs with: the loaded model's own runtime, device and precision where the engine holds
    it (``loaded: true``; a precomputed product says ``precomputed``), else what the settings and the hardware
    resolve to (``loaded: false``)."""
    planned: Loaded | None = None
    error: str | None = None
    try:
        planned = engine.plan(spec)
    except OmniEmbedError as exc:  # the model cannot run as configured: the page shows why
        error = public_message(exc)
    mine = [model for key, model in loaded.items() if key.model == spec.name]
    chosen = loaded.get(planned) if planned is not None else None
    if chosen is None and mine:
        chosen = mine[-1]  # the one used most recently (the engine fell back from the configured runtime)
    if chosen is not None:
        return {"model": spec.name, "runtime": chosen.runtime, "device": chosen.device,
                "precision": chosen.precision, "loaded": True}
    if planned is None:
        return {"model": spec.name, "runtime": None, "device": None, "precision": None, "loaded": False,
                "error": error}
    return {"model": spec.name, "runtime": planned.runtime, "device": planned.device,
            "precision": planned.precision, "loaded": False}


def _runtimes(state: ServiceState) -> list[dict[str, Any]]:
    loaded = state.engine.loaded()
    return [_runtime_of(s, state.engine, loaded) for s in state.engine.available_specs()]


@router.get("/playground/api/runtime")
async def runtime(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    return {"models": await asyncio.to_thread(_runtimes, state)}


# -- Earth observation ----------------------------------------------------------------------------------------
# ``GET /playground/api/geo``: the geo models whose weights are here, and the operator's named raster sources
# (OMNIEMBED_GEO_SOURCES). ``POST /playground/api/geo``: one region's grid through ``omniembed.geo``'s API, as a
# PCA false-colour PNG, beside an RGB composite of the region read from ``rgb_source``. A request names a source,
# never a path or a URL.


class GeoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    source: str
    """A name in OMNIEMBED_GEO_SOURCES: where the model's input (or a precomputed product) is read."""
    rgb_source: str | None = None
    """A name in OMNIEMBED_GEO_SOURCES with red, green and blue bands (B04, B03, B02), for the composite."""
    bbox: tuple[float, float, float, float] | None = None
    """(west, south, east, north) in degrees."""
    point: tuple[float, float] | None = None
    """(lon, lat) in degrees, with ``buffer_m``."""
    buffer_m: float | None = Field(default=None, gt=0)
    start: date
    end: date
    """Exclusive."""


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _stretch(bands: np.ndarray) -> np.ndarray:
    """(3, H, W) reflectances -> (H, W, 3) uint8, each band 2-98 % stretched; missing pixels black."""
    out = np.zeros((*bands.shape[1:], 3), np.uint8)
    for i, band in enumerate(bands):
        finite = band[np.isfinite(band)]
        if finite.size:
            lo, hi = np.percentile(finite, [2, 98])
            scaled = np.clip((band - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            out[..., i] = np.nan_to_num(scaled * 255).round().astype(np.uint8)
    return out


def _geo_models(engine: Engine) -> list[dict[str, Any]]:
    specs = [engine.spec(name) for name in list_models(engine=engine)]
    return [{"model": s.name, "dimensions": s.dim, "modalities": [str(m) for m in s.modalities]}
            for s in specs if engine.weights_available(s)]


def _rgb_model(engine: Engine) -> str | None:
    """A geo-capable image model: its input contract is the region's RGB composite (read, not loaded)."""
    for name in list_models(engine=engine):
        if Modality.IMAGE in engine.spec(name).modalities:
            return name
    return None


_ABOUT_THE_SOURCE = frozenset({"sensor", "spatial"})
"""The ``param`` of a backend's errors about what it read: its files (``sensor``) or their coverage of the
region (``spatial``)."""


@contextlib.contextmanager
def _reading(field: str, source: str) -> Iterator[None]:
    """Reading the named ``source`` (the request's ``field``): an error about what was read names the source and
    the request's field; the source's folder, a server path, is only ever in the error's log-only ``detail``."""
    try:
        yield
    except OmniEmbedError as exc:
        if exc.param not in _ABOUT_THE_SOURCE:
            raise
        raise type(exc)(f"source {source!r}: {exc.message}", **{**exc.fields(), "param": field}) from exc


def _geo_run(engine: Engine, body: GeoRequest) -> dict[str, Any]:
    sources = engine.settings.geo_sources
    for param, name in (("source", body.source), ("rgb_source", body.rgb_source)):
        if name is not None and name not in sources:
            known = ", ".join(sorted(sources)) or "none (set OMNIEMBED_GEO_SOURCES)"
            raise ParameterInvalid(f"{param} {name!r} is not a named source of this server; it has: {known}",
                                   param=param)
    spatial: BBox | PointBuffer
    if body.bbox is not None and body.point is None:
        spatial = BBox(*body.bbox)
    elif body.point is not None and body.bbox is None and body.buffer_m is not None:
        spatial = PointBuffer(body.point[0], body.point[1], body.buffer_m)
    else:
        raise ParameterInvalid("give either bbox, or point and buffer_m", param="bbox")
    temporal = TemporalSpec.range(body.start, body.end)
    started = time.perf_counter()
    with _reading("source", body.source):
        grid = np.asarray(get_embedding(body.model, spatial=spatial, temporal=temporal, output=OutputSpec.grid(),
                                        backend=f"local:{body.source}", engine=engine).data, np.float32)
    answer: dict[str, Any] = {"model": engine.spec(body.model).name, "dimensions": int(grid.shape[0]),
                              "cells": [int(grid.shape[1]), int(grid.shape[2])], "pca_png": _png(pca_rgb(grid)),
                              "seconds": round(time.perf_counter() - started, 3), "rgb_png": None}
    reader = _rgb_model(engine)
    if body.rgb_source is not None and reader is not None:
        with _reading("rgb_source", body.rgb_source):
            read = inspect_model_input(reader, spatial=spatial, temporal=temporal,
                                       backend=f"local:{body.rgb_source}", return_arrays=True, engine=engine)
        frames = np.stack(read["arrays"])  # (frames, 3, H, W): B04, B03, B02, i.e. red, green, blue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a pixel missing in every frame stays NaN
            answer["rgb_png"] = _png(_stretch(np.nanmedian(frames, axis=0)))
    return answer


@router.get("/playground/api/geo")
async def geo_options(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    models = await asyncio.to_thread(_geo_models, state.engine)
    return {"models": models, "sources": sorted(state.settings.geo_sources)}


@router.post("/playground/api/geo")
async def geo_region(body: GeoRequest, state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    answer: dict[str, Any] = await state.require_batcher().run_sync(_geo_run, state.engine, body)
    return answer
