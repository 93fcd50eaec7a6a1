"""The ``gee`` backend: Google Earth Engine through ``earthengine-api`` (``pip install 'omniembed[gee]'``,
then ``earthengine authenticate``). Same interface as the others.

The request is built as plain data first (``build_request``: collection, date and bounds filters, cloud
filter, Earth Engine band names, composite, and the exact output grid: UTM of the region's centre at
``scale_m``), then turned into Earth Engine calls and fetched with ``ee.data.computePixels`` as NumPy
arrays:

- ``ee.Initialize(project=...)`` once per process and project: ``GeeBackend(project=)``, else the
  ``gee_project`` setting (``OMNIEMBED_GEE_PROJECT``), else ``EE_PROJECT``, else ``GOOGLE_CLOUD_PROJECT``,
  else the project of the credentials (as rs-embed). Refused credentials or a missing project are
  ``backend_auth_failed``, with how to authenticate.
- ``computePixels`` answers at most 48 MB (50,331,648 bytes) of uncompressed pixels and 32,768 pixels a
  side: larger grids are fetched in tiles that fit (``plan_tiles``) and stitched; a tile that Earth Engine
  still refuses as too large, or that runs out of memory, is split in two. Quota and rate errors (HTTP 429,
  "Too many concurrent aggregations") are retried with exponential backoff, a bounded number of times.
- Each band's mask is fetched with it (``image.mask()``, one uint8 band per band) and masked pixels
  become NaN.
- Composites, as in the other backends: ``median``, ``mean``; ``first`` = the earliest valid image on top
  (``mosaic()`` puts the last image on top, so the collection is sorted newest first); ``mosaic`` =
  rs-embed's (chronological order, the latest valid image on top); ``frames`` = one frame per acquisition
  date (that day's images mosaicked), ``SensorSpec.frames`` of them evenly spaced when set.
- Colour names (``red``, ``nir``, ``swir1``...) and zero-padded numbers (``B04``) become the
  collection's Earth Engine band names (Sentinel-2, Landsat 4-9 Collection 2 Level 2).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from omniembed.errors import (
    BackendAuthFailed,
    InputTooLarge,
    InputUnreadable,
    OmniEmbedError,
    ParameterInvalid,
    RuntimeUnavailable,
)
from omniembed.geo.backends.base import Grid, Raster, _band_key, unwrap_lon, utm_crs
from omniembed.geo.specs import PointBuffer, SensorSpec, SpatialSpec, TimeWindow
from omniembed.settings import Settings

__all__ = ["GeeBackend", "build_request", "ee_bands", "gee_band", "plan_tiles", "resolve_project", "to_ee"]

MAX_REQUEST_BYTES = 48 * 1024 * 1024  # computePixels: "48MB in uncompressed data per request" (50,331,648 bytes)
MAX_REQUEST_SIDE = 32_768  # "at most 32K pixels in either dimension"
MAX_REQUEST_BANDS = 1024  # "and at most 1024 bands"
BYTES_PER_BAND = 4 + 1  # a float32 value and a uint8 mask per band and pixel
MASK_SUFFIX = "__mask"
CLOUD_PROPERTY = {"COPERNICUS/S2": "CLOUDY_PIXEL_PERCENTAGE", "LANDSAT": "CLOUD_COVER"}
AUTH_HELP = ("Authenticate once with `earthengine authenticate` (or point GOOGLE_APPLICATION_CREDENTIALS at a "
             "service-account key registered for Earth Engine), and name a Google Cloud project with Earth Engine "
             "enabled: OMNIEMBED_GEE_PROJECT, EE_PROJECT or GOOGLE_CLOUD_PROJECT (or GeeBackend(project=...))")

# Earth Engine band names of collections that do not use colour names, with the colour / STAC common names
# that select them. Exact EE names (case and zero padding aside: B04 -> B4) win, then a Landsat collection's own
# numbers (B4 -> SR_B4), then colour names; for S2 through base._band_key, the synonyms the other backends use.
_S2 = (("B1", "coastal"), ("B2", "blue"), ("B3", "green"), ("B4", "red"), ("B5", "rededge1 re1"),
       ("B6", "rededge2 re2"), ("B7", "rededge3 re3"), ("B8", "nir"), ("B8A", "nir08 nirnarrow re4"),
       ("B9", "nir09"), ("B11", "swir1 swir16"), ("B12", "swir2 swir22"))
_OLI = (("SR_B1", "coastal"), ("SR_B2", "blue"), ("SR_B3", "green"), ("SR_B4", "red"), ("SR_B5", "nir nir08"),
        ("SR_B6", "swir1 swir16"), ("SR_B7", "swir2 swir22"), ("ST_B10", "lwir lwir11 thermal"))
_TM = (("SR_B1", "blue"), ("SR_B2", "green"), ("SR_B3", "red"), ("SR_B4", "nir nir08"), ("SR_B5", "swir1 swir16"),
       ("SR_B7", "swir2 swir22"), ("ST_B6", "lwir lwir11 thermal"))
EE_BANDS = ((r"COPERNICUS/S2", _S2), (r"LANDSAT/LC0[89]/C02/T[12]_L2", _OLI),
            (r"LANDSAT/L[TE]0[457]/C02/T[12]_L2", _TM))


def _unpad(name: str) -> str:
    return re.sub(r"^([A-Za-z_]*B)0(\d)$", r"\1\2", name.strip())


def gee_band(collection: str, band: str | int) -> str | int:
    """The Earth Engine selector of a band: its EE name (colour names and ``B04`` translated for known
    collections; others unchanged) or, for a 1-based number, its 0-based index."""
    if isinstance(band, int):
        return band - 1
    table = next((t for pattern, t in EE_BANDS if re.match(pattern, collection.upper())), ())
    if not table:
        return band
    low = _unpad(band).lower()
    found = next((name for name, _ in table if low == name.lower()), None)
    if found is None and table is not _S2:  # Landsat's own numbers: B4 -> SR_B4, B10 -> ST_B10
        found = next((name for name, _ in table if low == name.lower().partition("_")[2]), None)
    key = _band_key(low) if table is _S2 else low  # the S2 synonyms the other backends use (b8 -> nir)
    return found or next((name for name, aliases in table if key in aliases.split()), band)


def ee_bands(collection: str, bands: Sequence[str | int]) -> tuple[list[str | int], list[str]]:
    """(selectors, output names) for ``ImageCollection.select``; numbers are named ``band<n>``."""
    selectors = [gee_band(collection, b) for b in bands]
    names = [s if isinstance(s, str) else f"band{b}" for s, b in zip(selectors, bands, strict=True)]
    if len(set(names)) < len(names):
        raise ParameterInvalid(f"bands {list(bands)} name the same Earth Engine band twice ({names})", param="bands")
    if 2 * len(names) > MAX_REQUEST_BANDS:
        raise ParameterInvalid(f"at most {MAX_REQUEST_BANDS // 2} bands can be read from Earth Engine at once",
                               param="bands")
    return selectors, names


def build_request(spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
                  scale_m: float = 10.0, max_pixels: int = 64_000_000) -> dict[str, Any]:
    """Everything Earth Engine is asked for, as JSON-ready data (no ``ee`` import)."""
    from pyproj import Transformer

    lon0, lat0, lon1, lat1 = spatial.lonlat_bounds()
    west, east = unwrap_lon(lon0, lon1)  # a projected region across ±180: its centre is near 180, not 0
    crs = utm_crs((west + east) / 2, (lat0 + lat1) / 2)
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    if isinstance(spatial, PointBuffer):
        x, y = tr.transform(spatial.lon, spatial.lat)
        minx, miny, maxx, maxy = x - spatial.buffer_m, y - spatial.buffer_m, x + spatial.buffer_m, y + spatial.buffer_m
    else:
        minx, miny, maxx, maxy = tr.transform_bounds(west, lat0, east, lat1, densify_pts=21)
    res = sensor.scale_m or scale_m
    width, height = max(1, round((maxx - minx) / res)), max(1, round((maxy - miny) / res))
    if width * height > max_pixels:
        raise InputTooLarge(f"the region is {width} x {height} pixels at {res:g} m; use a smaller region or a "
                            "coarser scale_m", param="spatial")
    cloud_prop = sensor.option("cloud_property", next(
        (p for prefix, p in CLOUD_PROPERTY.items() if sensor.collection.startswith(prefix)), None))
    selectors, names = ee_bands(sensor.collection, sensor.bands)
    return {
        "collection": sensor.collection,
        "date": [temporal.start.isoformat(), temporal.end.isoformat()] if temporal else None,
        "bounds": [lon0, lat0, lon1, lat1],
        "cloud": {"property": cloud_prop, "max": sensor.cloudy_pct} if sensor.cloudy_pct is not None and cloud_prop
        else None,
        "bands": selectors,
        "names": names,
        "composite": sensor.composite,
        "frames": sensor.frames,
        "grid": {"dimensions": {"width": width, "height": height},
                 "affineTransform": {"scaleX": res, "shearX": 0.0, "translateX": minx,
                                     "shearY": 0.0, "scaleY": -res, "translateY": maxy},
                 "crsCode": crs},
        "fileFormat": "NUMPY_NDARRAY",
    }


def collection(request: dict[str, Any], ee: Any) -> Any:
    """The filtered ``ee.ImageCollection`` of a request, its bands selected (and named)."""
    col = ee.ImageCollection(request["collection"])
    if request["date"]:
        col = col.filterDate(*request["date"])
    col = col.filterBounds(ee.Geometry.Rectangle(request["bounds"]))
    if request["cloud"]:
        col = col.filter(ee.Filter.lte(request["cloud"]["property"], request["cloud"]["max"]))
    if request["bands"]:
        col = col.select(request["bands"], request["names"])
    return col


def composite(col: Any, how: str) -> Any:
    """One ``ee.Image`` of a collection. ``mosaic()`` puts the last image on top: ``first`` sorts newest
    first (the earliest valid pixel wins, as in the other backends), ``mosaic`` oldest first (rs-embed)."""
    if how == "median":
        return col.median()
    if how == "mean":
        return col.mean()
    return col.sort("system:time_start", how == "mosaic").mosaic()


def pixels(image: Any, names: Sequence[str]) -> Any:
    """The image as float32 bands followed by their uint8 masks (1 = valid), named ``<band>__mask``."""
    return image.toFloat().addBands(image.mask().gt(0).toByte().rename([n + MASK_SUFFIX for n in names]))


def to_ee(request: dict[str, Any], ee: Any) -> dict[str, Any]:
    """The whole-grid ``ee.data.computePixels`` argument for a (non-``frames``) request."""
    image = composite(collection(request, ee), request["composite"])
    return {"expression": pixels(image, request["names"]), "fileFormat": request["fileFormat"],
            "grid": request["grid"]}


def plan_tiles(width: int, height: int, bytes_per_pixel: int, max_bytes: int = MAX_REQUEST_BYTES,
               max_side: int = MAX_REQUEST_SIDE) -> list[tuple[int, int, int, int]]:
    """Tiles ``(row, col, height, width)`` of equal size covering the grid, each within both limits."""
    max_px = max(1, max_bytes // bytes_per_pixel)
    side = max(1, min(max_side, math.isqrt(max_px)))
    if width <= side:
        tw, th = width, min(height, max_side, max(1, max_px // width))
    elif height <= side:
        th, tw = height, min(width, max_side, max(1, max_px // height))
    else:
        tw = th = side
    nx, ny = math.ceil(width / tw), math.ceil(height / th)
    tw, th = math.ceil(width / nx), math.ceil(height / ny)
    return [(r, c, min(th, height - r), min(tw, width - c)) for r in range(0, height, th) for c in range(0, width, tw)]


_NOT_FOUND = re.compile(r"asset '[^']*' not found|not found \(does not exist", re.I)
_NO_BAND = re.compile(r"did not match any bands|band .* not found|no band named", re.I)
_AUTH = re.compile(r"authoriz|authenticat|credential|invalid_grant|reauth|no project found|not signed up|"
                   r"not registered|permission.denied|does not have required permission|has not been used in "
                   r"project|quota project|\b40[13]\b", re.I)
_SPLIT = re.compile(r"total request size|pixel grid dimensions|must be less than or equal to|"
                    r"user memory limit exceeded|computation timed out", re.I)
_QUOTA = re.compile(r"\b429\b|too many requests|too many concurrent|quota exceeded|rate limit|resource.exhausted|"
                    r"\b503\b|service unavailable", re.I)


def classify(exc: BaseException) -> str:
    """``collection``, ``band``, ``auth``, ``split``, ``quota`` or ``other``, from Earth Engine's message."""
    text = str(exc)
    for kind, pattern in (("collection", _NOT_FOUND), ("band", _NO_BAND), ("split", _SPLIT), ("auth", _AUTH),
                          ("quota", _QUOTA)):
        if pattern.search(text):
            return kind
    return "other"


def resolve_project(explicit: str | None, settings: Settings) -> str | None:
    for value in (explicit, settings.gee_project, os.environ.get("EE_PROJECT"), os.environ.get("GOOGLE_CLOUD_PROJECT")):
        if value and value.strip():
            return value.strip()
    return None


_INIT_LOCK = threading.Lock()
_CURRENT: dict[int, str | None] = {}  # id(ee module) -> the project it was initialised with here


def initialize(ee: Any, project: str | None) -> None:
    """``ee.Initialize(project=...)`` when this process has not initialised ``ee`` with that project yet
    (Earth Engine holds one project per process: the last one initialised). Without a project, an ``ee``
    that is already initialised (by us or by the caller) is used as it is."""
    with _INIT_LOCK:
        key = id(ee)
        if key in _CURRENT and project in (None, _CURRENT[key]):
            return
        is_initialized = getattr(getattr(ee, "data", None), "is_initialized", None)
        if project is None and callable(is_initialized) and is_initialized():
            _CURRENT[key] = None
            return
        try:
            ee.Initialize(project=project) if project else ee.Initialize()
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}".strip()
            if classify(exc) == "auth" or "project" in str(exc).lower():
                which = f"project {project!r}" if project else "no project was set"
                raise BackendAuthFailed(f"Earth Engine refused to start ({which}): {detail}. {AUTH_HELP}",
                                        param="backend") from None
            raise RuntimeUnavailable(f"Earth Engine could not be initialised: {detail}", param="backend") from None
        _CURRENT[key] = project


def _error(exc: Exception, request: dict[str, Any], attempts: int) -> OmniEmbedError:
    kind, where = classify(exc), request["collection"]
    detail = f"{type(exc).__name__}: {exc}"
    if kind == "collection":
        return ParameterInvalid(f"Earth Engine has no image collection {where!r} this account can read: {detail}",
                                param="sensor")
    if kind == "band":
        return ParameterInvalid(f"a band is not in {where} ({detail}); name Earth Engine bands (e.g. B4, SR_B4), "
                                "colour names (blue, green, red, nir, swir1, swir2) or 1-based numbers", param="bands")
    if kind == "auth":
        return BackendAuthFailed(f"Earth Engine refused the request: {detail}. {AUTH_HELP}", param="backend")
    if kind == "quota":
        return RuntimeUnavailable(f"Earth Engine is over quota or rate limits after {attempts} attempts ({detail}); "
                                  "retry later or read fewer regions at once", param="backend")
    if kind == "split":
        return InputTooLarge(f"Earth Engine could not compute even a small tile of the region ({detail}); use a "
                             "smaller region, fewer bands or a coarser scale_m", param="spatial")
    return InputUnreadable(f"Earth Engine request failed: {detail}", param="backend")


@dataclass(frozen=True)
class GeeBackend:
    """Earth Engine. ``project``: the Cloud project (else settings and environment, see the module doc);
    ``max_attempts``/``backoff_s``: quota retries (delays backoff_s, 2x, 4x... capped at ``max_backoff_s``);
    ``max_request_bytes``/``max_request_side``: computePixels' documented limits."""

    project: str | None = None
    max_attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_request_side: int = MAX_REQUEST_SIDE
    max_split_depth: int = 8
    sleep: Callable[[float], None] = time.sleep
    name: str = "gee"

    def _call(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, retried with exponential backoff while Earth Engine answers with a quota/rate error."""
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:
                if classify(exc) != "quota" or attempt >= self.max_attempts:
                    raise
                self.sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
                attempt += 1

    def fetch(self, ee: Any, expression: Any, grid: dict[str, Any], names: Sequence[str]) -> np.ndarray:
        """(bands, rows, cols) float32, NaN where masked: the grid fetched in tiles within the limits."""
        width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
        out = np.full((len(names), height, width), np.nan, dtype=np.float32)
        for r, c, h, w in plan_tiles(width, height, BYTES_PER_BAND * len(names), self.max_request_bytes,
                                     self.max_request_side):
            self._tile(ee, expression, grid, names, out, r, c, h, w, 0)
        return out

    def _tile(self, ee: Any, expression: Any, grid: dict[str, Any], names: Sequence[str], out: np.ndarray,
              r: int, c: int, h: int, w: int, depth: int) -> None:
        a = grid["affineTransform"]
        shifted = {**a, "translateX": a["translateX"] + c * a["scaleX"] + r * a["shearX"],
                   "translateY": a["translateY"] + c * a["shearY"] + r * a["scaleY"]}
        request = {"expression": expression, "fileFormat": "NUMPY_NDARRAY",
                   "grid": {"dimensions": {"width": w, "height": h}, "affineTransform": shifted,
                            "crsCode": grid["crsCode"]}}
        try:
            arr = self._call(lambda: ee.data.computePixels(request))
        except Exception as exc:
            if classify(exc) != "split" or depth >= self.max_split_depth or h * w <= 1:
                raise
            if h >= w:  # split the longer side in two and try the halves
                halves = [(r, c, h // 2, w), (r + h // 2, c, h - h // 2, w)]
            else:
                halves = [(r, c, h, w // 2), (r, c + w // 2, h, w - w // 2)]
            for part in halves:
                self._tile(ee, expression, grid, names, out, *part, depth + 1)
            return
        arr = np.asarray(arr)
        if arr.shape[:2] != (h, w):
            raise InputUnreadable(f"Earth Engine answered a {arr.shape} array for a {h} x {w} tile", param="backend")
        if arr.dtype.names:
            values = np.stack([arr[n].astype(np.float32) for n in names])
            valid = np.stack([arr[n + MASK_SUFFIX] > 0 for n in names])
        else:  # an unstructured (rows, cols, bands) array: the values, then the masks
            values = np.moveaxis(arr[..., :len(names)].astype(np.float32), -1, 0)
            valid = np.moveaxis(arr[..., len(names):] > 0, -1, 0)
        out[:, r:r + h, c:c + w] = np.where(valid, values, np.float32(np.nan))

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        from affine import Affine

        try:
            import ee
        except ImportError:
            raise RuntimeUnavailable("the gee backend needs earthengine-api: pip install 'omniembed[gee]', then "
                                     "run `earthengine authenticate`; or use backend='local' / 'stac'",
                                     param="backend", hint="pip install 'omniembed[gee]'") from None
        request = build_request(spatial, temporal, sensor, max_pixels=settings.max_image_pixels)
        initialize(ee, resolve_project(self.project, settings))
        try:
            data, dates, sources, names = self._read(ee, request)
        except OmniEmbedError:
            raise
        except Exception as exc:
            raise _error(exc, request, self.max_attempts) from None
        if np.isnan(data).all():
            raise InputUnreadable(f"the region has no valid pixels in {sensor.collection} (all masked)",
                                  param="spatial")
        g = request["grid"]
        a = g["affineTransform"]
        grid = Grid(g["crsCode"], Affine(a["scaleX"], 0.0, a["translateX"], 0.0, a["scaleY"], a["translateY"]),
                    g["dimensions"]["width"], g["dimensions"]["height"])
        bands = tuple(str(b) for b in sensor.bands) if sensor.bands else tuple(names)
        return Raster(data, grid, bands, dates, sources)

    def _read(self, ee: Any, request: dict[str, Any]) -> tuple[np.ndarray, tuple[date | None, ...],
                                                               tuple[str, ...], list[str]]:
        col = collection(request, ee)
        meta = self._call(lambda: ee.Dictionary({"t": col.aggregate_array("system:time_start"),
                                                 "id": col.aggregate_array("system:index")}).getInfo())
        stamps, ids = list(meta.get("t") or []), [str(i) for i in meta.get("id") or []]
        if not ids:
            when = f" between {request['date'][0]} and {request['date'][1]}" if request["date"] else ""
            cloud = f" with {request['cloud']['property']} <= {request['cloud']['max']}" if request["cloud"] else ""
            raise InputUnreadable(f"no image of {request['collection']} covers the region{when}{cloud}; check the "
                                  "region, the dates and the collection", param="spatial")
        names = list(request["names"]) or [str(n) for n in self._call(lambda: col.first().bandNames().getInfo())]
        days = sorted({datetime.fromtimestamp(t / 1000, tz=UTC).date() for t in stamps if t is not None})
        sources = tuple(f"{request['collection']}/{i}" for i in ids)
        if request["composite"] != "frames":
            image = pixels(composite(col, request["composite"]), names)
            return self.fetch(ee, image, request["grid"], names)[None], (days[-1] if days else None,), sources, names
        if request["frames"] is not None and len(days) > request["frames"]:
            days = [days[round(i)] for i in np.linspace(0, len(days) - 1, request["frames"])]
        frames = []
        for day in days:
            one_day = col.filterDate(day.isoformat(), (day + timedelta(days=1)).isoformat())
            frames.append(self.fetch(ee, pixels(composite(one_day, "first"), names), request["grid"], names))
        return np.stack(frames), tuple(days), sources, names
