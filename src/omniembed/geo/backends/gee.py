"""The ``gee`` backend: Google Earth Engine through ``earthengine-api`` (``pip install 'omniembed[gee]'``,
then ``earthengine authenticate``). Same interface as the others.

The request is built as plain data first (``build_request``: collection, date and bounds filters, cloud
filter, band selection, composite, and the exact output grid: UTM of the region's centre at ``scale_m``),
then turned into Earth Engine calls (``to_ee``) and fetched with ``ee.data.computePixels`` as a NumPy
array. Building is tested offline; the network call itself could not be exercised here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniembed.errors import InputUnreadable, RuntimeUnavailable
from omniembed.geo.backends.base import Grid, Raster, utm_crs
from omniembed.geo.specs import PointBuffer, SensorSpec, SpatialSpec, TemporalSpec
from omniembed.settings import Settings

__all__ = ["GeeBackend", "build_request", "gee_band", "to_ee"]

CLOUD_PROPERTY = {"COPERNICUS/S2": "CLOUDY_PIXEL_PERCENTAGE", "LANDSAT": "CLOUD_COVER"}


def gee_band(collection: str, band: str | int) -> str | int:
    """Earth Engine band names: Sentinel-2 bands are unpadded there (``B02`` -> ``B2``, ``B8A`` stays)."""
    if isinstance(band, str) and collection.startswith("COPERNICUS/S2") and (m := re.fullmatch(r"B0(\d)", band)):
        return f"B{m[1]}"
    return band


def build_request(spatial: SpatialSpec, temporal: TemporalSpec | None, sensor: SensorSpec,
                  scale_m: float = 10.0, max_pixels: int = 64_000_000) -> dict[str, Any]:
    """Everything Earth Engine is asked for, as JSON-ready data (no ``ee`` import)."""
    from pyproj import Transformer

    lon0, lat0, lon1, lat1 = spatial.lonlat_bounds()
    crs = utm_crs((lon0 + lon1) / 2, (lat0 + lat1) / 2)
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    if isinstance(spatial, PointBuffer):
        x, y = tr.transform(spatial.lon, spatial.lat)
        minx, miny, maxx, maxy = x - spatial.buffer_m, y - spatial.buffer_m, x + spatial.buffer_m, y + spatial.buffer_m
    else:
        minx, miny, maxx, maxy = tr.transform_bounds(lon0, lat0, lon1, lat1, densify_pts=21)
    res = sensor.scale_m or scale_m
    width, height = max(1, round((maxx - minx) / res)), max(1, round((maxy - miny) / res))
    if width * height > max_pixels:
        from omniembed.errors import InputTooLarge

        raise InputTooLarge(f"the region is {width} x {height} pixels at {res:g} m; use a smaller region or a "
                            "coarser scale_m", param="spatial")
    cloud_prop = next((p for prefix, p in CLOUD_PROPERTY.items() if sensor.collection.startswith(prefix)), None)
    return {
        "collection": sensor.collection,
        "date": [temporal.start.isoformat(), temporal.end.isoformat()] if temporal else None,
        "bounds": [lon0, lat0, lon1, lat1],
        "cloud": {"property": sensor.option("cloud_property", cloud_prop), "max": sensor.cloudy_pct}
        if sensor.cloudy_pct is not None and (sensor.option("cloud_property", cloud_prop)) else None,
        "bands": [gee_band(sensor.collection, b) for b in sensor.bands],
        "composite": sensor.composite if sensor.composite in ("median", "mean") else "mosaic",
        "grid": {"dimensions": {"width": width, "height": height},
                 "affineTransform": {"scaleX": res, "shearX": 0.0, "translateX": minx,
                                     "shearY": 0.0, "scaleY": -res, "translateY": maxy},
                 "crsCode": crs},
        "fileFormat": "NUMPY_NDARRAY",
    }


def to_ee(request: dict[str, Any], ee: Any) -> dict[str, Any]:
    """The ``ee.data.computePixels`` argument for a request built by ``build_request``."""
    col = ee.ImageCollection(request["collection"])
    if request["date"]:
        col = col.filterDate(*request["date"])
    col = col.filterBounds(ee.Geometry.Rectangle(request["bounds"]))
    if request["cloud"]:
        col = col.filter(ee.Filter.lte(request["cloud"]["property"], request["cloud"]["max"]))
    if request["bands"]:
        col = col.select(request["bands"])
    image = getattr(col, request["composite"])()
    return {"expression": image, "fileFormat": request["fileFormat"], "grid": request["grid"]}


@dataclass(frozen=True)
class GeeBackend:
    name: str = "gee"

    def read(self, spatial: SpatialSpec, temporal: TemporalSpec | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        from affine import Affine

        try:
            import ee
        except ImportError:
            raise RuntimeUnavailable("the gee backend needs earthengine-api: pip install 'omniembed[gee]', then "
                                     "run `earthengine authenticate`; or use backend='local' / 'stac'",
                                     param="backend") from None
        request = build_request(spatial, temporal, sensor, max_pixels=settings.max_image_pixels)
        try:
            ee.Initialize()
            arr = ee.data.computePixels(to_ee(request, ee))
        except Exception as exc:
            raise InputUnreadable(f"Earth Engine request failed: {type(exc).__name__}: {exc}",
                                  param="backend") from None
        names = tuple(arr.dtype.names or ())
        data = np.stack([np.asarray(arr[n], dtype=np.float32) for n in names]) if names else \
            np.moveaxis(np.asarray(arr, dtype=np.float32), -1, 0)
        g = request["grid"]
        a = g["affineTransform"]
        grid = Grid(g["crsCode"], Affine(a["scaleX"], 0.0, a["translateX"], 0.0, a["scaleY"], a["translateY"]),
                    g["dimensions"]["width"], g["dimensions"]["height"])
        bands = tuple(str(b) for b in sensor.bands) if sensor.bands else names
        return Raster(data[None], grid, bands, (temporal.start if temporal else None,), (sensor.collection,))
