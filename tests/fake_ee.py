"""A stand-in for the ``ee`` module (earthengine-api) with Earth Engine's documented behaviour, enough for
the gee backend, evaluated locally on synthetic images so results can be checked by value.

What it keeps of the real service (earthengine-api 1.7 source; the REST reference of
``projects.image.computePixels``; the Earth Engine quota guide):

- ``Initialize(credentials='persistent', url=None, cloud_api_key=None, http_transport=None, project=None)``
  raises ``EEException`` with EE's own texts: "Please authorize access ..." without credentials, and
  "ee.Initialize: no project found ..." when neither ``project=`` nor the credentials name one.
- Computation is lazy: an unknown collection or band fails when pixels or info are asked for, with EE's
  messages ("ImageCollection.load: ... not found", "Image.select: Pattern 'X' did not match any bands.").
- ``data.computePixels({"expression", "fileFormat", "grid", "bandIds"})``: NUMPY_NDARRAY only; a request
  over 48 MB of uncompressed pixels (width x height x bytes of each band's type) or over 32,768 px a side
  raises like EE's HTTP 400 ("Total request size (N bytes) must be less than or equal to 50331648 bytes.");
  the answer is a structured array (rows, cols) with one field per band in the band's type, masked pixels
  filled with 0. ``STATE.quota_failures = n``: the next n calls fail with "Too many concurrent
  aggregations." (EE's HTTP 429); ``STATE.memory_limit_px``: larger requests fail with "User memory limit
  exceeded.".
- ``ImageCollection.mosaic()`` puts the last image on top; ``sort(prop, ascending=True)``; ``median``/``mean``
  of valid pixels; masks travel with bands; ``mask()`` is 1 where valid and 0 where not, itself unmasked.

Images are ``FakeImage(index, day, {band: fn})`` where ``fn(x, y)`` gives values at pixel centres in the
request's CRS, or ``(values, valid)``.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

MAX_BYTES = 50_331_648  # "48MB in uncompressed data per request"
MAX_SIDE = 32_768  # "at most 32K pixels in either dimension"
MAX_BANDS = 1024
NO_PROJECT = "ee.Initialize: no project found. Call with project= or see http://goo.gle/ee-auth."
NOT_AUTHORIZED = ("Please authorize access to your Earth Engine account by running\n\nearthengine authenticate\n\n"
                  "in your command line, or ee.Authenticate() in Python, and then retry.")
BYTES = {"uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "float32": 4, "float64": 8}


class EEException(Exception):
    """ee.ee_exception.EEException."""


@dataclass
class State:
    authorized: bool = True
    default_project: str | None = None
    project: str | None = None
    initialized: bool = False
    init_calls: list[str | None] = field(default_factory=list)
    max_bytes: int = MAX_BYTES
    max_side: int = MAX_SIDE
    quota_failures: int = 0
    memory_limit_px: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    catalog: dict[str, list[FakeImage]] = field(default_factory=dict)


STATE = State()

Eval = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class FakeImage:
    """A catalog image: ``bands`` maps a name to ``fn(x, y) -> values`` or ``-> (values, valid)``."""

    index: str
    day: date
    bands: dict[str, Callable[[np.ndarray, np.ndarray], Any]]
    dtype: str = "uint16"
    properties: dict[str, Any] = field(default_factory=lambda: {"CLOUDY_PIXEL_PERCENTAGE": 0.0, "CLOUD_COVER": 0.0})
    _last: dict[str, Any] = field(default_factory=dict, repr=False)

    def resolved(self) -> _Resolved:
        def wrap(name: str, fn: Callable[[np.ndarray, np.ndarray], Any]) -> Eval:
            def ev(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                last = self._last.get(name)  # one request evaluates a band once, however often it is used
                if last is None or last[0] is not x:
                    out = fn(x, y)
                    values, valid = out if isinstance(out, tuple) else (out, np.ones(np.shape(x), bool))
                    last = self._last[name] = (x, (np.broadcast_to(np.asarray(values, np.float64), x.shape),
                                                   np.broadcast_to(valid, x.shape)))
                return last[1]
            return ev

        ms = int(datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC).timestamp() * 1000)
        props = {"system:time_start": ms, "system:index": self.index, **self.properties}
        return _Resolved([(n, self.dtype, wrap(n, f)) for n, f in self.bands.items()], props)


@dataclass
class _Resolved:
    bands: list[tuple[str, str, Eval]]
    props: dict[str, Any]


class ComputedValue:
    def __init__(self, thunk: Callable[[], Any]) -> None:
        self._thunk = thunk

    def getInfo(self) -> Any:
        return _info(self)


def _info(value: Any) -> Any:
    if isinstance(value, ComputedValue):
        return _info(value._thunk())
    if isinstance(value, dict):
        return {k: _info(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_info(v) for v in value]
    return value


def Dictionary(value: dict[str, Any]) -> ComputedValue:
    return ComputedValue(lambda: value)


class Image:
    def __init__(self, thunk: Callable[[], _Resolved]) -> None:
        self._thunk = thunk

    def resolve(self) -> _Resolved:
        return self._thunk()

    def _per_band(self, fn: Callable[[str, str, Eval], tuple[str, str, Eval]]) -> Image:
        return Image(lambda: _Resolved([fn(*b) for b in self.resolve().bands], self.resolve().props))

    def select(self, selectors: Sequence[str | int], names: Sequence[str] | None = None) -> Image:
        def run() -> _Resolved:
            r = self.resolve()
            by_name = {b[0]: b for b in r.bands}
            picked = []
            for s in selectors:
                if isinstance(s, int):
                    if not 0 <= s < len(r.bands):
                        raise EEException(f"Image.select: Band index {s} out of range.")
                    picked.append(r.bands[s])
                elif s in by_name:
                    picked.append(by_name[s])
                else:
                    raise EEException(f"Image.select: Pattern '{s}' did not match any bands.")
            if names is not None:
                picked = [(n, d, e) for n, (_, d, e) in zip(names, picked, strict=True)]
            return _Resolved(picked, r.props)
        return Image(run)

    def toFloat(self) -> Image:
        return self._per_band(lambda n, d, e: (n, "float32", e))

    def toByte(self) -> Image:
        def cast(e: Eval) -> Eval:
            def ev(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                values, valid = e(x, y)
                return np.clip(np.floor(values), 0, 255), valid
            return ev
        return self._per_band(lambda n, d, e: (n, "uint8", cast(e)))

    def mask(self) -> Image:
        def as_mask(e: Eval) -> Eval:
            return lambda x, y: (e(x, y)[1].astype(np.float64), np.ones(x.shape, bool))
        return self._per_band(lambda n, d, e: (n, "float32", as_mask(e)))

    def gt(self, value: float) -> Image:
        def cmp(e: Eval) -> Eval:
            def ev(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                values, valid = e(x, y)
                return (values > value).astype(np.float64), valid
            return ev
        return self._per_band(lambda n, d, e: (n, "uint8", cmp(e)))

    def rename(self, names: Sequence[str]) -> Image:
        def run() -> _Resolved:
            r = self.resolve()
            if len(names) != len(r.bands):
                raise EEException(f"Image.rename: The number of names ({len(names)}) must match the number of bands "
                                  f"({len(r.bands)}).")
            return _Resolved([(n, d, e) for n, (_, d, e) in zip(names, r.bands, strict=True)], r.props)
        return Image(run)

    def addBands(self, other: Image) -> Image:
        def run() -> _Resolved:
            a, b = self.resolve(), other.resolve()
            clash = {n for n, _, _ in a.bands} & {n for n, _, _ in b.bands}
            if clash:
                raise EEException(f"Image.addBands: band names {sorted(clash)} already exist.")
            return _Resolved(a.bands + b.bands, a.props)
        return Image(run)

    def bandNames(self) -> ComputedValue:
        return ComputedValue(lambda: [n for n, _, _ in self.resolve().bands])


def _const(resolved: _Resolved) -> Callable[[], _Resolved]:
    return lambda: resolved


def _ms(text: str) -> int:
    d = date.fromisoformat(text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


class ImageCollection:
    def __init__(self, source: str | Callable[[], list[_Resolved]]) -> None:
        if isinstance(source, str):
            name = source

            def load() -> list[_Resolved]:
                if name not in STATE.catalog:
                    raise EEException(f"ImageCollection.load: ImageCollection asset '{name}' not found (does not "
                                      "exist or caller does not have access).")
                return [img.resolved() for img in STATE.catalog[name]]
            self._thunk = load
        else:
            self._thunk = source

    def images(self) -> list[_Resolved]:
        return self._thunk()

    def _keep(self, pred: Callable[[_Resolved], bool]) -> ImageCollection:
        return ImageCollection(lambda: [r for r in self.images() if pred(r)])

    def filterDate(self, start: str, end: str) -> ImageCollection:
        return self._keep(lambda r: _ms(start) <= r.props["system:time_start"] < _ms(end))

    def filterBounds(self, geometry: Any) -> ImageCollection:
        return self

    def filter(self, predicate: Callable[[_Resolved], bool]) -> ImageCollection:
        return self._keep(predicate)

    def select(self, selectors: Sequence[str | int], names: Sequence[str] | None = None) -> ImageCollection:
        def run() -> list[_Resolved]:
            return [Image(_const(r)).select(selectors, names).resolve() for r in self.images()]
        return ImageCollection(run)

    def sort(self, prop: str, ascending: bool = True) -> ImageCollection:
        return ImageCollection(lambda: sorted(self.images(), key=lambda r: r.props[prop], reverse=not ascending))

    def aggregate_array(self, prop: str) -> ComputedValue:
        return ComputedValue(lambda: [r.props.get(prop) for r in self.images()])

    def first(self) -> Image:
        def run() -> _Resolved:
            imgs = self.images()
            if not imgs:
                raise EEException("Collection.first: Empty collection.")
            return imgs[0]
        return Image(run)

    def _reduce(self, how: str) -> Image:
        def run() -> _Resolved:
            imgs = self.images()
            if not imgs:
                return _Resolved([], {})
            bands = []
            for k, (name, dtype, _) in enumerate(imgs[0].bands):
                evs = [img.bands[k][2] for img in imgs]
                bands.append((name, "float64" if how in ("median", "mean") else dtype, _combine(evs, how)))
            return _Resolved(bands, {})
        return Image(run)

    def mosaic(self) -> Image:
        return self._reduce("mosaic")

    def median(self) -> Image:
        return self._reduce("median")

    def mean(self) -> Image:
        return self._reduce("mean")


def _combine(evs: list[Eval], how: str) -> Eval:
    def ev(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [e(x, y) for e in evs]
        valid = np.any([m for _, m in outs], axis=0)
        if how == "mosaic":  # the last valid image wins
            values = np.zeros(x.shape)
            for v, m in outs:
                values = np.where(m, v, values)
            return values, valid
        stack = np.stack([np.where(m, v, np.nan) for v, m in outs])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmedian(stack, axis=0) if how == "median" else np.nanmean(stack, axis=0)
        return np.nan_to_num(values), valid
    return ev


class Filter:
    @staticmethod
    def lte(prop: str, value: float) -> Callable[[_Resolved], bool]:
        return lambda r: prop in r.props and r.props[prop] <= value


class Geometry:
    @staticmethod
    def Rectangle(coords: Sequence[float], *args: Any, **kwargs: Any) -> tuple[float, ...]:
        return tuple(coords)


def Initialize(credentials: Any = "persistent", url: str | None = None, cloud_api_key: str | None = None,
               http_transport: Any = None, project: str | int | None = None) -> None:
    STATE.init_calls.append(None if project is None else str(project))
    if not STATE.authorized:
        raise EEException(NOT_AUTHORIZED)
    project = project or STATE.default_project
    if not project:
        raise EEException(NO_PROJECT)
    STATE.project, STATE.initialized = str(project), True


def _refuse(message: str) -> None:
    STATE.refused.append(message)
    raise EEException(message)


def compute_pixels(params: dict[str, Any]) -> np.ndarray:
    if not STATE.initialized:
        raise EEException("Earth Engine client library not initialized. See http://goo.gle/ee-auth.")
    unknown = set(params) - {"expression", "fileFormat", "grid", "bandIds", "visualizationOptions", "workloadTag"}
    if unknown:
        raise EEException(f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}")
    if params.get("fileFormat") != "NUMPY_NDARRAY":
        raise AssertionError(f"the gee backend must ask for NUMPY_NDARRAY, not {params.get('fileFormat')!r}")
    grid = params["grid"]
    w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
    a = grid["affineTransform"]
    assert isinstance(w, int) and isinstance(h, int) and w >= 1 and h >= 1 and grid["crsCode"].startswith("EPSG:")
    STATE.requests.append(params)
    if STATE.quota_failures > 0:
        STATE.quota_failures -= 1
        raise EEException("Too many concurrent aggregations.")
    r = params["expression"].resolve()
    bands = [b for b in r.bands if not params.get("bandIds") or b[0] in params["bandIds"]]
    size = w * h * sum(BYTES[d] for _, d, _ in bands)
    if w > STATE.max_side or h > STATE.max_side:
        _refuse(f"Pixel grid dimensions ({w}x{h}) must be less than or equal to {STATE.max_side}.")
    if len(bands) > MAX_BANDS:
        _refuse(f"Number of bands ({len(bands)}) must be less than or equal to {MAX_BANDS}.")
    if size > STATE.max_bytes:
        _refuse(f"Total request size ({size} bytes) must be less than or equal to {STATE.max_bytes} bytes.")
    if STATE.memory_limit_px is not None and w * h > STATE.memory_limit_px:
        _refuse("User memory limit exceeded.")
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x = a["translateX"] + cols * a["scaleX"] + rows * a["shearX"]
    y = a["translateY"] + cols * a["shearY"] + rows * a["scaleY"]
    out = np.zeros((h, w), dtype=[(n, d) for n, d, _ in bands])
    for name, dtype, ev in bands:
        values, valid = ev(x, y)
        out[name] = np.where(valid, values, 0).astype(dtype)
    return out


data = types.SimpleNamespace(computePixels=compute_pixels, is_initialized=lambda: STATE.initialized)


def reset() -> State:
    global STATE
    STATE = State()
    return STATE
