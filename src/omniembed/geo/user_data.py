"""Bring your own data (rs-embed 0.3): embed arrays the caller already has, declared by ``UserData`` (pixels,
collection, band names, where, when), with no backend fetch: ``get_embedding_from_data``,
``get_embeddings_batch_from_data`` and ``list_models_for_data`` (which models a declaration can feed).

The declaration is the contract: its bands are matched to the model's by name (S2 ``B4`` = ``B04`` = ``red``)
and the model's channels are taken in the model's order; a model whose bands or collection the data lacks is
refused with the reason. The array goes through the same region path as fetched rasters (a
``TensorBackend``): with ``crs`` + ``transform`` it is read on its own grid (the region: ``spatial``, else
its footprint), without them it is placed on a UTM grid at ``scale_m`` (or the model's) centred on
``spatial`` and fed as it is, pixel for pixel.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.geo.api import (
    _check_modality,
    _check_options,
    _check_output,
    _configured,
    _engine,
    get_embeddings_batch,
    inputs_for_model,
    list_models,
)
from omniembed.geo.backends import TensorBackend
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.geo.preparer import GeoEmbedding
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, TemporalSpec
from omniembed.geo.types import UserData
from omniembed.registry import ModelSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["get_embedding_from_data", "get_embeddings_batch_from_data", "list_models_for_data"]

S2 = "COPERNICUS/S2_SR_HARMONIZED"
COLLECTIONS = {"s2": S2, "sentinel-2": S2, "sentinel2": S2, "s2_sr": S2, "s2_l2a": S2, "copernicus/s2_sr": S2,
               "copernicus/s2_sr_harmonized": S2, "copernicus/s2_harmonized": "COPERNICUS/S2_HARMONIZED",
               "copernicus/s2": "COPERNICUS/S2_HARMONIZED", "s2_toa": "COPERNICUS/S2_HARMONIZED"}
CANONICAL = {S2: ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"),
             "COPERNICUS/S2_HARMONIZED": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11",
                                          "B12")}
_COLOURS = {"coastal": "b1", "blue": "b2", "green": "b3", "red": "b4", "rededge1": "b5", "rededge2": "b6",
            "rededge3": "b7", "nir": "b8", "nir08": "b8a", "rededge4": "b8a", "swir1": "b11", "swir16": "b11",
            "swir2": "b12", "swir22": "b12"}


def collection_id(name: str) -> str:
    """A collection alias (``s2``) as its id; other names as given."""
    return COLLECTIONS.get(name.strip().lower(), name.strip())


def _family(collection: str) -> str:
    return "s2" if collection.upper().startswith("COPERNICUS/S2") else collection.upper()


def band_key(name: str) -> str:
    """S2 band names compared: ``B04`` = ``B4`` = ``red``, ``B8A`` = ``nir08``."""
    key = name.strip().lower().replace("_", "")
    key = _COLOURS.get(key, key)
    m = re.fullmatch(r"b0*(\d+a?)", key)
    return f"b{m[1]}" if m else key


def match(data: UserData, spec: ModelSpec) -> dict[str, Any]:
    """Whether ``data`` can feed ``spec``: ``compatible``, ``reason``, ``bands_used``, ``channel_indices``."""
    out: dict[str, Any] = {"model": spec.name, "compatible": False, "reason": "", "bands_used": [],
                           "channel_indices": []}
    if spec.option("precomputed"):
        out["reason"] = "precomputed product: it serves stored embeddings and embeds no user imagery"
        return out
    raster = inputs_for_model(spec)
    collection = collection_id(data.collection)
    if _family(collection) != _family(raster.collection):
        out["reason"] = f"model reads collection {raster.collection}, the data is {collection}"
        return out
    declared = tuple(data.bands) if data.bands is not None else CANONICAL.get(collection)
    channels = int(np.asarray(data.data).shape[-3])
    if declared is None or len(declared) != channels:
        out["reason"] = (f"declare the bands: {collection} has no canonical order for {channels} channels"
                         if declared is None else f"{channels} channels but the canonical order of {collection} has "
                         f"{len(declared)} bands; declare bands=")
        return out
    keys = {band_key(b): i for i, b in enumerate(declared)}
    missing = [b for b in raster.bands if band_key(b) not in keys]
    if missing:
        out["reason"] = f"the data lacks {missing} (model bands: {list(raster.bands)}; declared: {list(declared)})"
        return out
    idx = [keys[band_key(b)] for b in raster.bands]
    out.update(compatible=True, reason="ok", bands_used=[declared[i] for i in idx], channel_indices=idx,
               declared_bands=list(declared))
    return out


def _utm(lon: float, lat: float) -> str:
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _placed(data: UserData, cube: np.ndarray, bands: Sequence[str], scale: float) -> tuple[TensorBackend, BBox]:
    """A backend holding ``cube`` (frames, bands, rows, cols) and the region that reads all of it as it is."""
    from affine import Affine

    rows, cols = cube.shape[-2:]
    if data.crs is not None and data.transform is not None:
        t = data.transform if isinstance(data.transform, Affine) else Affine(*list(data.transform)[:6])
        xs, ys = (t.c, t.c + t.a * cols), (t.f, t.f + t.e * rows)
        region = BBox(min(xs), min(ys), max(xs), max(ys), crs=str(data.crs))
        return TensorBackend(cube, t, str(data.crs), tuple(bands)), region
    if data.spatial is not None:
        lon0, lat0, lon1, lat1 = data.spatial.lonlat_bounds()
        lon, lat = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    else:
        lon, lat = 0.0, 0.0
    from pyproj import Transformer

    crs = _utm(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0, y0 = math.floor(x - cols * scale / 2), math.ceil(y + rows * scale / 2)
    region = BBox(x0, y0 - rows * scale, x0 + cols * scale, y0, crs=crs)
    return TensorBackend(cube, Affine(scale, 0.0, x0, 0.0, -scale, y0), crs, tuple(bands)), region


def get_embeddings_batch_from_data(
    model: str,
    datas: list[UserData],
    *,
    modality: str | None = None,
    output: OutputSpec | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    input_prep: InputPrepSpec | str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
    **model_kwargs: Any,
) -> list[GeoEmbedding]:
    """Embed each ``UserData`` with ``model``; one embedding per item, in order. Items with the same
    ``temporal`` run together. ``meta["user_input"]`` records the declaration and the channels used."""
    eng = _engine(engine)
    spec, config = _configured(eng, model, model_kwargs)
    if not isinstance(datas, list) or not datas:
        raise ModelRequestInvalid("datas must be a non-empty list[UserData]", param="datas")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ModelRequestInvalid(f"batch_size must be a positive integer, not {batch_size!r}", param="batch_size")
    output = _check_output(output)
    _check_options(spec.name, None, None, {})
    _check_modality(spec, modality)
    raster = inputs_for_model(spec)
    prep = InputPrepSpec.coerce(input_prep)
    if batch_size is not None:
        prep = replace(prep, batch_size=batch_size)
    plans = []
    for i, data in enumerate(datas):
        if not isinstance(data, UserData):
            raise ModelRequestInvalid(f"datas[{i}] is a {type(data).__name__}, not a UserData", param="datas", index=i)
        data.validate()
        found = match(data, spec)
        if not found["compatible"]:
            raise ModelRequestInvalid(f"model {spec.name!r} cannot take this data: {found['reason']}", param="data",
                                      index=i if len(datas) > 1 else None)
        cube = np.asarray(data.data, dtype=np.float32)
        cube = (cube[None] if cube.ndim == 3 else cube)[:, found["channel_indices"]]
        scale = float(data.scale_m or raster.scale_m or 10.0)
        backend, region = _placed(data, cube, raster.bands, scale)
        plans.append((backend, region, found))
    results: list[GeoEmbedding | None] = [None] * len(datas)
    groups: dict[TemporalSpec | None, list[int]] = {}
    for i, data in enumerate(datas):
        groups.setdefault(data.temporal, []).append(i)
    for temporal, members in groups.items():
        by_region = _ByRegion({id(plans[i][1]): plans[i][0] for i in members})
        with _quiet_default_window(temporal):
            embs = get_embeddings_batch(spec.name, spatials=[plans[i][1] for i in members], temporal=temporal,
                                        output=output, backend=by_region, device=device, input_prep=prep,
                                        runtime=runtime, precision=precision, engine=eng)
        for i, emb in zip(members, embs, strict=True):
            found = plans[i][2]
            user = {"source": "user_data", "collection": collection_id(datas[i].collection),
                    "declared_bands": found["declared_bands"], "bands_used": found["bands_used"],
                    "channel_indices": found["channel_indices"], "georeferenced": datas[i].crs is not None}
            extra = {**dict(emb.meta.extra), "user_input": user, "backend": "user_data", "source": "user_data"}
            if config:  # the model settings it ran with (rs-embed's model_config)
                extra["model_config"] = config
            if temporal is None:
                extra["temporal"] = None
            results[i] = GeoEmbedding(emb.data, replace(emb.meta, extra=extra), pooled=emb.pooled)
    return [r for r in results if r is not None]


def get_embedding_from_data(
    model: str,
    data: UserData,
    *,
    modality: str | None = None,
    output: OutputSpec | None = None,
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
    **model_kwargs: Any,
) -> GeoEmbedding:
    """Embed one ``UserData`` with ``model`` (see ``get_embeddings_batch_from_data``)."""
    return get_embeddings_batch_from_data(model, [data], modality=modality, output=output, device=device,
                                          input_prep=input_prep, runtime=runtime, precision=precision,
                                          engine=engine, **model_kwargs)[0]


def list_models_for_data(data: UserData, *, engine: Engine | None = None) -> list[dict[str, Any]]:
    """For every model usable on regions: whether ``data`` can feed it (``compatible``), and why not
    (``reason``), with the channels it would use. Loads no model."""
    data.validate()
    eng = _engine(engine)
    return [match(data, eng.spec(name)) for name in list_models(engine=eng)]


class _ByRegion:
    """A backend that reads each region from its own ``TensorBackend`` (regions told apart by identity)."""

    name = "user_data"

    def __init__(self, by_id: dict[int, TensorBackend]) -> None:
        self.by_id = by_id

    def read(self, spatial: BBox | PointBuffer, temporal: Any, sensor: Any, settings: Any) -> Any:
        return self.by_id[id(spatial)].read(spatial, temporal, sensor, settings)


@contextmanager
def _quiet_default_window(temporal: TemporalSpec | None) -> Iterator[None]:
    """User data carries its own dates (or none): no warning about the default window."""
    with warnings.catch_warnings():
        if temporal is None:
            warnings.filterwarnings("ignore", message="temporal=None")
        yield
