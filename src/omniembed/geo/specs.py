"""What to embed: region (``BBox``, ``PointBuffer``), time (``TemporalSpec``), bands (``SensorSpec``),
what comes out (``OutputSpec``) and how the region is fitted to a model (``InputPrepSpec``).

All specs validate on construction and raise ``ParameterInvalid`` with a message that says what to
change. Names and call shapes follow rs-embed, so rs-embed code runs after changing the import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from omniembed.errors import ParameterInvalid

__all__ = ["BBox", "InputPrepSpec", "OutputSpec", "PointBuffer", "SensorSpec", "SpatialSpec", "TemporalSpec"]

EARTH_RADIUS_M = 6_378_137.0


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterInvalid(f"{name} must be a finite number, not {value!r}", param=name)
    return float(value)


def _check_lon_lat(lon: float, lat: float, prefix: str = "") -> None:
    if not -90.0 <= lat <= 90.0:
        raise ParameterInvalid(f"{prefix}lat must be between -90 and 90 degrees, not {lat}", param=f"{prefix}lat")
    if not -180.0 <= lon <= 180.0:
        raise ParameterInvalid(f"{prefix}lon must be between -180 and 180 degrees, not {lon}", param=f"{prefix}lon")


@dataclass(frozen=True)
class BBox:
    """A box ``(minlon, minlat, maxlon, maxlat)``; with another ``crs`` the numbers are in its units."""

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        for name in ("minlon", "minlat", "maxlon", "maxlat"):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise ParameterInvalid(f"crs must be a CRS string such as 'EPSG:4326', not {self.crs!r}", param="crs")
        if self.is_lonlat:
            _check_lon_lat(self.minlon, self.minlat, "min")
            _check_lon_lat(self.maxlon, self.maxlat, "max")
        if self.minlon >= self.maxlon:
            raise ParameterInvalid(f"minlon ({self.minlon}) must be less than maxlon ({self.maxlon})", param="minlon")
        if self.minlat >= self.maxlat:
            raise ParameterInvalid(f"minlat ({self.minlat}) must be less than maxlat ({self.maxlat})", param="minlat")

    @property
    def is_lonlat(self) -> bool:
        return self.crs.strip().upper() in ("EPSG:4326", "OGC:CRS84", "WGS84")

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.minlon, self.minlat, self.maxlon, self.maxlat)

    def to_bbox(self) -> BBox:
        return self

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """The box in longitude/latitude (reprojected when ``crs`` is not EPSG:4326)."""
        if self.is_lonlat:
            return self.bounds
        from pyproj import Transformer

        try:
            tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        except Exception as exc:
            raise ParameterInvalid(f"crs {self.crs!r} is not a CRS pyproj knows: {exc}", param="crs") from None
        bounds: tuple[float, float, float, float] = tr.transform_bounds(*self.bounds, densify_pts=21)
        return bounds

    def to_dict(self) -> dict[str, Any]:
        return {"type": "bbox", "minlon": self.minlon, "minlat": self.minlat, "maxlon": self.maxlon,
                "maxlat": self.maxlat, "crs": self.crs}


@dataclass(frozen=True)
class PointBuffer:
    """A square of half-side ``buffer_m`` metres around a point (``lon``, ``lat`` in degrees)."""

    lon: float
    lat: float
    buffer_m: float

    def __post_init__(self) -> None:
        for name in ("lon", "lat", "buffer_m"):
            object.__setattr__(self, name, _number(getattr(self, name), name))
        _check_lon_lat(self.lon, self.lat)
        if self.buffer_m <= 0:
            raise ParameterInvalid(f"buffer_m must be > 0 metres, not {self.buffer_m}", param="buffer_m")
        if abs(self.lat) + math.degrees(self.buffer_m / EARTH_RADIUS_M) >= 90.0:
            raise ParameterInvalid("the buffer reaches a pole; use a smaller buffer_m or a BBox", param="buffer_m")

    def to_bbox(self) -> BBox:
        """The square as a lon/lat box (spherical approximation, fine for buffers up to hundreds of km)."""
        dlat = math.degrees(self.buffer_m / EARTH_RADIUS_M)
        dlon = math.degrees(self.buffer_m / (EARTH_RADIUS_M * math.cos(math.radians(self.lat))))
        if dlon >= 180.0:
            raise ParameterInvalid("buffer_m is too large for this latitude; use a BBox", param="buffer_m")
        return BBox(max(-180.0, self.lon - dlon), self.lat - dlat, min(180.0, self.lon + dlon), self.lat + dlat)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        return self.to_bbox().bounds

    def to_dict(self) -> dict[str, Any]:
        return {"type": "point_buffer", "lon": self.lon, "lat": self.lat, "buffer_m": self.buffer_m}


SpatialSpec = BBox | PointBuffer


def _as_date(value: Any, name: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise ParameterInvalid(f"{name} must be a date 'YYYY-MM-DD', not {value!r}", param=name)


@dataclass(frozen=True)
class TemporalSpec:
    """A time window ``[start, end)`` (end exclusive, as in rs-embed and GEE ``filterDate``)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        start, end = _as_date(self.start, "start"), _as_date(self.end, "end")
        if end <= start:
            raise ParameterInvalid(f"end ({end}) must be after start ({start})", param="end")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def range(cls, start: str | date, end: str | date) -> TemporalSpec:
        return cls(_as_date(start, "start"), _as_date(end, "end"))

    @classmethod
    def year(cls, year: int) -> TemporalSpec:
        if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2200:
            raise ParameterInvalid(f"year must be an integer year such as 2022, not {year!r}", param="year")
        return cls(date(year, 1, 1), date(year + 1, 1, 1))

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


COMPOSITES = ("median", "mean", "first", "frames")
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")


@dataclass(frozen=True)
class SensorSpec:
    """Which raster to read: ``collection`` (a backend's collection id, or a file/folder for ``local``),
    ``bands`` (names, or 1-based band numbers), ``scale_m`` (output resolution, None: native),
    ``cloudy_pct`` (max scene cloud cover), ``composite`` (``median``, ``mean``, ``first``, or
    ``frames``: one frame per acquisition date, for temporal models), ``nodata`` (overrides the file's)."""

    collection: str
    bands: tuple[str | int, ...] = ()
    scale_m: float | None = None
    cloudy_pct: float | None = 30.0
    composite: str = "median"
    nodata: float | None = None
    resampling: str = "bilinear"
    frames: int | None = None
    """With ``composite="frames"``: how many frames (evenly spaced over the dates found); None: all."""
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.collection, str) or not self.collection.strip():
            raise ParameterInvalid("collection must be a non-empty string (a collection id or a path)",
                                   param="collection")
        bands = (self.bands,) if isinstance(self.bands, (str, int)) else tuple(self.bands)
        for b in bands:
            if isinstance(b, bool) or not isinstance(b, (str, int)) or (isinstance(b, int) and b < 1):
                raise ParameterInvalid(f"bands must be names or 1-based band numbers, not {b!r}", param="bands")
        object.__setattr__(self, "bands", bands)
        if self.scale_m is not None and _number(self.scale_m, "scale_m") <= 0:
            raise ParameterInvalid(f"scale_m must be > 0 metres, not {self.scale_m}", param="scale_m")
        if self.cloudy_pct is not None and not 0 <= _number(self.cloudy_pct, "cloudy_pct") <= 100:
            raise ParameterInvalid(f"cloudy_pct must be within 0..100, not {self.cloudy_pct}", param="cloudy_pct")
        if self.composite not in COMPOSITES:
            raise ParameterInvalid(f"composite must be one of {', '.join(COMPOSITES)}, not {self.composite!r}",
                                   param="composite")
        if self.resampling not in RESAMPLINGS:
            raise ParameterInvalid(f"resampling must be one of {', '.join(RESAMPLINGS)}, not {self.resampling!r}",
                                   param="resampling")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ParameterInvalid(f"frames must be a positive integer, not {self.frames!r}", param="frames")

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


@dataclass(frozen=True)
class OutputSpec:
    """``OutputSpec.pooled(pooling="mean"|"max")``: one float32 vector; ``OutputSpec.grid(scale_m=None)``:
    an ``xarray.DataArray`` (band, y, x) with CRS and coordinates."""

    mode: Literal["pooled", "grid"] = "pooled"
    pooling: str = "mean"
    scale_m: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("pooled", "grid"):
            raise ParameterInvalid(f"output mode must be 'pooled' or 'grid', not {self.mode!r}", param="output")
        if self.pooling not in ("mean", "max"):
            raise ParameterInvalid(f"pooling must be 'mean' or 'max', not {self.pooling!r}", param="pooling")
        if self.scale_m is not None and _number(self.scale_m, "scale_m") <= 0:
            raise ParameterInvalid(f"grid scale_m must be > 0 metres, not {self.scale_m}", param="scale_m")

    @classmethod
    def pooled(cls, pooling: str = "mean") -> OutputSpec:
        return cls("pooled", pooling=pooling)

    @classmethod
    def grid(cls, scale_m: float | None = None) -> OutputSpec:
        return cls("grid", scale_m=scale_m)


@dataclass(frozen=True)
class InputPrepSpec:
    """How a region meets a model's fixed input size.

    ``resize`` (default) squeezes the region to the input size; ``tile`` cuts it into input-sized tiles
    overlapping by ``overlap`` pixels (reflection-padded at the edges; overlaps are cropped when grids are
    stitched); ``auto`` tiles when the region is more than ``auto_factor`` times the input on a side.
    ``tile_size`` None: the model's input size. ``max_tiles`` bounds the work of one region."""

    mode: str = "resize"
    tile_size: int | None = None
    overlap: int | None = None
    """Overlap in pixels (None: one grid cell of the model)."""
    max_tiles: int = 64
    batch_size: int = 8
    auto_factor: float = 1.5

    def __post_init__(self) -> None:
        if self.mode not in ("resize", "tile", "auto"):
            raise ParameterInvalid(f"input_prep must be 'resize', 'tile' or 'auto', not {self.mode!r}",
                                   param="input_prep")
        for name in ("tile_size", "overlap"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0 or (name == "tile_size"
                                                                                              and v < 1)):
                raise ParameterInvalid(f"{name} must be a non-negative integer of pixels, not {v!r}", param=name)
        for name in ("max_tiles", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterInvalid(f"{name} must be a positive integer, not {v!r}", param=name)
        if _number(self.auto_factor, "auto_factor") < 1:
            raise ParameterInvalid("auto_factor must be >= 1", param="auto_factor")

    @classmethod
    def coerce(cls, value: InputPrepSpec | str | None) -> InputPrepSpec:
        if value is None:
            return cls()
        if isinstance(value, InputPrepSpec):
            return value
        if isinstance(value, str):
            return cls(mode=value.strip().lower())
        raise ParameterInvalid(f"input_prep must be 'resize', 'tile', 'auto' or an InputPrepSpec, not {value!r}",
                               param="input_prep")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "tile_size": self.tile_size, "overlap": self.overlap, "max_tiles": self.max_tiles}
