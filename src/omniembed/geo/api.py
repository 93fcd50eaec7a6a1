"""The Earth-observation face: ``get_embedding``, ``get_embeddings_batch``, ``list_models``.

A region and a time window are read by a backend, prepared for the model (resize or tiles), run in
shared batches, and returned as a float32 vector (pooled) or an ``xarray.DataArray`` grid (band, y, x)
with CRS and coordinates that place it on the map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.geo.backends import Raster, get_backend
from omniembed.geo.models import GeoNet, geo_spec_info, load_geo
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from omniembed.geo.tiling import Plan, choose_mode, plan_resize, plan_tiles

if TYPE_CHECKING:
    import xarray as xr

    from omniembed.api import Engine

__all__ = ["GeoEmbedding", "get_embedding", "get_embeddings_batch", "list_models", "to_dataarray"]


class GeoEmbedding(Embedding):
    """An ``Embedding`` whose ``data`` may be a grid ``xarray.DataArray`` (band, y, x); ``pooled`` then holds
    the mean over the grid's cells, so ``.vector`` works for both."""

    def tolist(self) -> list[Any]:
        values = getattr(self.data, "values", self.data)
        result: list[Any] = np.asarray(values).tolist()
        return result

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if hasattr(self.data, "dims"):
            da: Any = self.data
            out["grid"] = {"dims": list(da.dims), "crs": da.attrs["crs"], "transform": list(da.attrs["transform"]),
                           "x": da.x.values.tolist(), "y": da.y.values.tolist(),
                           "band": [str(b) for b in da.band.values]}
        return out


def _engine(engine: Engine | None) -> Engine:
    from omniembed.api import get_engine

    return engine if engine is not None else get_engine()


def list_models(engine: Engine | None = None) -> list[dict[str, Any]]:
    """Every model usable on regions (geo models, precomputed products, image models on RGB composites)
    with its bands, resolution, dimension and pooled/grid support. Imports no ML library."""
    eng = _engine(engine)
    return [geo_spec_info(s) for s in eng.registry if {Modality.GEO, Modality.IMAGE} & set(s.modalities)]


def _resolve_backend(
    backend: Any, sensor: SensorSpec | None, net: GeoNet, sources: dict[str, str]
) -> tuple[Any, SensorSpec]:
    """``sources`` are the named sources of the settings (``OMNIEMBED_GEO_SOURCES``): a name used as
    ``backend="local:NAME"`` or as a sensor collection stands for its folder, file or catalog URL."""
    source = None
    if isinstance(backend, str) and backend.startswith("local:"):
        backend, source = "local", backend[len("local:"):]
        source = sources.get(source, source)
    if sensor is not None and sensor.collection in sources:
        sensor = dataclasses.replace(sensor, collection=sources[sensor.collection])
    if sensor is None:
        collection = source or net.collection
        local = source is not None or backend == "local" or not isinstance(backend, str)  # files/arrays: native res
        if backend == "local" and source is None:
            raise ParameterNotProvided("backend='local' needs the files: pass backend='local:/path/to/folder' or "
                                       "sensor=SensorSpec(collection='/path/to/folder')", param="sensor")
        bands = () if net.precomputed else net.bands
        sensor = SensorSpec(collection, bands=bands, scale_m=None if local else net.scale_m)
    elif not sensor.bands and not net.precomputed:
        sensor = dataclasses.replace(sensor, bands=net.bands)
    if not net.precomputed and len(sensor.bands) != len(net.bands):
        raise ParameterInvalid(f"model {net.name!r} takes {len(net.bands)} bands ({', '.join(net.bands)}); "
                               f"sensor gives {len(sensor.bands)} ({', '.join(map(str, sensor.bands))})",
                               param="bands")
    return get_backend(backend, sensor), sensor


def _frames(count: int, want: int) -> np.ndarray:
    """Indices of the frames fed to a model taking ``want`` frames (repeat the last, or pick evenly)."""
    if count == want:
        return np.arange(want)
    if count < want:
        return np.minimum(np.arange(want), count - 1)
    return np.round(np.linspace(0, count - 1, want)).astype(int)


def _coords(raster: Raster, frames: np.ndarray, spatial: Any, temporal: TemporalSpec | None) -> dict[str, Any]:
    """Side inputs of models conditioned on time and place: per frame (year, day of year), falling back to
    the middle of the time window for undated composites; the region centre's (lat, lon)."""
    from datetime import timedelta

    days = [raster.dates[i] if i < len(raster.dates) else None for i in frames]
    if any(d is None for d in days) and temporal is not None:
        mid = temporal.start + timedelta(days=(temporal.end - temporal.start).days // 2)
        days = [d or mid for d in days]
    lon0, lat0, lon1, lat1 = spatial.lonlat_bounds()
    out: dict[str, Any] = {"location": np.array([(lat0 + lat1) / 2, (lon0 + lon1) / 2], dtype=np.float32)}
    if all(d is not None for d in days):
        out["temporal"] = np.array([[d.year, d.timetuple().tm_yday] for d in days if d], dtype=np.float32)
    return out


def to_dataarray(grid: np.ndarray, raster: Raster, cell_px: tuple[float, float],
                 band_names: Sequence[str] | None = None) -> xr.DataArray:
    """A (D, rows, cols) grid as a DataArray whose ``x``/``y`` are cell centres in the raster's CRS."""
    import xarray as xr
    from affine import Affine

    t = raster.grid.transform @ Affine.scale(cell_px[1], cell_px[0])
    ys = t.f + t.e * (np.arange(grid.shape[1]) + 0.5)
    xs = t.c + t.a * (np.arange(grid.shape[2]) + 0.5)
    bands = list(band_names) if band_names is not None else list(range(grid.shape[0]))
    return xr.DataArray(grid.astype(np.float32), dims=("band", "y", "x"), coords={"band": bands, "y": ys, "x": xs},
                        attrs={"crs": raster.grid.crs, "transform": tuple(t)[:6]})


def _describe(spatial: Any, temporal: TemporalSpec | None, sensor: SensorSpec, backend: Any) -> str:
    if isinstance(spatial, PointBuffer):
        where = f"point({spatial.lon:.5f},{spatial.lat:.5f})+{spatial.buffer_m:g}m"
    else:
        where = "bbox(" + ",".join(f"{v:.5f}" for v in spatial.bounds) + ")"
    when = f" {temporal.start}..{temporal.end}" if temporal else ""
    return f"{where}{when} {getattr(backend, 'name', backend)}:{sensor.collection}"


def _check_spatial(spatial: Any, index: int | None = None) -> None:
    if not isinstance(spatial, (BBox, PointBuffer)):
        raise ParameterInvalid(f"spatial must be a BBox or a PointBuffer, not {type(spatial).__name__}",
                               param="spatial", index=index)


def get_embeddings_batch(
    model: str,
    *,
    spatials: Sequence[BBox | PointBuffer],
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str = "resize",
    engine: Engine | None = None,
    errors: Literal["raise", "return"] = "raise",
    progress: Callable[[int], None] | None = None,
) -> list[Any]:
    """Embed many regions with one loaded model; one result per region, same order. With
    ``errors="return"`` a region that fails (no data, too large) gets its error in its place."""
    if isinstance(spatials, (BBox, PointBuffer)) or not isinstance(spatials, Sequence) or not spatials:
        raise ParameterInvalid("spatials must be a non-empty list of BBox / PointBuffer", param="spatials")
    for i, s in enumerate(spatials):
        _check_spatial(s, i)
    if temporal is not None and not isinstance(temporal, TemporalSpec):
        raise ParameterInvalid("temporal must be a TemporalSpec (TemporalSpec.range / .year) or None",
                               param="temporal")
    output = output or OutputSpec.pooled()
    if not isinstance(output, OutputSpec):
        raise ParameterInvalid("output must be OutputSpec.pooled(...) or OutputSpec.grid(...)", param="output")
    prep = InputPrepSpec.coerce(input_prep)
    eng = _engine(engine)
    net = load_geo(eng, model, device)
    src, sensor = _resolve_backend(backend, sensor, net, eng.settings.geo_sources)
    if output.mode == "grid" and output.scale_m is not None:
        sensor = dataclasses.replace(sensor, scale_m=output.scale_m)
    results: list[Any] = [None] * len(spatials)
    work: list[tuple[int, Raster, Plan]] = []
    for i, spatial in enumerate(spatials):
        try:
            raster = src.read(spatial, temporal, sensor, eng.settings)
            if net.precomputed:
                results[i] = _finish(net, raster, raster.image, (1.0, 1.0), output, "none", spatial, temporal,
                                     sensor, src, False)
                if progress:
                    progress(1)
                continue
            frames = _frames(raster.data.shape[0], net.frames)
            img = net.prepare(raster.data[frames])
            mode = choose_mode(prep, img.shape[-2], img.shape[-1], net.input_size)
            plan = plan_resize(img, net.input_size, net.patch) if mode == "resize" else \
                plan_tiles(img, net.input_size, net.patch, prep)
            if net.coords:
                plan.coords = _coords(raster, frames, spatial, temporal)
            work.append((i, raster, plan))
        except OmniEmbedError as exc:
            if errors == "raise":
                raise exc.at_index(i) if len(spatials) > 1 else exc from None
            results[i] = exc.at_index(i)
    _run_plans(net, [w[2] for w in work], prep.batch_size)
    for i, raster, plan in work:
        assert plan.grids is not None
        grid = plan.assemble(plan.grids)
        results[i] = _finish(net, raster, grid, plan.cell_px, output, plan.mode, spatials[i], temporal, sensor, src,
                             plan.padded)
        if progress:
            progress(1)
    return results


def _run_plans(net: GeoNet, plans: list[Plan], batch_size: int) -> None:
    """Run every tile of every plan through the model in shared batches; outputs land in ``plan.grids``."""
    if not plans or net.run is None:
        return
    index = [(p, k) for p in plans for k in range(len(p.tiles))]
    outputs: list[np.ndarray] = []
    for start in range(0, len(index), batch_size):
        chunk = index[start:start + batch_size]
        batch = np.stack([p.tiles[k] for p, k in chunk])
        if net.coords:
            side = {key: np.stack([p.coords[key] for p, _ in chunk]) for key in ("temporal", "location")
                    if all(key in p.coords for p, _ in chunk)}
            result = net.run(batch, side)
        else:
            result = net.run(batch)
        outputs.extend(np.asarray(result, dtype=np.float32))
    pos = 0
    for p in plans:
        p.grids = np.stack(outputs[pos:pos + len(p.tiles)])
        pos += len(p.tiles)


def _finish(net: GeoNet, raster: Raster, grid: np.ndarray, cell_px: tuple[float, float], output: OutputSpec,
            mode: str, spatial: Any, temporal: TemporalSpec | None, sensor: SensorSpec, src: Any,
            padded: bool) -> Embedding:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        flat = grid.reshape(grid.shape[0], -1)
        vector = np.nan_to_num(np.nanmean(flat, axis=1) if output.pooling == "mean" else np.nanmax(flat, axis=1))
    pooled = None
    if output.mode == "grid":
        data: Any = to_dataarray(grid, raster, cell_px, raster.bands if net.precomputed else None)
        pooled = vector.astype(np.float32)
    else:
        data = vector.astype(np.float32)
    h, w = raster.grid.height, raster.grid.width
    meta = EmbeddingMeta(
        model=net.name,
        model_version=net.version,
        modality=Modality.GEO,
        dim=int(grid.shape[0]),
        pooling=output.pooling if output.mode == "pooled" else "grid",
        normalized=False,
        preprocessing=f"{net.contract}; input_prep={mode}; read {w}x{h} px at {abs(raster.grid.transform.a):g} "
        f"({raster.grid.crs}); bands={','.join(raster.bands)}",
        input=InputInfo("geo", _describe(spatial, temporal, sensor, src), length=w * h, padded=padded),
        runtime="precomputed" if net.precomputed else "torch",
        device=net.device,
    )
    return GeoEmbedding(data, meta, pooled=pooled)


def get_embedding(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str = "resize",
    engine: Engine | None = None,
) -> Embedding:
    """Embed one region: a float32 vector (``OutputSpec.pooled()``, default) or a grid DataArray
    (``OutputSpec.grid()``). ``backend``: ``auto``, ``local`` (``local:/folder`` or sensor collection = a
    path), ``stac``, ``gee``, or a backend object such as ``TensorBackend(array, transform, crs)``."""
    _check_spatial(spatial)
    result: Embedding = get_embeddings_batch(model, spatials=[spatial], temporal=temporal, sensor=sensor,
                                             output=output, backend=backend, device=device, input_prep=input_prep,
                                             engine=engine)[0]
    return result
