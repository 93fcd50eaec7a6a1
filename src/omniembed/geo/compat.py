"""rs-embed names with no omniembed counterpart of their own: ``inspect_provider_patch`` (and its old name
``inspect_gee_patch``): read a sensor's raster for a region and report it, with no model; and the
pretty-warning switches (omniembed leaves warnings to Python's own display: they are no-ops)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.geo.api import _check_spatial, _engine, window
from omniembed.geo.backends import resolve_backend
from omniembed.geo.backends.report import chw_report
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.geo.specs import BBox, PointBuffer, SensorSpec, TemporalSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["disable_pretty_warnings", "enable_pretty_warnings", "inspect_gee_patch", "inspect_provider_patch"]


def enable_pretty_warnings() -> None:
    """Accepted for rs-embed code; omniembed's warnings use Python's standard display."""


def disable_pretty_warnings() -> None:
    """Accepted for rs-embed code; omniembed's warnings use Python's standard display."""


def _backend_name(backend: Any, src: Any) -> str:
    """The backend as rs-embed reports it (lower case); ``local:PATH`` keeps its path as written."""
    if not isinstance(backend, str):
        return str(getattr(src, "name", type(backend).__name__))
    name = backend.strip()
    return name if name.lower().startswith("local:") else name.lower()


def inspect_provider_patch(*, spatial: BBox | PointBuffer, temporal: TemporalSpec | None = None,
                           sensor: SensorSpec, backend: Any = "gee", name: str = "gee_patch",
                           value_range: tuple[float, float] | None = None, return_array: bool = False,
                           engine: Engine | None = None) -> dict[str, Any]:
    """Read ``sensor``'s raster for ``spatial`` through ``backend`` (``gee``, ``stac``, ``local:/folder``, a
    named source, or a backend object) and report it, with no model, in rs-embed's shape: ``ok``, ``report``
    (shape, dtype, finite fraction, per-band statistics, percentiles, histogram, ``issues``), ``sensor``,
    ``temporal``, ``backend``, ``artifacts``; ``return_array`` adds ``array_chw``, the (bands, rows, cols)
    float32 array read (NaN where there is no data). omniembed's keys beside them: ``bands``, ``crs``,
    ``transform``, ``n_frames``, ``sources``. As with ``get_embedding``, a local file left at the default
    ``scale_m`` is read at its native resolution, and ``temporal=None`` uses the default window."""
    _check_spatial(spatial)
    if not isinstance(sensor, SensorSpec):
        raise ModelRequestInvalid("sensor must be a SensorSpec", param="sensor")
    sensor.validate()
    eng = _engine(engine)
    src, used = resolve_backend(backend, sensor, eng.settings.geo_sources)
    read = src.read(spatial, window(temporal), used, eng.settings)
    img = np.asarray(read.image, dtype=np.float32)
    report = chw_report(img, name=name, expected_channels=len(sensor.bands) if sensor.bands else None,
                        value_range=value_range, fill_value=sensor.fill_value)
    out: dict[str, Any] = {
        "ok": bool(report["ok"]), "report": report, "sensor": dataclasses.asdict(sensor),
        "temporal": temporal.to_dict() if temporal is not None else None,
        "backend": _backend_name(backend, src),
        "artifacts": None,
        "bands": list(read.bands), "crs": read.grid.crs, "transform": list(read.grid.transform)[:6],
        "n_frames": int(read.data.shape[0]), "sources": [str(s) for s in read.sources],
    }
    if return_array:
        out["array_chw"] = img
    return out


inspect_gee_patch = inspect_provider_patch
