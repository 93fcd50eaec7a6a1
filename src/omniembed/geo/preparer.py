"""A region of the Earth as an input of the one pipeline, like an audio clip.

``RegionPreparer.prepare`` reads each region through its backend (local, STAC, GEE, tensor), maps the read to
model units (the model's ``RasterInput``) and plans tiles (resize, tile, auto): one encoder row per tile. The
pipeline batches the rows of many regions, encodes them through the model's runtime (ONNX, torch, compiled
bf16) and hands each region's raw outputs to ``finish``, which stitches the tiles' grids and pools them,
the way segments of a clip become rows plus a pooled vector. Image models embed regions too: each tile
becomes an 8-bit true-colour image run through the image model's own preparer, one grid cell per tile.
The pipeline prepares the next chunk of regions (reads, reprojection) while the current one is encoded.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.contract import Prepared, Preparer, normalize
from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo
from omniembed.errors import OmniEmbedError
from omniembed.geo.backends import Raster
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TimeWindow
from omniembed.geo.tiling import Plan, choose_mode, plan_resize, plan_tiles
from omniembed.inputs.raster import RasterInput
from omniembed.pipeline import pool
from omniembed.settings import Settings

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["GRID_DIMS", "GeoEmbedding", "GeoMeta", "RegionCall", "RegionPreparer", "coverage", "jsonable",
           "to_dataarray"]


class GeoMeta(dict[str, Any], EmbeddingMeta):  # a dict first (its methods win), the typed meta second
    """rs-embed's ``Embedding.meta``: a plain ``dict`` of JSON-ready values (``json.dumps(meta)``,
    ``meta["note"] = ...``, ``meta.update(...)``) with omniembed's fields (``model``, ``dim``, ``input`` and
    ``timings`` as dicts, ...) and rs-embed's keys (``type``, ``backend``, ``source``, ``sensor``, ``temporal``,
    ``image_size``, ``grid_hw``, ``cls_removed``, ``input_prep``, ...) side by side, flat.

    It is also the typed ``EmbeddingMeta`` it was made from, as for every other modality: attribute reads
    (``meta.model``, ``meta.input.description``, ``meta.timings.encode_ms``) and ``dataclasses.replace`` give
    the typed values; they do not follow later item assignments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        EmbeddingMeta.__init__(self, *args, **kwargs)
        typed = {k: v for k, v in EmbeddingMeta.to_dict(self).items() if k != "extra"}
        dict.__init__(self, {**typed, **{k: jsonable(v) for k, v in self.extra.items()}})

    @classmethod
    def of(cls, meta: EmbeddingMeta, **extra: Any) -> GeoMeta:
        """``meta`` (typed) as a ``GeoMeta``, with ``extra`` added to its extra keys."""
        fields = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
        fields["extra"] = {**dict(meta.extra), **extra}
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """A plain copy (JSON-ready, as rs-embed's meta), with any keys added since."""
        return copy.deepcopy(dict(self))


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types (tuples stay tuples, as rs-embed's ``grid_hw``): dataclasses and
    mappings become dicts, dates ISO strings, numpy scalars and arrays numbers and lists, anything else
    its string."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return tuple(jsonable(v) for v in value)
    if isinstance(value, (list, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True, eq=False)
class GeoEmbedding(Embedding):
    """An ``Embedding`` whose ``data`` may be a grid ``xarray.DataArray`` (d, y, x); ``pooled`` then holds
    the mean over the grid's cells, so ``.vector`` works for both. ``meta`` is a ``GeoMeta``: rs-embed's
    plain dict, also the typed ``EmbeddingMeta``; as in rs-embed, ``GeoEmbedding(data=..., meta={...})``
    also takes a plain dict. ``read``: the raster the region was read as (``Raster``: (frames, bands, rows,
    cols) raw values, grid, dates), kept only when asked for (``get_embeddings_batch(..., keep_reads=True)``)."""

    meta: Any
    read: Any = dataclasses.field(default=None, repr=False)

    @property
    def dim(self) -> int:
        if isinstance(self.meta, EmbeddingMeta):
            return self.meta.dim
        return int(self.meta.get("dim", self.data.shape[0]))

    def tolist(self) -> list[Any]:
        values = getattr(self.data, "values", self.data)
        result: list[Any] = np.asarray(values).tolist()
        return result

    def to_dict(self) -> dict[str, Any]:
        meta = self.meta.to_dict() if isinstance(self.meta, EmbeddingMeta) else dict(self.meta)
        out: dict[str, Any] = {"embedding": self.tolist(), "meta": meta}
        if self.pooled is not None:
            out["pooled"] = self.pooled.tolist()
        if hasattr(self.data, "dims"):
            da: Any = self.data
            out["grid"] = {"dims": list(da.dims), "crs": da.attrs["crs"], "transform": list(da.attrs["transform"]),
                           "x": da.x.values.tolist(), "y": da.y.values.tolist(),
                           "band": [str(b) for b in da[da.dims[0]].values]}
        return out

    def __repr__(self) -> str:
        model = self.meta.get("model") if isinstance(self.meta, Mapping) else None
        return f"GeoEmbedding(model={model!r}, shape={tuple(self.data.shape)})"


GRID_DIMS = ("d", "y", "x")
"""A grid's dimensions, as in rs-embed: embedding dimension (or product band), rows (north to south), columns."""


def to_dataarray(grid: np.ndarray, raster: Raster, cell_px: tuple[float, float],
                 band_names: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None) -> xr.DataArray:
    """A (D, rows, cols) grid as a DataArray named ``embedding`` (d, y, x), as rs-embed's: ``d`` holds the
    product's band names (precomputed products) or 0..D-1; its attributes are the embedding's meta (as
    rs-embed's) plus ``crs`` and ``transform``. Unlike rs-embed's pixel indices, ``x``/``y`` are the cells'
    centres in the raster's CRS, so the grid sits on the map."""
    import xarray as xr
    from affine import Affine

    t = raster.grid.transform @ Affine.scale(cell_px[1], cell_px[0])
    ys = t.f + t.e * (np.arange(grid.shape[1]) + 0.5)
    xs = t.c + t.a * (np.arange(grid.shape[2]) + 0.5)
    bands = list(band_names) if band_names is not None else list(range(grid.shape[0]))
    attrs = {**(meta or {}), "crs": raster.grid.crs, "transform": tuple(t)[:6]}
    return xr.DataArray(grid.astype(np.float32), dims=GRID_DIMS, coords={"d": bands, "y": ys, "x": xs},
                        name="embedding", attrs=attrs)


def coverage(data: np.ndarray) -> float:
    """The fraction of a read's pixels (frames, bands, rows, cols) that hold data: every band valid (not NaN)
    in at least one frame. A region partly outside the source's rasters has the rest as NaN. A band the source
    lacks altogether (NaN everywhere, which a model such as galileo masks) does not count against it."""
    if data.size == 0:
        return 0.0
    missing = np.isnan(data)
    present = ~missing.all(axis=(0, 2, 3))  # bands with data somewhere
    if not present.any():
        return 0.0
    valid = ~missing[:, present].any(axis=1)  # frames x rows x cols
    return float(valid.any(axis=0).mean())


@dataclass(frozen=True)
class RegionCall:
    """What every region of one call shares: where and how to read, and what to return."""

    source: Any
    """The backend object (``read(spatial, temporal, sensor, settings) -> Raster``)."""
    sensor: SensorSpec
    temporal: TimeWindow | None
    """The resolved window (``TemporalSpec.window()``, or rs-embed's default window)."""
    output: OutputSpec
    prep: InputPrepSpec
    settings: Settings
    keep_reads: bool = False
    """Hand each region's read back on its embedding (``GeoEmbedding.read``), e.g. to save the model's input."""


@dataclass
class _Region:
    """One region's state between its rows' preparation and ``finish``."""

    spatial: BBox | PointBuffer
    raster: Raster
    plan: Plan | None
    """None for a precomputed product (the raster is the grid)."""
    coverage: float = 1.0
    """The fraction of the region's pixels the read holds (``coverage``)."""


def _frames(count: int, want: int) -> np.ndarray:
    """Indices of the frames fed to a model taking ``want`` frames (repeat the last, or pick evenly)."""
    if count == want:
        return np.arange(want)
    if count < want:
        return np.minimum(np.arange(want), count - 1)
    return np.round(np.linspace(0, count - 1, want)).astype(int)


def _coords(raster: Raster, frames: np.ndarray, spatial: Any, temporal: TimeWindow | None) -> dict[str, np.ndarray]:
    """Side inputs of models conditioned on time and place: per frame (year, day of year), falling back to
    the middle of the time window for undated composites; the region centre's (lat, lon); ``has_time`` 0
    when some frame stays undated (the time code is then left out, as upstream)."""
    days = [raster.dates[i] if i < len(raster.dates) else None for i in frames]
    if any(d is None for d in days) and temporal is not None:
        mid = temporal.start + timedelta(days=(temporal.end - temporal.start).days // 2)
        days = [d or mid for d in days]
    lon0, lat0, lon1, lat1 = spatial.lonlat_bounds()
    dated = all(d is not None for d in days)
    when = [[d.year, d.timetuple().tm_yday] if d is not None else [0, 0] for d in days]
    return {"temporal": np.asarray(when, dtype=np.float32),
            "location": np.array([(lat0 + lat1) / 2, (lon0 + lon1) / 2], dtype=np.float32),
            "has_time": np.asarray(1.0 if dated else 0.0, dtype=np.float32)}


def describe_region(spatial: Any, temporal: TimeWindow | None, sensor: SensorSpec, backend: Any) -> str:
    if isinstance(spatial, PointBuffer):
        where = f"point({spatial.lon:.5f},{spatial.lat:.5f})+{spatial.buffer_m:g}m"
    else:
        where = "bbox(" + ",".join(f"{v:.5f}" for v in spatial.bounds) + ")"
    when = f" {temporal.start}..{temporal.end}" if temporal else ""
    return f"{where}{when} {getattr(backend, 'name', backend)}:{sensor.collection}"


class RegionPreparer:
    """Regions -> encoder rows (one per tile) -> ``GeoEmbedding`` (pooled vector or grid).

    ``image`` is an image model's preparer when the model is an image model on RGB composites: each tile is
    then an 8-bit image it prepares, and each tile's vector is one grid cell."""

    streaming = True
    """Read the next chunk of regions while the current one is encoded."""

    def __init__(self, raster: RasterInput, call: RegionCall, image: Preparer | None = None,
                 image_post: tuple[str, bool] = ("mean", False)) -> None:
        self.raster = raster
        self.call = call
        self.image = image
        self.image_post = image_post
        """An image model's own pooling and normalisation of its outputs: each tile's vector is exactly the
        image model's embedding of that tile."""
        self.max_batch_rows = 1 if raster.precomputed else None
        """Precomputed rasters differ in size per region: one per call."""

    def contract(self, options: Any) -> str:
        return self.raster.contract

    def prepare(self, items: Sequence[Any], options: Any) -> list[Any]:
        return [self._one(i, spatial, options) for i, spatial in enumerate(items)]

    def _one(self, index: int, spatial: Any, options: Any) -> Any:
        call, raster = self.call, self.raster
        try:
            read = call.source.read(spatial, call.temporal, call.sensor, call.settings)
        except OmniEmbedError as exc:
            return exc.at_index(index)
        h, w = read.grid.height, read.grid.width
        info = InputInfo("geo", describe_region(spatial, call.temporal, call.sensor, call.source), length=w * h)
        if raster.precomputed:
            return [Prepared({"grid": read.image}, 1, info, item=_Region(spatial, read, None, coverage(read.data)))]
        frames = _frames(read.data.shape[0], raster.frames)
        img = raster.normalize(read.data[frames])
        try:
            mode = choose_mode(call.prep, img.shape[-2], img.shape[-1], raster.input_size, raster.patch,
                               output_mode=call.output.mode)
            plan = plan_resize(img, raster.input_size, raster.patch) if mode == "resize" else \
                plan_tiles(img, raster.input_size, raster.patch, call.prep)
        except OmniEmbedError as exc:
            return exc.at_index(index)
        info = dataclasses.replace(info, padded=plan.padded)
        region = _Region(spatial, read, plan, coverage(read.data))
        if self.image is not None:
            return self._image_rows(index, plan, info, region, options)
        side = _coords(read, frames, spatial, call.temporal) if raster.coords else {}
        return [Prepared({"pixel_values": tile, **side}, 1, info, item=region) for tile in plan.tiles]

    def _image_rows(self, index: int, plan: Plan, info: InputInfo, region: _Region, options: Any) -> Any:
        """Each tile (frames, 3, S, S) in 0..1 as an 8-bit RGB image, prepared by the image model."""
        from PIL import Image

        assert self.image is not None
        images = [Image.fromarray((np.moveaxis(t[0], 0, -1) * 255).round().astype(np.uint8), "RGB")
                  for t in plan.tiles]
        rows = []
        for prepared in self.image.prepare(images, options):
            if isinstance(prepared, OmniEmbedError):
                return prepared.at_index(index)
            assert isinstance(prepared, Prepared)
            rows.append(Prepared(prepared.features, 1, info, item=region))
        return rows

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        if self.image is not None:
            return self.image.collate(batch)
        return {key: np.stack([p.features[key] for p in batch]) for key in batch[0].features}

    def finish(self, rows: Sequence[Prepared], outputs: Sequence[np.ndarray], meta: EmbeddingMeta) -> Embedding:
        """Stitch a region's tile outputs into its grid (D, rows, cols), pool it, and place it on the map."""
        region: _Region = rows[0].item
        output, raster = self.call.output, region.raster
        head = None
        if outputs and isinstance(outputs[0], Mapping):  # a model with a pooled head as well as its grid
            head = np.stack([np.asarray(o["pooled"], np.float32) for o in outputs])  # (tiles, P)
            outputs = [o["grid"] for o in outputs]
        if region.plan is None:  # precomputed: the raster is the grid, one cell per pixel
            grid, cell_px, mode = np.asarray(outputs[0], np.float32), (1.0, 1.0), "none"
        else:
            tiles = np.stack(outputs)
            if self.image is not None:  # an image model: its embedding of each tile is one cell
                pooling, unit = self.image_post
                vectors = pool(tiles, None, pooling)
                tiles = (normalize(vectors) if unit else vectors)[:, :, None, None]
            grid, cell_px, mode = region.plan.assemble(tiles), region.plan.cell_px, region.plan.mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
            flat = grid.reshape(grid.shape[0], -1)
            vector = np.nan_to_num(np.nanmean(flat, axis=1) if output.pooling == "mean" else np.nanmax(flat, axis=1))
        dim = int(grid.shape[0])
        pooled = None
        if output.mode == "pooled" and head is not None:
            # the model's own pooled vector (RemoteCLIP: CLIP's projected image embedding, as rs-embed gives it);
            # several tiles: their mean (or max)
            vector = head.mean(axis=0) if output.pooling == "mean" else head.max(axis=0)
            dim = int(vector.shape[0])
        if output.mode == "grid":
            data: Any = to_dataarray(grid, raster, cell_px, raster.bands if self.raster.precomputed else None)
            pooled = vector.astype(np.float32)
        else:
            data = vector.astype(np.float32)
        h, w = raster.grid.height, raster.grid.width
        meta = dataclasses.replace(
            meta,
            dim=dim,
            pooling=output.pooling if output.mode == "pooled" else "grid",
            preprocessing=f"{self.raster.contract}; input_prep={mode}; read {w}x{h} px at "
            f"{abs(raster.grid.transform.a):g} ({raster.grid.crs}); bands={','.join(raster.bands)}",
            extra={**dict(meta.extra), **self._facts(region, grid, mode)},
        )
        geo = GeoMeta.of(meta)
        if output.mode == "grid":
            data.attrs = {**geo, **data.attrs}  # rs-embed's grid attributes are its meta
        return GeoEmbedding(data, geo, pooled=pooled, read=raster if self.call.keep_reads else None)

    def _facts(self, region: _Region, grid: np.ndarray, mode: str) -> dict[str, Any]:
        """rs-embed's per-region meta keys: the model's input size, the grid's (rows, cols), the read's pixel
        size (m) and (rows, cols), how the region met the input (``input_prep``), and the covered fraction."""
        raster, plan = region.raster, region.plan
        hw = (int(raster.grid.height), int(raster.grid.width))
        facts: dict[str, Any] = {
            "image_size": None if self.raster.precomputed else int(self.raster.input_size),
            "grid_hw": (int(grid.shape[1]), int(grid.shape[2])),
            "scale_m": float(abs(raster.grid.transform.a)),
            "input_hw": hw,
            "coverage": region.coverage,
        }
        prep: dict[str, Any] = {"resolved_mode": mode, "input_hw": hw}
        if plan is not None:
            prep |= {"tile_size": int(self.raster.input_size), "tile_count": int(plan.tiles.shape[0])}
            if plan.mode == "tile":
                cell = plan.cell_px[1]
                prep |= {"tile_stride": int(plan.core * cell), "tile_overlap": int(plan.crop * cell),
                         "stitch_policy": "crop_overlap", "pad_policy": "reflect"}
        else:  # a precomputed product: rs-embed's name for the pixels without data
            facts["nodata_fraction"] = 1.0 - region.coverage
        facts["input_prep"] = prep
        return facts
