"""Raster backends: one small interface (``Backend.read(spatial, temporal, sensor, settings) -> Raster``),
picked by name. ``local`` (files), ``tensor`` (an array), ``stac`` (STAC API or static catalog),
``gee`` (Google Earth Engine, optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.geo.backends.base import Backend, Grid, Raster
from omniembed.geo.backends.gee import GeeBackend
from omniembed.geo.backends.local import LocalBackend, TensorBackend
from omniembed.geo.backends.stac import StacBackend
from omniembed.geo.specs import SensorSpec

__all__ = ["BACKENDS", "Backend", "Grid", "LocalBackend", "Raster", "TensorBackend", "get_backend"]

BACKENDS = ("auto", "local", "stac", "gee", "tensor")


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeUnavailable(f"Earth-observation support needs {', '.join(missing)}: pip install "
                                 "'omniembed[geo]'", param="backend", hint="pip install 'omniembed[geo]'")


def get_backend(backend: Any, sensor: SensorSpec | None) -> Backend:
    """The backend for a name (or a backend object, returned as is). ``auto``: ``local`` when the
    collection is a path that exists, ``stac`` when it is an http(s) URL, else ``gee``."""
    if not isinstance(backend, str):
        _require("rasterio", "pyproj")
        if hasattr(backend, "read"):
            return backend
        raise ParameterInvalid(f"backend must be a name ({', '.join(BACKENDS)}) or a backend object, "
                               f"not {type(backend).__name__}", param="backend")
    name = backend.strip().lower()
    if name == "auto":
        collection = sensor.collection if sensor is not None else ""
        if collection.startswith(("http://", "https://")):
            name = "stac"
        elif collection and Path(collection).expanduser().exists():
            name = "local"
        else:
            name = "gee"
    if name == "local":
        _require("rasterio", "pyproj")
        return LocalBackend()
    if name == "stac":
        _require("rasterio", "pyproj", "pystac", "pystac_client")
        return StacBackend()
    if name == "gee":
        return GeeBackend()
    if name == "tensor":
        raise ParameterInvalid("the tensor backend needs the array: pass backend=TensorBackend(array, transform, crs)",
                               param="backend")
    raise ParameterInvalid(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}", param="backend")
