"""rs-embed names with no omniembed counterpart of their own: ``inspect_provider_patch`` (and its old name
``inspect_gee_patch``): read a sensor's raster for a region and report it, with no model; and the
pretty-warning switches (omniembed leaves warnings to Python's own display: they are no-ops)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.geo.api import _check_spatial, _engine, window
from omniembed.geo.backends import get_backend
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.geo.specs import BBox, PointBuffer, SensorSpec, TemporalSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["disable_pretty_warnings", "enable_pretty_warnings", "inspect_gee_patch", "inspect_provider_patch"]


def enable_pretty_warnings() -> None:
    """Accepted for rs-embed code; omniembed's warnings use Python's standard display."""


def disable_pretty_warnings() -> None:
    """Accepted for rs-embed code; omniembed's warnings use Python's standard display."""


def inspect_provider_patch(*, spatial: BBox | PointBuffer, temporal: TemporalSpec | None = None,
                           sensor: SensorSpec, backend: Any = "gee", name: str = "gee_patch",
                           value_range: tuple[float, float] | None = None, return_array: bool = False,
                           engine: Engine | None = None) -> dict[str, Any]:
    """Read ``sensor``'s raster for ``spatial`` through ``backend`` and report its shape, bands and per-band
    statistics (min, max, mean, NaN fraction; outside ``value_range`` when given); ``return_array`` adds the
    (bands, rows, cols) array of the first frame."""
    _check_spatial(spatial)
    if not isinstance(sensor, SensorSpec):
        raise ModelRequestInvalid("sensor must be a SensorSpec", param="sensor")
    sensor.validate()
    eng = _engine(engine)
    src = get_backend(backend, sensor)
    read = src.read(spatial, window(temporal), sensor, eng.settings)
    img = np.asarray(read.image, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report: dict[str, Any] = {
            "ok": not bool(np.isnan(img).all()), "name": name, "shape": list(img.shape), "bands": list(read.bands),
            "crs": read.grid.crs, "transform": list(read.grid.transform)[:6], "n_frames": int(read.data.shape[0]),
            "min": np.nanmin(img, axis=(1, 2)).tolist(), "max": np.nanmax(img, axis=(1, 2)).tolist(),
            "mean": np.nanmean(img, axis=(1, 2)).tolist(), "nan_frac": np.isnan(img).mean(axis=(1, 2)).tolist(),
        }
    if value_range is not None:
        report["outside_range_frac"] = ((img < value_range[0]) | (img > value_range[1])).mean(axis=(1, 2)).tolist()
    if return_array:
        report["array"] = img
    return report


inspect_gee_patch = inspect_provider_patch
