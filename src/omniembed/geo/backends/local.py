"""The ``local`` backend: a GeoTIFF/COG file or a folder of them (``SensorSpec(collection=PATH)``).

Files are filtered by footprint (intersecting the region) and date (from tags or the file name), read
onto the region's grid through WarpedVRT (only the blocks needed), and mosaicked or composited. The
``tensor`` backend (a caller's array + transform) reuses the same reader on an in-memory GeoTIFF.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.errors import InputUnreadable, OmniEmbedError, ParameterInvalid
from omniembed.geo.backends.base import (
    Raster,
    composite,
    file_date,
    in_window,
    lon_overlap,
    read_into,
    select_bands,
    target_grid,
)
from omniembed.geo.specs import SensorSpec, SpatialSpec, TimeWindow
from omniembed.settings import Settings

__all__ = ["LocalBackend", "TensorBackend", "read_datasets"]

SUFFIXES = (".tif", ".tiff", ".vrt")


def _intersects(dataset: Any, spatial: SpatialSpec) -> bool:
    from rasterio.warp import transform_bounds

    try:
        lon0, lat0, lon1, lat1 = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds, densify_pts=21)
    except Exception:
        return True
    a0, b0, a1, b1 = spatial.lonlat_bounds()
    return lat0 < b1 and b0 < lat1 and lon_overlap((lon0, lon1), (a0, a1))


def read_datasets(opened: Sequence[tuple[Any, str]], spatial: SpatialSpec, temporal: TimeWindow | None,
                  sensor: SensorSpec, settings: Settings, where: str,
                  dates: Sequence[date | None] | None = None) -> Raster:
    """Read open rasterio datasets (each with a label) for a region; shared by every file-based backend."""
    chosen: list[tuple[Any, str, date | None]] = []
    for k, (ds, label) in enumerate(opened):
        if dates is not None:
            day, annual = dates[k], False
        else:
            day, annual = file_date(ds.tags(), Path(label).name)
        if in_window(day, annual, temporal) and _intersects(ds, spatial):
            chosen.append((ds, label, day))
    if not chosen:
        when = f" between {temporal.start} and {temporal.end}" if temporal else ""
        raise InputUnreadable(f"no raster of the collection covers the region{when}; check the region, the "
                              "dates and the collection", param="spatial", detail=f"collection: {where}")
    first = chosen[0][0]
    grid, aligned = target_grid(spatial, first.crs, first.transform, sensor.scale_m, settings)
    names = [d or "" for d in first.descriptions]
    numbers = select_bands(sensor.bands, names, chosen[0][1])
    band_names = tuple(names[n - 1] or f"band{n}" for n in numbers)
    stack, days = [], []
    for ds, label, day in chosen:
        same = ds.crs == first.crs and ds.transform.a == first.transform.a and ds.transform.e == first.transform.e
        nums = numbers if ds.count == first.count else select_bands(sensor.bands, list(ds.descriptions), label)
        stack.append(read_into(ds, grid, nums, sensor, aligned and same))
        days.append(day)
    data, frame_dates = composite(stack, days, sensor)
    if np.isnan(data).all():
        raise InputUnreadable("the region has no valid pixels in the collection (all nodata)", param="spatial",
                              detail=f"collection: {where}")
    return Raster(data.astype(np.float32), grid, band_names, frame_dates, tuple(c[1] for c in chosen))


@dataclass(frozen=True)
class LocalBackend:
    """GeoTIFF/COG files: ``sensor.collection`` is a file or a folder (searched recursively).

    With a ``root`` (``backend="local:/folder"``) the files are the root's, and the sensor's collection says
    which of them: a collection id such as ``COPERNICUS/S2_SR_HARMONIZED`` selects the root's subfolder of
    that name (``COPERNICUS/S2_SR_HARMONIZED``, ``COPERNICUS_S2_SR_HARMONIZED`` or ``S2_SR_HARMONIZED``)
    where there is one, else the whole root is read and the id is the read's label, as a script ported
    from Earth Engine expects; a collection that is itself an existing path is read as it is."""

    name: str = "local"
    root: str | None = None

    def path(self, collection: str) -> Path:
        """The file or folder ``collection`` stands for (see the class)."""
        if self.root is None:
            return Path(collection).expanduser()
        root, own = Path(self.root).expanduser(), Path(collection.strip()).expanduser()
        if own == root or own.is_absolute():
            return own
        label = collection.strip().strip("/")
        if label and root.is_dir():
            for name in (label, label.replace("/", "_"), label.rsplit("/", 1)[-1]):
                if ".." not in Path(name).parts and (root / name).exists():
                    return root / name
        return own if label and own.exists() else root

    def files(self, collection: str) -> list[Path]:
        path = self.path(collection)
        if path.is_file():
            return [path]
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            if found:
                return found
            raise InputUnreadable("the collection's folder holds no GeoTIFF (.tif, .tiff, .vrt) files",
                                  param="sensor", detail=f"folder: {path}")
        raise ParameterInvalid("the local collection is not a file or folder; pass backend='local:/path/to/folder' "
                               "or SensorSpec(collection=PATH) with a GeoTIFF or a folder of them", param="sensor",
                               detail=f"collection: {path}")

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        import rasterio

        opened = []
        try:
            where = str(self.path(sensor.collection))
            for f in self.files(sensor.collection):
                try:
                    opened.append((rasterio.open(f), str(f)))
                except Exception as exc:
                    raise InputUnreadable(f"a file of the collection, {f.name!r}, is not a readable raster",
                                          param="sensor", detail=f"{f}: {exc}") from None
            return read_datasets(opened, spatial, temporal, sensor, settings, where)
        finally:
            for ds, _ in opened:
                ds.close()


@dataclass(frozen=True, eq=False)
class TensorBackend:
    """A caller-supplied array ``(bands, rows, cols)`` or ``(frames, bands, rows, cols)`` with its affine
    ``transform`` and ``crs``: pass it as ``backend=TensorBackend(...)``."""

    array: np.ndarray
    transform: Any
    crs: str
    bands: tuple[str, ...] = ()
    nodata: float | None = None
    dates: tuple[date | None, ...] = ()
    name: str = "tensor"

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        from affine import Affine
        from rasterio.io import MemoryFile

        arr = np.asarray(self.array)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[2] < 1 or arr.shape[3] < 1:
            raise ParameterInvalid(f"tensor must be (bands, rows, cols) or (frames, bands, rows, cols), not "
                                   f"{np.asarray(self.array).shape}", param="backend")
        if self.bands and len(self.bands) != arr.shape[1]:
            raise ParameterInvalid(f"{len(self.bands)} band names for {arr.shape[1]} bands", param="backend")
        transform = self.transform if isinstance(self.transform, Affine) else Affine(*list(self.transform)[:6])
        dates = list(self.dates) if self.dates else [None] * arr.shape[0]
        if len(dates) != arr.shape[0]:
            raise ParameterInvalid(f"{len(dates)} dates for {arr.shape[0]} frames", param="backend")
        mems, opened = [], []
        try:
            for frame in arr:
                mem = MemoryFile()
                mems.append(mem)
                dtype = frame.dtype if frame.dtype != np.float64 else np.dtype(np.float32)
                ds = mem.open(driver="GTiff", count=frame.shape[0], height=frame.shape[1], width=frame.shape[2],
                              dtype=dtype.name, crs=self.crs, transform=transform, nodata=self.nodata)
                ds.write(frame.astype(dtype))
                for i, b in enumerate(self.bands, start=1):
                    ds.set_band_description(i, b)
                opened.append((ds, "tensor"))
            return read_datasets(opened, spatial, temporal, sensor, settings, "the tensor", dates=dates)
        except OmniEmbedError:
            raise
        except Exception as exc:
            raise ParameterInvalid(f"the tensor backend could not use this array: {exc}", param="backend") from None
        finally:
            for ds, _ in opened:
                ds.close()
            for mem in mems:
                mem.close()
