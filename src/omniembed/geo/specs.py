"""What to embed: region (``BBox``, ``PointBuffer``), time (``TemporalSpec``), bands (``SensorSpec``,
``FetchSpec``), what comes out (``OutputSpec``) and how the region is fitted to a model (``InputPrepSpec``).

Names, fields, defaults and construction follow rs-embed 0.3: a spec is built without checks and checked by
its ``.validate()``, which the API calls at use; an invalid spec raises ``SpecError`` (a
``ParameterInvalid``) whose ``param`` names the field to change; ``InputPrepSpec``'s is
``InputPrepInvalid``, also a ``ModelError`` as in rs-embed. ``OutputSpec`` alone checks itself on
construction, as in rs-embed. Numbers may be NumPy's, and a year may be a string (``"2022"``), as rs-embed
takes them. Fields that rs-embed has and omniembed does not use are accepted and
documented as such (docs/geo.md, "Coming from rs-embed").
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, overload

from omniembed.geo.errors import InputPrepInvalid, SpecError

__all__ = [
    "DEFAULT_SCALE_M", "DEFAULT_WINDOW", "BBox", "FetchSpec", "InputPrepSpec", "OutputSpec", "PointBuffer",
    "SensorSpec", "SpatialSpec", "TemporalSpec", "TimeWindow",
]

EARTH_RADIUS_M = 6_378_137.0
LONLAT_CRS = ("EPSG:4326", "OGC:CRS84", "WGS84")


def _number(value: Any, name: str) -> float:
    """``value`` as a float: any real number (Python's or NumPy's, as rs-embed compares them), finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise SpecError(f"{name} must be a finite number, not {value!r}", param=name)
    return float(value)


def _integer(value: Any) -> int | None:
    """``value`` as an int where rs-embed's ``int(value)`` takes it without losing anything: an integer
    (Python's or NumPy's), a whole float (``2022.0``) or a string of one (``"2022"``); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return int(f) if math.isfinite(f) and f.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _check_lon_lat(lon: float, lat: float, prefix: str = "") -> None:
    if not -90.0 <= lat <= 90.0:
        raise SpecError(f"Invalid bbox bounds: {prefix}lat must be in [-90, 90] degrees, not {lat}",
                        param=f"{prefix}lat")
    if not -180.0 <= lon <= 180.0:
        raise SpecError(f"Invalid bbox bounds: {prefix}lon must be in [-180, 180] degrees, not {lon}",
                        param=f"{prefix}lon")


@dataclass(frozen=True)
class BBox:
    """A box ``(minlon, minlat, maxlon, maxlat)`` in lon/lat (EPSG:4326). omniembed also takes a projected
    CRS (e.g. UTM ``EPSG:32651``: the numbers are then metres in it); Web Mercator (EPSG:3857) is refused,
    as in rs-embed: its metres are not ground metres."""

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float
    crs: str = "EPSG:4326"

    def validate(self) -> None:
        """Raise ``SpecError`` unless the CRS is usable and min < max on both axes."""
        for name in ("minlon", "minlat", "maxlon", "maxlat"):
            _number(getattr(self, name), name)
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise SpecError(f"BBox crs must be a CRS string such as 'EPSG:4326', not {self.crs!r}", param="crs")
        if self.crs.strip().upper() in ("EPSG:3857", "EPSG:900913", "EPSG:102100"):
            raise SpecError("BBox crs must be EPSG:4326 (lon/lat) or a projected CRS with ground metres such as UTM; "
                            "Web Mercator (EPSG:3857) is not accepted", param="crs")
        if self.is_lonlat:
            _check_lon_lat(self.minlon, self.minlat, "min")
            _check_lon_lat(self.maxlon, self.maxlat, "max")
        if not self.minlon < self.maxlon:
            raise SpecError(f"Invalid bbox bounds: minlon ({self.minlon}) must be less than maxlon ({self.maxlon})",
                            param="minlon")
        if not self.minlat < self.maxlat:
            raise SpecError(f"Invalid bbox bounds: minlat ({self.minlat}) must be less than maxlat ({self.maxlat})",
                            param="minlat")

    @property
    def is_lonlat(self) -> bool:
        return self.crs.strip().upper() in LONLAT_CRS

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (float(self.minlon), float(self.minlat), float(self.maxlon), float(self.maxlat))

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
            raise SpecError(f"crs {self.crs!r} is not a CRS pyproj knows: {exc}", param="crs") from None
        bounds: tuple[float, float, float, float] = tr.transform_bounds(*self.bounds, densify_pts=21)
        return bounds

    def to_dict(self) -> dict[str, Any]:
        return {"type": "bbox", "minlon": self.minlon, "minlat": self.minlat, "maxlon": self.maxlon,
                "maxlat": self.maxlat, "crs": self.crs}


@dataclass(frozen=True)
class PointBuffer:
    """A square of half-side ``buffer_m`` metres around a point (``lon``, ``lat`` in degrees, EPSG:4326)."""

    lon: float
    lat: float
    buffer_m: float
    crs: str = "EPSG:4326"

    def validate(self) -> None:
        """Raise ``SpecError`` unless the point is lon/lat and the buffer positive and clear of the poles."""
        for name in ("lon", "lat", "buffer_m"):
            _number(getattr(self, name), name)
        if not isinstance(self.crs, str) or self.crs.strip().upper() not in LONLAT_CRS:
            raise SpecError(f"PointBuffer crs must be EPSG:4326 (lon/lat degrees), not {self.crs!r}", param="crs")
        if not -90.0 <= self.lat <= 90.0:
            raise SpecError(f"lat must be in [-90, 90] degrees, not {self.lat}", param="lat")
        if not -180.0 <= self.lon <= 180.0:
            raise SpecError(f"lon must be in [-180, 180] degrees, not {self.lon}", param="lon")
        if self.buffer_m <= 0:
            raise SpecError(f"buffer_m must be positive (metres), not {self.buffer_m}", param="buffer_m")
        if abs(self.lat) + math.degrees(self.buffer_m / EARTH_RADIUS_M) >= 90.0:
            raise SpecError("the buffer reaches a pole; use a smaller buffer_m or a BBox", param="buffer_m")
        dlon = math.degrees(self.buffer_m / (EARTH_RADIUS_M * math.cos(math.radians(self.lat))))
        if dlon >= 180.0:
            raise SpecError("buffer_m is too large for this latitude; use a BBox", param="buffer_m")

    def to_bbox(self) -> BBox:
        """The square as a lon/lat box (spherical approximation, fine for buffers up to hundreds of km)."""
        dlat = math.degrees(self.buffer_m / EARTH_RADIUS_M)
        dlon = math.degrees(self.buffer_m / (EARTH_RADIUS_M * math.cos(math.radians(self.lat))))
        return BBox(max(-180.0, self.lon - dlon), self.lat - dlat, min(180.0, self.lon + dlon), self.lat + dlat)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        return self.to_bbox().bounds

    def to_dict(self) -> dict[str, Any]:
        return {"type": "point_buffer", "lon": self.lon, "lat": self.lat, "buffer_m": self.buffer_m,
                "crs": self.crs}


SpatialSpec = BBox | PointBuffer


@dataclass(frozen=True)
class TimeWindow:
    """A resolved time window ``[start, end)`` of dates: what backends filter by (a ``TemporalSpec`` after
    ``.window()``)."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


DEFAULT_WINDOW = TimeWindow(date(2022, 6, 1), date(2022, 9, 1))
"""rs-embed's window for ``temporal=None`` (2022-06-01..2022-09-01); the API warns when it uses it."""


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


class _YearAttribute:
    """``TemporalSpec.year``: the factory on the class (``TemporalSpec.year(2022)``), the field on an instance
    (``spec.year == 2022``), as in rs-embed."""

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Callable[[int], TemporalSpec]: ...

    @overload
    def __get__(self, obj: TemporalSpec, owner: type | None = None) -> int | None: ...

    def __get__(self, obj: TemporalSpec | None, owner: type | None = None) -> Any:
        if obj is None:
            return TemporalSpec._of_year
        return obj._year


class TemporalSpec:
    """A time window: ``TemporalSpec.range("2022-06-01", "2022-09-01")`` (``[start, end)``, end exclusive as
    in rs-embed and Earth Engine's ``filterDate``) or ``TemporalSpec.year(2022)``. Fields as in rs-embed:
    ``mode`` (``"range"`` | ``"year"``), ``year``, ``start`` / ``end`` (ISO date strings). Frozen and hashable.
    ``.window()`` gives the dates."""

    __slots__ = ("_year", "end", "mode", "start")
    _year: int | None
    mode: str
    start: str | None
    end: str | None
    year = _YearAttribute()

    def __init__(self, mode: str, year: int | None = None, start: str | date | None = None,
                 end: str | date | None = None) -> None:
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "_year", year)
        object.__setattr__(self, "start", _iso(start))
        object.__setattr__(self, "end", _iso(end))

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _key(self) -> tuple[Any, ...]:
        return (self.mode, self._year, self.start, self.end)

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray, multiprocessing) despite the refusing __setattr__
        return (TemporalSpec, self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemporalSpec) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"TemporalSpec(mode={self.mode!r}, year={self._year!r}, start={self.start!r}, end={self.end!r})"

    @staticmethod
    def _of_year(y: int) -> TemporalSpec:
        return TemporalSpec(mode="year", year=y)

    @staticmethod
    def range(start: str | date, end: str | date) -> TemporalSpec:
        """``[start, end)``: ISO dates ``YYYY-MM-DD`` (or ``date`` objects), end exclusive."""
        return TemporalSpec(mode="range", start=start, end=end)

    def validate(self) -> None:
        """Raise ``SpecError`` unless the fields fit ``mode``."""
        if self.mode == "year":
            if self._year is None:
                raise SpecError("TemporalSpec.year requires year (an integer such as 2022)", param="year")
            year = self._year_number()
            if not 1 <= year <= 9999:
                raise SpecError(f"TemporalSpec.year must be in [1, 9999], not {self._year!r}", param="year")
        elif self.mode == "range":
            if not self.start or not self.end:
                raise SpecError("TemporalSpec.range requires start and end ('YYYY-MM-DD')",
                                param="start" if not self.start else "end")
            start, end = self._date(self.start, "start"), self._date(self.end, "end")
            if start >= end:
                raise SpecError(f"TemporalSpec.range requires start < end (end is exclusive): {start} >= {end}",
                                param="end")
        else:
            raise SpecError(f"Unknown TemporalSpec mode: {self.mode!r} (temporal must be TemporalSpec.range(...) or "
                            "TemporalSpec.year(...))",
                            param="temporal")

    def _year_number(self) -> int:
        """The year as an int: as rs-embed, ``2022``, ``"2022"`` and NumPy integers all name 2022."""
        year = _integer(self._year)
        if year is None:
            raise SpecError(f"TemporalSpec.year requires an integer year such as 2022, not {self._year!r}",
                            param="year")
        return year

    @staticmethod
    def _date(value: Any, name: str) -> date:
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            raise SpecError(f"TemporalSpec.range expects ISO dates 'YYYY-MM-DD'; {name} is {value!r}",
                            param=name) from None

    def window(self) -> TimeWindow:
        """The dates ``[start, end)``: a year is Jan 1 to Jan 1 of the next year. Validates first."""
        self.validate()
        if self.mode == "year":
            year = self._year_number()
            return TimeWindow(date(year, 1, 1), date(year + 1, 1, 1)) if year < 9999 else \
                TimeWindow(date(year, 1, 1), date.max)
        return TimeWindow(self._date(self.start, "start"), self._date(self.end, "end"))

    def contains(self, day: date) -> bool:
        return self.window().contains(day)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "year": self._year, "start": self.start, "end": self.end}


class _DefaultScale(int):
    """rs-embed's default ``scale_m`` (10 m), marked as not chosen by the caller: local files and
    precomputed products are then read at their native resolution."""

    def __repr__(self) -> str:
        return "10"


DEFAULT_SCALE_M: int = _DefaultScale(10)
COMPOSITES = ("median", "mosaic", "mean", "first", "frames")
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")


@dataclass(frozen=True)
class SensorSpec:
    """Which raster to read, with rs-embed's fields and defaults, then omniembed's.

    ``collection``: a backend's collection id, or a file/folder for ``local``; ``bands``: names (S2 ``B04`` and
    colour names ``red`` are synonyms) or 1-based band numbers (omniembed: empty = the model's);
    ``scale_m``: read resolution in metres (10; left at the default, local files and precomputed products
    are read at their native resolution); ``cloudy_pct``: max scene cloud cover; ``composite``:
    ``median`` | ``mosaic`` (latest valid pixel on top) and omniembed's ``mean``, ``first``, ``frames`` (one
    frame per date, for temporal models).

    Accepted for rs-embed code, not used by omniembed: ``fill_value`` (missing pixels stay NaN and each
    model fills them its own way), ``modality`` (see ``get_embedding(modality=)``), ``orbit``,
    ``use_float_linear``, ``s1_require_iw``, ``s1_relax_iw_on_empty`` (Sentinel-1 options), ``check_input``,
    ``check_raise``, ``check_save_dir`` (see ``inspect_model_input``).

    omniembed's: ``nodata`` (overrides the file's), ``resampling``, ``frames`` (with ``composite="frames"``:
    how many, evenly spaced; None: all), ``extra`` (backend options as key/value pairs).
    """

    collection: str
    bands: tuple[str | int, ...] = ()
    scale_m: float | None = DEFAULT_SCALE_M
    cloudy_pct: float | None = 30
    fill_value: float = 0.0
    composite: str = "median"
    modality: str | None = None
    orbit: str | None = None
    use_float_linear: bool = True
    s1_require_iw: bool = True
    s1_relax_iw_on_empty: bool = True
    check_input: bool = False
    check_raise: bool = True
    check_save_dir: str | None = None
    nodata: float | None = None
    resampling: str = "bilinear"
    frames: int | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.bands, (str, int)):
            object.__setattr__(self, "bands", (self.bands,))
        elif isinstance(self.bands, list):
            object.__setattr__(self, "bands", tuple(self.bands))

    @property
    def scale_is_default(self) -> bool:
        """True when ``scale_m`` was left at rs-embed's default (10 m) rather than chosen."""
        return isinstance(self.scale_m, _DefaultScale)

    def validate(self) -> None:
        """Raise ``SpecError`` naming the field that cannot be used."""
        if not isinstance(self.collection, str) or not self.collection.strip():
            raise SpecError("collection must be a non-empty string (a collection id or a path)", param="collection")
        for b in self.bands:
            if isinstance(b, bool) or not isinstance(b, (str, int)) or (isinstance(b, int) and b < 1):
                raise SpecError(f"bands must be names or 1-based band numbers, not {b!r}", param="bands")
        if self.scale_m is not None and _number(self.scale_m, "scale_m") <= 0:
            raise SpecError(f"scale_m must be > 0 metres, not {self.scale_m}", param="scale_m")
        if self.cloudy_pct is not None and not 0 <= _number(self.cloudy_pct, "cloudy_pct") <= 100:
            raise SpecError(f"cloudy_pct must be within 0..100, not {self.cloudy_pct}", param="cloudy_pct")
        if self.composite not in COMPOSITES:
            raise SpecError(f"composite must be one of {', '.join(COMPOSITES)}, not {self.composite!r}",
                            param="composite")
        if self.resampling not in RESAMPLINGS:
            raise SpecError(f"resampling must be one of {', '.join(RESAMPLINGS)}, not {self.resampling!r}",
                            param="resampling")
        if self.frames is not None and (isinstance(self.frames, bool) or not isinstance(self.frames, int)
                                        or self.frames < 1):
            raise SpecError(f"frames must be a positive integer, not {self.frames!r}", param="frames")

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)

    def with_fetch(self, fetch: FetchSpec | None) -> SensorSpec:
        """This sensor with ``fetch``'s non-None fields applied."""
        if fetch is None:
            return self
        changes = {k: v for k, v in dataclasses.asdict(fetch).items() if v is not None}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FetchSpec:
    """A light override of the model's default sensor (rs-embed): ``scale_m``, ``cloudy_pct``,
    ``fill_value``, ``composite``; None keeps the model's. Pass as ``get_embedding(fetch=...)``."""

    scale_m: float | None = None
    cloudy_pct: float | None = None
    fill_value: float | None = None
    composite: str | None = None

    def validate(self) -> None:
        if self.scale_m is not None and _number(self.scale_m, "scale_m") <= 0:
            raise SpecError(f"scale_m must be > 0 metres, not {self.scale_m}", param="scale_m")
        if self.cloudy_pct is not None and not 0 <= _number(self.cloudy_pct, "cloudy_pct") <= 100:
            raise SpecError(f"cloudy_pct must be within 0..100, not {self.cloudy_pct}", param="cloudy_pct")
        if self.composite is not None and self.composite not in COMPOSITES:
            raise SpecError(f"composite must be one of {', '.join(COMPOSITES)}, not {self.composite!r}",
                            param="composite")


_NO_SCALE = ("OutputSpec.scale_m is no longer supported (as in rs-embed). Use fetch=FetchSpec(scale_m=...) or "
             "SensorSpec(scale_m=...) to choose the read resolution.")


def _no_kwargs(kwargs: dict[str, object], where: str) -> None:
    if "scale_m" in kwargs:
        raise SpecError(_NO_SCALE, param="scale_m")
    if kwargs:
        raise SpecError(f"Unexpected {where} keyword(s): {', '.join(sorted(kwargs))}", param="output")


@dataclass(frozen=True)
class OutputSpec:
    """``OutputSpec.pooled(pooling="mean"|"max")``: one float32 vector; ``OutputSpec.grid()``: an
    ``xarray.DataArray`` (d, y, x) with CRS and coordinates. Checked on construction (as in rs-embed).
    ``grid_orientation``: ``north_up`` or ``native``; omniembed's grids are always north-up (row 0 is the
    northern edge), so both give the same grid."""

    mode: Literal["pooled", "grid"]
    pooling: Literal["mean", "max"] = "mean"
    grid_orientation: Literal["north_up", "native"] = "north_up"

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "pooled"):
            raise SpecError(f"Unknown output mode: {self.mode!r} (expected 'grid' or 'pooled')", param="output")
        if self.pooling not in ("mean", "max"):
            raise SpecError(f"Unknown pooling: {self.pooling!r} (expected 'mean' or 'max')", param="pooling")
        if self.grid_orientation not in ("north_up", "native"):
            raise SpecError(f"Unknown grid_orientation: {self.grid_orientation!r} (expected 'north_up' or 'native')",
                            param="grid_orientation")

    @staticmethod
    def pooled(pooling: Literal["mean", "max"] = "mean", **kwargs: object) -> OutputSpec:
        _no_kwargs(kwargs, "OutputSpec.pooled()")
        return OutputSpec(mode="pooled", pooling=pooling)

    @staticmethod
    def grid(*, grid_orientation: Literal["north_up", "native"] = "north_up", **kwargs: object) -> OutputSpec:
        _no_kwargs(kwargs, "OutputSpec.grid()")
        return OutputSpec(mode="grid", grid_orientation=grid_orientation)

    def validate(self) -> None:
        """Checked on construction; kept for symmetry with the other specs."""
        OutputSpec.__post_init__(self)


INPUT_PREP_MODES = ("resize", "tile", "auto")


@dataclass(frozen=True)
class InputPrepSpec:
    """How a region meets a model's fixed input size (rs-embed's fields, then omniembed's).

    ``mode``: ``tile`` (the dataclass default, as in rs-embed: ``InputPrepSpec(tile_size=...)`` tiles),
    ``resize`` (squeeze the region to one input; the default of ``get_embedding(input_prep=None)``), or
    ``auto`` (tile when the region is more than ``auto_factor`` times the input on a side and at most
    ``max_tiles`` tiles are needed, else resize). ``tile_size``: None or the model's input size.
    ``tile_stride``: pixels between tile origins (None: one cell of overlap on each side); the overlap is
    cropped symmetrically when grids are stitched (rounded to whole cells), never averaged.
    ``max_tiles``: above it ``tile`` warns and ``auto`` resizes; ``max_tiles_hard``: above it ``tile`` is
    refused (at least ``max_tiles``). ``pad_edges`` and ``tile_snap_frac`` are accepted for rs-embed code:
    omniembed always reflection-pads edge tiles and fits the region to whole cells.

    omniembed's: ``overlap`` (pixels on each side; overrides ``tile_stride``), ``batch_size`` (tiles per
    encoder batch), ``auto_factor``.

    Checked at use (``resolved``), as rs-embed: an unusable value raises ``InputPrepInvalid``, a
    ``ModelError``; ``max_tiles`` below 1 and ``tile_snap_frac`` outside [0, 0.5] are clamped, whole numbers
    given as floats or strings are taken.
    """

    mode: str = "tile"
    tile_size: int | None = None
    tile_stride: int | None = None
    max_tiles: int = 64
    max_tiles_hard: int = 1024
    pad_edges: bool = True
    tile_snap_frac: float = 0.1
    overlap: int | None = None
    batch_size: int = 8
    auto_factor: float = 1.5

    @staticmethod
    def resize() -> InputPrepSpec:
        return InputPrepSpec(mode="resize")

    @staticmethod
    def tile(*, tile_size: int | None = None, tile_stride: int | None = None, max_tiles: int = 64,
             max_tiles_hard: int = 1024, pad_edges: bool = True, tile_snap_frac: float = 0.1) -> InputPrepSpec:
        return InputPrepSpec("tile", tile_size, tile_stride, max_tiles, max_tiles_hard, pad_edges, tile_snap_frac)

    @staticmethod
    def auto(*, tile_size: int | None = None, tile_stride: int | None = None, max_tiles: int = 64,
             max_tiles_hard: int = 1024, pad_edges: bool = True, tile_snap_frac: float = 0.1) -> InputPrepSpec:
        return InputPrepSpec("auto", tile_size, tile_stride, max_tiles, max_tiles_hard, pad_edges, tile_snap_frac)

    @property
    def hard_limit(self) -> int:
        """``max_tiles_hard``, at least ``max_tiles``."""
        return max(self.max_tiles_hard, self.max_tiles)

    def validate(self) -> None:
        """Raise ``InputPrepInvalid`` (a ``ModelError``, as rs-embed raises for ``input_prep``) naming the
        field that cannot be used. Values rs-embed corrects are accepted: see ``resolved``."""
        self.resolved()

    def resolved(self) -> InputPrepSpec:
        """This spec as it is used, after rs-embed's corrections: the mode lower-cased, whole numbers given as
        floats or strings made ints, ``max_tiles`` at least 1, ``tile_snap_frac`` clamped to [0, 0.5] (rs-embed
        clamps both; ``max_tiles_hard`` below ``max_tiles`` counts as ``max_tiles``, see ``hard_limit``).
        Raises ``InputPrepInvalid`` for what cannot be corrected (an unknown mode, a tile size or stride
        below 1, a value that is no number)."""
        mode = self.mode.strip().lower() if isinstance(self.mode, str) else self.mode
        if mode not in INPUT_PREP_MODES:
            raise InputPrepInvalid(f"input_prep mode must be 'resize', 'tile' or 'auto', not {self.mode!r}",
                                      param="input_prep")
        changes: dict[str, Any] = {"mode": mode}
        for name, least in (("tile_size", 1), ("tile_stride", 1), ("overlap", 0), ("max_tiles", None),
                            ("max_tiles_hard", None), ("batch_size", 1)):
            value = getattr(self, name)
            if value is None and name in ("tile_size", "tile_stride", "overlap"):
                continue
            number = _integer(value)
            if number is None or (least is not None and number < least):
                what = "a whole number" if least is None else \
                    ("a non-negative whole number" if least == 0 else "a positive whole number")
                unit = " of pixels" if name in ("tile_size", "tile_stride", "overlap") else ""
                raise InputPrepInvalid(f"input_prep {name} must be {what}{unit}, not {value!r}", param=name)
            changes[name] = number
        changes["max_tiles"] = max(1, changes["max_tiles"])
        for name in ("tile_snap_frac", "auto_factor"):
            try:
                changes[name] = _number(getattr(self, name), name)
            except SpecError as exc:
                raise InputPrepInvalid(f"input_prep {exc.message}", param=name) from None
        if changes["auto_factor"] < 1:
            raise InputPrepInvalid(f"input_prep auto_factor must be >= 1, not {self.auto_factor}", param="auto_factor")
        changes["tile_snap_frac"] = min(0.5, max(0.0, changes["tile_snap_frac"]))
        changes["pad_edges"] = bool(self.pad_edges)
        return dataclasses.replace(self, **changes)

    def overlap_px(self, size: int, patch: int) -> int:
        """The overlap on each side of a ``size`` px tile whose cells are ``patch`` px."""
        if self.overlap is not None:
            return self.overlap
        if self.tile_stride is not None:
            if self.tile_stride > size:
                warnings.warn(f"tile_stride {self.tile_stride} > tile size {size}: tiles are made to touch "
                              "(no gaps)", UserWarning, stacklevel=3)
            return max(0, size - self.tile_stride) // 2
        return patch if size // patch > 2 else 0

    @classmethod
    def coerce(cls, value: InputPrepSpec | str | None) -> InputPrepSpec:
        """``None``: the default, rs-embed's ``InputPrepSpec.tile()`` (a region that is one model input is resized
        to it, a larger one tiled); a mode name; or a spec (``resolved``). Anything else, or an invalid spec,
        raises ``InputPrepInvalid`` (a ``ModelError``, as in rs-embed)."""
        if value is None:
            return cls.tile()
        if isinstance(value, InputPrepSpec):
            return value.resolved()
        if isinstance(value, str):
            if value.strip().lower() not in INPUT_PREP_MODES:
                raise InputPrepInvalid(f"input_prep must be 'resize', 'tile' or 'auto', not {value!r}",
                                          param="input_prep")
            return cls(mode=value.strip().lower())
        raise InputPrepInvalid(f"input_prep must be 'resize', 'tile', 'auto' or an InputPrepSpec, not {value!r}",
                                  param="input_prep")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "tile_size": self.tile_size, "tile_stride": self.tile_stride,
                "overlap": self.overlap, "max_tiles": self.max_tiles, "max_tiles_hard": self.max_tiles_hard}
