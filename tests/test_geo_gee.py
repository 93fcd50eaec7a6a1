"""gee backend: the request is built offline (no earthengine-api, no network) and turned into the expected
Earth Engine call chain on a recording stand-in for the ``ee`` module."""

from __future__ import annotations

import math
from typing import Any

import pytest

from omniembed.errors import RuntimeUnavailable
from omniembed.geo import PointBuffer, SensorSpec, TemporalSpec
from omniembed.geo.backends.gee import GeeBackend, build_request, gee_band, to_ee
from omniembed.settings import Settings


class Recorder:
    """Stands in for ``ee``: attribute names and call argument tuples are appended to ``trail``."""

    def __init__(self, trail: tuple = ()) -> None:
        self.trail = trail

    def __getattr__(self, name: str) -> Any:
        return Recorder((*self.trail, name))

    def __call__(self, *args: Any) -> Recorder:
        return Recorder((*self.trail, args))


def test_request_for_the_rs_embed_example() -> None:
    from pyproj import Transformer

    sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", bands=("B04", "B03", "B02", "B8A"), scale_m=10, cloudy_pct=20)
    req = build_request(PointBuffer(121.5, 31.2, 2048), TemporalSpec.range("2022-06-01", "2022-09-01"), sensor)
    assert req["collection"] == "COPERNICUS/S2_SR_HARMONIZED" and req["date"] == ["2022-06-01", "2022-09-01"]
    assert req["bands"] == ["B4", "B3", "B2", "B8A"] and req["composite"] == "median"
    assert req["cloud"] == {"property": "CLOUDY_PIXEL_PERCENTAGE", "max": 20}
    g = req["grid"]
    assert g["crsCode"] == "EPSG:32651" and g["dimensions"] == {"width": 410, "height": 410}
    x, _ = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True).transform(121.5, 31.2)
    assert math.isclose(g["affineTransform"]["translateX"], x - 2048) and g["affineTransform"]["scaleY"] == -10


def test_to_ee_call_chain() -> None:
    sensor = SensorSpec("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", scale_m=10, composite="first", cloudy_pct=None)
    req = build_request(PointBuffer(10.0, 50.0, 500), TemporalSpec.year(2023), sensor)
    ee = Recorder()
    out = to_ee(req, ee)
    trail = out["expression"].trail
    assert [t for t in trail if isinstance(t, str)] == ["ImageCollection", "filterDate", "filterBounds", "mosaic"]
    assert trail[1] == ("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL",) and trail[3] == ("2023-01-01", "2024-01-01")
    assert trail[5][0].trail == ("Geometry", "Rectangle", (req["bounds"],))
    assert out["fileFormat"] == "NUMPY_NDARRAY" and out["grid"]["crsCode"] == "EPSG:32632"
    assert gee_band("COPERNICUS/S2_SR_HARMONIZED", "B08") == "B8" and gee_band("X", "B08") == "B08"


def test_missing_earthengine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ee", None)
    with pytest.raises(RuntimeUnavailable, match="omniembed\\[gee\\]"):
        GeeBackend().read(PointBuffer(1, 1, 100), None, SensorSpec("COPERNICUS/S2_SR_HARMONIZED"), Settings())


def test_read_turns_compute_pixels_into_a_raster(monkeypatch: pytest.MonkeyPatch) -> None:
    """GeeBackend.read end to end on a stand-in ``ee`` whose computePixels returns a structured array
    (Earth Engine's NUMPY_NDARRAY format: one named field per band)."""
    import sys
    import types

    import numpy as np

    calls: list[dict] = []

    def compute_pixels(request: dict) -> np.ndarray:
        calls.append(request)
        dims = request["grid"]["dimensions"]
        arr = np.zeros((dims["height"], dims["width"]), dtype=[("B4", "f4"), ("B3", "f4")])
        arr["B4"], arr["B3"] = 1000.0, np.arange(dims["width"], dtype=np.float32)[None, :]
        return arr

    fake = Recorder()
    ee = types.SimpleNamespace(Initialize=lambda: None, data=types.SimpleNamespace(computePixels=compute_pixels),
                               ImageCollection=fake.ImageCollection, Geometry=fake.Geometry, Filter=fake.Filter)
    monkeypatch.setitem(sys.modules, "ee", ee)
    sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", bands=("B04", "B03"), scale_m=20)
    r = GeeBackend().read(PointBuffer(121.5, 31.2, 200), TemporalSpec.year(2022), sensor, Settings())
    assert r.data.shape == (1, 2, 20, 20) and r.bands == ("B04", "B03")
    assert (r.image[0] == 1000).all() and (r.image[1][5] == np.arange(20)).all()
    assert r.grid.crs == "EPSG:32651" and r.grid.transform.a == 20
    trail = calls[0]["expression"].trail
    assert [t for t in trail if isinstance(t, str)] == ["ImageCollection", "filterDate", "filterBounds", "filter",
                                                        "select", "median"]
    assert trail[-3] == (["B4", "B3"],)
