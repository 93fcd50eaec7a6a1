"""Raster backends: one small interface (``Backend.read(spatial, temporal, sensor, settings) -> Raster``),
picked by name. ``local`` (files; ``local:/folder`` names them), ``tensor`` (an array), ``stac`` (STAC API
or static catalog), ``gee`` (Google Earth Engine, optional extra)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.geo.backends.base import Backend, Grid, Raster
from omniembed.geo.backends.gee import GeeBackend
from omniembed.geo.backends.local import LocalBackend, TensorBackend
from omniembed.geo.backends.product import ProductBackend
from omniembed.geo.backends.stac import StacBackend
from omniembed.geo.specs import SensorSpec

__all__ = ["BACKENDS", "Backend", "Grid", "LocalBackend", "ProductBackend", "Raster", "TensorBackend", "get_backend",
           "local_source", "resolve_backend"]

BACKENDS = ("auto", "local", "stac", "gee", "tensor")


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeUnavailable(f"Earth-observation support needs {', '.join(missing)}: pip install "
                                 "'omniembed[geo]'", param="backend", hint="pip install 'omniembed[geo]'")


def local_source(backend: Any, sources: Mapping[str, str] | None = None) -> str | None:
    """The folder or file of ``backend="local:PATH"`` (a name of ``sources``, the settings' named sources,
    stands for its path); None for any other backend."""
    if not isinstance(backend, str) or not backend.strip().lower().startswith("local:"):
        return None
    name = backend.strip()[len("local:"):].strip()
    if not name:
        raise ParameterInvalid("backend='local:' names no files: pass backend='local:/path/to/folder'",
                               param="backend")
    return (sources or {}).get(name, name)


def get_backend(backend: Any, sensor: SensorSpec | None, sources: Mapping[str, str] | None = None) -> Backend:
    """The backend for a name (or a backend object, returned as is). ``local:PATH``: the files under PATH
    (see ``LocalBackend``). ``auto``: ``local`` when the collection is a path that exists, ``stac`` when it
    is an http(s) URL, else ``gee``."""
    root = local_source(backend, sources)
    if root is not None:
        _require("rasterio", "pyproj")
        return LocalBackend(root=root)
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
    raise ParameterInvalid(f"backend must be one of {', '.join(BACKENDS)} or local:PATH, not {backend!r}",
                           param="backend")


def resolve_backend(backend: Any, sensor: SensorSpec,
                    sources: Mapping[str, str] | None = None) -> tuple[Backend, SensorSpec]:
    """The backend and the sensor to read with: a sensor collection that is a named source stands for its
    path, and local files and arrays are read at their native resolution unless ``scale_m`` was chosen."""
    sources = sources or {}
    if sensor.collection in sources:
        sensor = dataclasses.replace(sensor, collection=sources[sensor.collection])
    src = get_backend(backend, sensor, sources)
    if sensor.scale_is_default and isinstance(src, (LocalBackend, TensorBackend)):
        sensor = dataclasses.replace(sensor, scale_m=None)
    return src, sensor
