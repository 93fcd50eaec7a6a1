"""The raster-source interface, the ``Raster`` it returns, and the helpers every backend shares:
the target grid of a region, reading one GeoTIFF/COG into it (WarpedVRT: reprojected, windowed, nodata
masked), band selection by name or number, file dates, and compositing."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.geo.specs import BBox, PointBuffer, SensorSpec, SpatialSpec, TimeWindow
from omniembed.settings import Settings

if TYPE_CHECKING:
    from affine import Affine

__all__ = ["Backend", "Grid", "Raster", "composite", "file_date", "lon_overlap", "read_into", "select_bands",
           "target_grid", "unwrap_lon"]

# Common band-name synonyms: Sentinel-2 numbers and colour names (either may name the same band).
SYNONYMS = {"b02": "blue", "b03": "green", "b04": "red", "b08": "nir", "b8": "nir", "b2": "blue", "b3": "green",
            "b4": "red"}


@dataclass(frozen=True)
class Grid:
    """The pixel grid a region is read onto: CRS, affine transform, size."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


@dataclass
class Raster:
    """What a backend returns: ``data`` (frames, bands, rows, cols) float32 with NaN where no data."""

    data: np.ndarray
    grid: Grid
    bands: tuple[str, ...]
    dates: tuple[date | None, ...]
    sources: tuple[str, ...]

    @property
    def image(self) -> np.ndarray:
        """The first (for composites: the only) frame, (bands, rows, cols)."""
        return self.data[0]


class Backend(Protocol):
    """A raster source: reads a region (and time window) of a sensor's bands onto a grid."""

    @property
    def name(self) -> str: ...

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster: ...


def unwrap_lon(west: float, east: float) -> tuple[float, float]:
    """A longitude range with ``east >= west``: a range given east < west crosses ±180 (STAC, GDAL and pyproj
    write it so), and its east moves on by 360."""
    return (west, east + 360.0) if east < west else (west, east)


def lon_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two longitude ranges (west, east) overlap on the circle: ranges may run past ±180
    (179.5..180.5) or be given across it (179.5..-179.5), and -179.8 is the same meridian as 180.2."""
    (a0, a1), (b0, b1) = unwrap_lon(*a), unwrap_lon(*b)
    if a1 - a0 >= 360.0 or b1 - b0 >= 360.0:
        return True
    return any(a0 + k < b1 and b0 < a1 + k for k in (-360.0, 0.0, 360.0))


def utm_crs(lon: float, lat: float) -> str:
    lon = (lon + 180.0) % 360.0 - 180.0
    zone = min(60, int((lon + 180) // 6) + 1)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def target_grid(spatial: SpatialSpec, src_crs: Any, src_transform: Affine, scale_m: float | None,
                settings: Settings) -> tuple[Grid, bool]:
    """The grid of ``spatial`` at ``scale_m`` (None: native) and whether it is aligned with the source.

    A projected source keeps its CRS; a geographic one is read in the UTM zone of the region's centre.
    When CRS and resolution equal the source's, the region is snapped to the nearest source pixel edges, so
    reading needs no resampling."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    src = CRS.from_user_input(src_crs)
    lon0, lat0, lon1, lat1 = spatial.lonlat_bounds()
    lon0, lon1 = unwrap_lon(lon0, lon1)  # a projected region across ±180
    native = abs(src_transform.a)
    if src.is_projected:
        dst = src
    else:
        dst = CRS.from_user_input(utm_crs((lon0 + lon1) / 2, (lat0 + lat1) / 2))
        native = native * 111_320.0 * math.cos(math.radians((lat0 + lat1) / 2))
    res = float(scale_m) if scale_m else native
    if isinstance(spatial, PointBuffer) and dst.is_projected:  # a square in metres around the projected point
        from pyproj import Transformer

        x, y = Transformer.from_crs("EPSG:4326", dst.to_wkt(), always_xy=True).transform(spatial.lon, spatial.lat)
        b = spatial.buffer_m
        minx, miny, maxx, maxy = x - b, y - b, x + b, y + b
    else:
        if isinstance(spatial, BBox) and not spatial.is_lonlat:
            from_crs, bounds = spatial.crs, spatial.bounds
        else:
            from_crs, bounds = "EPSG:4326", (lon0, lat0, lon1, lat1)
        minx, miny, maxx, maxy = transform_bounds(from_crs, dst, *bounds, densify_pts=21)
    aligned = dst == src and math.isclose(res, abs(src_transform.a)) and math.isclose(res, abs(src_transform.e))
    if aligned:
        x0 = src_transform.c + round((minx - src_transform.c) / res) * res
        y0 = src_transform.f - round((src_transform.f - maxy) / res) * res
        width = max(1, round((maxx - x0) / res))
        height = max(1, round((y0 - miny) / res))
    else:
        x0, y0 = minx, maxy
        width, height = max(1, round((maxx - minx) / res)), max(1, round((maxy - miny) / res))
    if width * height > settings.max_image_pixels:
        raise InputTooLarge(
            f"the region is {width} x {height} pixels at {res:g} m, more than max_image_pixels "
            f"({settings.max_image_pixels}); use a smaller region or a coarser scale_m", param="spatial")
    from affine import Affine

    return Grid(dst.to_string(), Affine(res, 0.0, x0, 0.0, -res, y0), width, height), aligned


def _band_key(name: str) -> str:
    key = name.strip().lower()
    return SYNONYMS.get(key, key)


def select_bands(wanted: Sequence[str | int], available: Sequence[str | None], source: str) -> list[int]:
    """1-based band numbers for ``wanted`` (names, matched case-insensitively with S2/colour synonyms,
    or 1-based numbers); all bands when ``wanted`` is empty."""
    if not wanted:
        return list(range(1, len(available) + 1))
    keys = {_band_key(n): i for i, n in enumerate(available, start=1) if n}
    out = []
    for b in wanted:
        if isinstance(b, int):
            if b > len(available):
                raise ParameterInvalid(f"band {b} does not exist in {source} ({len(available)} bands)", param="bands")
            out.append(b)
        elif _band_key(b) in keys:
            out.append(keys[_band_key(b)])
        else:
            names = ", ".join(n or "?" for n in available)
            raise ParameterInvalid(f"band {b!r} is not in {source} (bands: {names}); name one of these or pass "
                                   "1-based band numbers", param="bands")
    return out


_DATE_RE = re.compile(r"(?<!\d)(\d{4})[-_:]?(\d{2})[-_:]?(\d{2})(?!\d)")
_YEAR_RE = re.compile(r"(?<!\d)(19\d{2}|20\d{2})(?!\d)")


def parse_date(text: str) -> date | None:
    m = _DATE_RE.search(text)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    return None


def file_date(tags: dict[str, str], name: str) -> tuple[date | None, bool]:
    """(date, annual) from a file's tags (DATE_ACQUIRED, datetime, TIFFTAG_DATETIME) or its name
    (YYYY-MM-DD / YYYYMMDD, else a bare year = a whole-year product)."""
    for key in ("DATE_ACQUIRED", "datetime", "DATETIME", "date", "TIFFTAG_DATETIME"):
        if key in tags and (d := parse_date(tags[key])) is not None:
            return d, False
    if (d := parse_date(name)) is not None:
        return d, False
    if (m := _YEAR_RE.search(name)) is not None:
        return date(int(m[1]), 1, 1), True
    return None, False


def in_window(day: date | None, annual: bool, temporal: TimeWindow | None) -> bool:
    if temporal is None or day is None:
        return True
    if annual:
        return temporal.start < date(day.year + 1, 1, 1) and day < temporal.end
    return temporal.contains(day)


def _lon_shifts(dataset: Any) -> list[Any]:
    """The source transforms to read a dataset with: its own, and for a lon/lat raster that runs past ±180
    (179.5..180.5, or 0..360) also the one moved by 360 degrees, so the part past ±180 lands where the
    warper looks for it (it asks a lon/lat source for -179.8, never for 180.2)."""
    transform = dataset.transform
    if dataset.crs is None or not dataset.crs.is_geographic:
        return [transform]
    west, _, east, _ = dataset.bounds
    from affine import Affine

    shifts = [transform]
    if east > 180.0:
        shifts.append(Affine.translation(-360.0, 0.0) @ transform)
    if west < -180.0:
        shifts.append(Affine.translation(360.0, 0.0) @ transform)
    return shifts


def read_into(dataset: Any, grid: Grid, band_numbers: Sequence[int], sensor: SensorSpec, aligned: bool) -> np.ndarray:
    """Read bands of an open rasterio dataset onto ``grid``: (bands, rows, cols) float32, NaN = no data."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    nodata = sensor.nodata if sensor.nodata is not None else dataset.nodata
    resampling = Resampling.nearest if aligned else Resampling[sensor.resampling]
    data: np.ndarray | None = None
    for src_transform in _lon_shifts(dataset):
        try:
            with WarpedVRT(dataset, src_transform=src_transform, crs=grid.crs, transform=grid.transform,
                           width=grid.width, height=grid.height, resampling=resampling, src_nodata=nodata,
                           add_alpha=True) as vrt:
                arr = vrt.read([*band_numbers, vrt.count]).astype(np.float32)
        except Exception as exc:
            raise InputUnreadable(f"could not read {dataset.name}: {type(exc).__name__}: {exc}",
                                  param="sensor") from None
        part, alpha = arr[:-1], arr[-1]
        part[:, alpha == 0] = np.nan
        data = part if data is None else np.where(np.isnan(data), part, data)
    assert data is not None
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        data[data == np.float32(nodata)] = np.nan
    return data


def composite(stack: list[np.ndarray], dates: list[date | None], sensor: SensorSpec) -> tuple[np.ndarray, tuple]:
    """Combine per-file reads (each bands x rows x cols, NaN = none): median, mean, first valid (earliest on
    top), mosaic (latest valid on top), or one mosaicked frame per date (``frames``). Returns (frames, bands,
    rows, cols) and the frames' dates."""
    order = sorted(range(len(stack)), key=lambda i: (dates[i] is None, dates[i] or date.min))
    arrays = [stack[i] for i in order]
    days = [dates[i] for i in order]
    if sensor.composite == "frames":
        frames: dict[object, np.ndarray] = {}  # one frame per date (undated reads: one frame each)
        for k, (day, arr) in enumerate(zip(days, arrays, strict=True)):
            key = day if day is not None else k
            frames[key] = arr if key not in frames else np.where(np.isnan(frames[key]), arr, frames[key])
        keys = list(frames)
        if sensor.frames is not None and len(keys) > sensor.frames:
            keys = [keys[round(i)] for i in np.linspace(0, len(keys) - 1, sensor.frames)]
        return np.stack([frames[k] for k in keys]), tuple(k if isinstance(k, date) else None for k in keys)
    if len(arrays) == 1:
        return arrays[0][None], (days[0],)
    cube = np.stack(arrays)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if sensor.composite == "median":
                out = np.nanmedian(cube, axis=0)
            elif sensor.composite == "mean":
                out = np.nanmean(cube, axis=0)
            else:  # first: the earliest valid pixel on top; mosaic (rs-embed, Earth Engine): the latest
                layers = cube[::-1] if sensor.composite == "mosaic" else cube
                out = layers[0].copy()
                for layer in layers[1:]:
                    out = np.where(np.isnan(out), layer, out)
    return out[None].astype(np.float32), (days[-1],)
