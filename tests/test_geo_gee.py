"""gee backend, offline parts: the request as plain data, the Earth Engine call chain (on a recording
stand-in for ``ee``), band-name translation and tile planning. End-to-end reads against a stand-in that
enforces Earth Engine's limits are in test_geo_gee_fake.py."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.geo import PointBuffer, SensorSpec, TemporalSpec
from omniembed.geo.backends.gee import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_SIDE,
    GeeBackend,
    build_request,
    ee_bands,
    gee_band,
    plan_tiles,
    to_ee,
)
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
    req = build_request(PointBuffer(121.5, 31.2, 2048), TemporalSpec.range("2022-06-01", "2022-09-01").window(), sensor)
    assert req["collection"] == "COPERNICUS/S2_SR_HARMONIZED" and req["date"] == ["2022-06-01", "2022-09-01"]
    assert req["bands"] == ["B4", "B3", "B2", "B8A"] == req["names"] and req["composite"] == "median"
    assert req["cloud"] == {"property": "CLOUDY_PIXEL_PERCENTAGE", "max": 20}
    g = req["grid"]
    assert g["crsCode"] == "EPSG:32651" and g["dimensions"] == {"width": 410, "height": 410}
    x, _ = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True).transform(121.5, 31.2)
    assert math.isclose(g["affineTransform"]["translateX"], x - 2048) and g["affineTransform"]["scaleY"] == -10


def test_first_is_the_earliest_image_on_top_of_a_mosaic() -> None:
    """``mosaic()`` puts the last image on top, so ``first`` sorts newest first; the expression carries
    each band's mask as a uint8 band."""
    sensor = SensorSpec("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", bands=("A00", "A01"), scale_m=10, composite="first",
                        cloudy_pct=None)
    req = build_request(PointBuffer(10.0, 50.0, 500), TemporalSpec.year(2023).window(), sensor)
    out = to_ee(req, Recorder())
    trail = out["expression"].trail
    names = [t for t in trail if isinstance(t, str)]
    assert names[:7] == ["ImageCollection", "filterDate", "filterBounds", "select", "sort", "mosaic", "toFloat"]
    assert names[-1] == "addBands" and "filter" not in names  # no cloud property for this collection
    assert trail[1] == ("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL",) and trail[3] == ("2023-01-01", "2024-01-01")
    assert trail[5][0].trail == ("Geometry", "Rectangle", (req["bounds"],))
    assert trail[7] == (["A00", "A01"], ["A00", "A01"]) and trail[9] == ("system:time_start", False)
    mask = trail[-1][0].trail  # image.mask().gt(0).toByte().rename([...])
    assert mask[-8:] == ("mask", (), "gt", (0,), "toByte", (), "rename", (["A00__mask", "A01__mask"],))
    assert out["fileFormat"] == "NUMPY_NDARRAY" and out["grid"]["crsCode"] == "EPSG:32632"


@pytest.mark.parametrize(("composite", "calls"), [("median", ["median"]), ("mean", ["mean"]),
                                                  ("first", ["sort", "mosaic"])])
def test_composite_calls(composite: str, calls: list[str]) -> None:
    sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", bands=("red",), scale_m=20, composite=composite)
    req = build_request(PointBuffer(10.0, 50.0, 200), None, sensor)
    trail = to_ee(req, Recorder())["expression"].trail
    names = [t for t in trail if isinstance(t, str)]
    assert names[names.index("select") + 1:names.index("toFloat")] == calls


@pytest.mark.parametrize(("collection", "band", "expected"), [
    ("COPERNICUS/S2_SR_HARMONIZED", "B08", "B8"), ("COPERNICUS/S2_SR_HARMONIZED", "b8a", "B8A"),
    ("COPERNICUS/S2_SR_HARMONIZED", "red", "B4"), ("COPERNICUS/S2_SR_HARMONIZED", "NIR", "B8"),
    ("COPERNICUS/S2_SR_HARMONIZED", "swir1", "B11"), ("COPERNICUS/S2_SR_HARMONIZED", "swir2", "B12"),
    ("COPERNICUS/S2_SR_HARMONIZED", "blue", "B2"), ("COPERNICUS/S2_SR_HARMONIZED", "green", "B3"),
    ("COPERNICUS/S2_HARMONIZED", "B05", "B5"), ("COPERNICUS/S2_SR_HARMONIZED", "SCL", "SCL"),
    ("LANDSAT/LC08/C02/T1_L2", "red", "SR_B4"), ("LANDSAT/LC09/C02/T1_L2", "nir", "SR_B5"),
    ("LANDSAT/LC09/C02/T1_L2", "swir1", "SR_B6"), ("LANDSAT/LC08/C02/T1_L2", "swir2", "SR_B7"),
    ("LANDSAT/LC08/C02/T1_L2", "B4", "SR_B4"), ("LANDSAT/LC08/C02/T1_L2", "b10", "ST_B10"),
    ("LANDSAT/LC08/C02/T1_L2", "sr_b2", "SR_B2"), ("LANDSAT/LC08/C02/T1_L2", "QA_PIXEL", "QA_PIXEL"),
    ("LANDSAT/LT05/C02/T1_L2", "nir", "SR_B4"), ("LANDSAT/LE07/C02/T1_L2", "swir2", "SR_B7"),
    ("LANDSAT/LT05/C02/T1_L2", "B4", "SR_B4"),  # Landsat's own numbering, not S2's synonyms
    ("LANDSAT/LC08/C02/T1_L2", "B8", "B8"),  # no panchromatic band in L2; passed on for EE to refuse
    ("X", "B08", "B08"), ("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", "A00", "A00"), ("X", 3, 2),
])
def test_band_names_are_translated(collection: str, band: str | int, expected: str | int) -> None:
    assert gee_band(collection, band) == expected


def test_band_selection_names() -> None:
    assert ee_bands("COPERNICUS/S2_SR_HARMONIZED", ("red", 2)) == (["B4", 1], ["B4", "band2"])
    with pytest.raises(ParameterInvalid, match="twice"):
        ee_bands("COPERNICUS/S2_SR_HARMONIZED", ("red", "B04"))


@pytest.mark.parametrize(("width", "height", "bands"), [(1, 1, 1), (410, 410, 4), (5000, 5000, 12), (40_000, 3, 1),
                                                       (3, 70_000, 2), (100_000, 50_000, 1), (2400, 2400, 2)])
def test_tiles_cover_the_grid_within_the_documented_limits(width: int, height: int, bands: int) -> None:
    bpp = 5 * bands  # float32 value + uint8 mask per band
    tiles = plan_tiles(width, height, bpp)
    for _, _, h, w in tiles:
        assert 1 <= w <= MAX_REQUEST_SIDE and 1 <= h <= MAX_REQUEST_SIDE and w * h * bpp <= MAX_REQUEST_BYTES
    rows, cols = sorted({(r, h) for r, _, h, _ in tiles}), sorted({(c, w) for _, c, _, w in tiles})
    for spans, size in ((rows, height), (cols, width)):  # row and column spans partition the grid exactly
        assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == size
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    assert sorted(tiles) == sorted((r, c, h, w) for r, h in rows for c, w in cols)
    if width * height * bpp <= MAX_REQUEST_BYTES and max(width, height) <= MAX_REQUEST_SIDE:
        assert tiles == [(0, 0, height, width)]
    else:  # about as few tiles as the limits allow
        least = max(math.ceil(width * height * bpp / MAX_REQUEST_BYTES),
                    math.ceil(width / MAX_REQUEST_SIDE) * math.ceil(height / MAX_REQUEST_SIDE))
        assert least <= len(tiles) <= 2 * least + 2


def test_missing_earthengine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ee", None)
    with pytest.raises(RuntimeUnavailable, match="omniembed\\[gee\\]"):
        GeeBackend().read(PointBuffer(1, 1, 100), None, SensorSpec("COPERNICUS/S2_SR_HARMONIZED"), Settings())
