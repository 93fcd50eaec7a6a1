"""omniembed.geo specs: construction (unchecked, as in rs-embed), ``.validate()`` at use, conversions, and clear
parameter_invalid errors (``SpecError``)."""

from __future__ import annotations

import math
from datetime import date

import pytest

from omniembed.errors import ParameterInvalid
from omniembed.geo import BBox, FetchSpec, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, SpecError, TemporalSpec


def checked(spec: object) -> object:
    spec.validate()  # type: ignore[attr-defined]
    return spec


def test_bbox_and_point_buffer() -> None:
    b = BBox(121.0, 31.0, 121.5, 31.4)
    assert b.bounds == (121.0, 31.0, 121.5, 31.4) and b.crs == "EPSG:4326"
    p = PointBuffer(lon=121.5, lat=31.2, buffer_m=2048)
    lon0, lat0, lon1, lat1 = p.to_bbox().bounds
    # 2048 m north-south is 2048 / 111_319.5 degrees of latitude; east-west scales with cos(lat).
    assert math.isclose(lat1 - lat0, 2 * 2048 / 111_319.49, rel_tol=1e-4)
    assert math.isclose(lon1 - lon0, (lat1 - lat0) / math.cos(math.radians(31.2)), rel_tol=1e-4)
    assert math.isclose((lon0 + lon1) / 2, 121.5) and math.isclose((lat0 + lat1) / 2, 31.2)


def test_bbox_other_crs_to_lonlat() -> None:
    b = BBox(355590, 3451240, 358590, 3454240, crs="EPSG:32651")
    lon0, lat0, lon1, lat1 = b.lonlat_bounds()
    assert 121.47 < lon0 < lon1 < 121.53 and 31.18 < lat0 < lat1 < 31.22


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: checked(BBox(0, -91, 1, 1)), "minlat"),
        (lambda: checked(BBox(0, 0, 1, 95)), "maxlat"),
        (lambda: checked(BBox(2, 0, 1, 1)), "minlon"),
        (lambda: checked(BBox(0, 1, 1, 1)), "minlat"),
        (lambda: checked(BBox(0, 0, float("nan"), 1)), "maxlon"),
        (lambda: checked(PointBuffer(10, 91, 100)), "lat"),
        (lambda: checked(PointBuffer(190, 0, 100)), "lon"),
        (lambda: checked(PointBuffer(10, 10, 0)), "buffer_m"),
        (lambda: checked(PointBuffer(10, 10, -5)), "buffer_m"),
        (lambda: checked(PointBuffer(10, 89.99, 5000)), "buffer_m"),
        (lambda: checked(TemporalSpec.range("2022-09-01", "2022-06-01")), "end"),
        (lambda: checked(TemporalSpec.range("2022-06-01", "2022-06-01")), "end"),
        (lambda: checked(TemporalSpec.range("June 2022", "2022-09-01")), "start"),
        (lambda: checked(TemporalSpec.year(22.5)), "year"),  # type: ignore[arg-type]
        (lambda: checked(SensorSpec("")), "collection"),
        (lambda: checked(SensorSpec("S2", bands=("B04", 0))), "bands"),
        (lambda: checked(SensorSpec("S2", scale_m=0)), "scale_m"),
        (lambda: checked(SensorSpec("S2", cloudy_pct=120)), "cloudy_pct"),
        (lambda: checked(SensorSpec("S2", composite="best")), "composite"),
        (lambda: OutputSpec.pooled(pooling="cls"), "pooling"),
        (lambda: OutputSpec.grid(scale_m=20), "scale_m"),
        (lambda: checked(FetchSpec(scale_m=-10)), "scale_m"),
        (lambda: checked(BBox(0, 0, 1, 1, crs="EPSG:3857")), "crs"),
        (lambda: checked(PointBuffer(1, 1, 10, crs="EPSG:32651")), "crs"),
        (lambda: checked(TemporalSpec(mode="week")), "temporal"),
        (lambda: checked(InputPrepSpec(mode="crop")), "input_prep"),
        (lambda: checked(InputPrepSpec(mode="tile", tile_size=0)), "tile_size"),
        (lambda: InputPrepSpec.coerce(3), "input_prep"),  # type: ignore[arg-type]
    ],
)
def test_invalid_specs_say_what_to_change(make: object, param: str) -> None:
    with pytest.raises(SpecError) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, ParameterInvalid)
    assert info.value.param == param
    assert info.value.code == "parameter_invalid"
    assert param.split("_")[0].replace("min", "").replace("max", "") in info.value.message or param in str(info.value)


def test_temporal_and_output_specs() -> None:
    t = TemporalSpec.range("2022-06-01", "2022-09-01")
    assert (t.mode, t.start, t.end, t.year) == ("range", "2022-06-01", "2022-09-01", None)
    w = t.window()
    assert (w.start, w.end) == (date(2022, 6, 1), date(2022, 9, 1))
    assert w.contains(date(2022, 6, 1)) and not w.contains(date(2022, 9, 1))
    assert TemporalSpec.range(date(2022, 6, 1), date(2022, 9, 1)) == t and hash(TemporalSpec.range(*"ab")) is not None
    y = TemporalSpec.year(2022)
    assert (y.mode, y.year) == ("year", 2022) and (y.window().start, y.window().end) == (date(2022, 1, 1),
                                                                                         date(2023, 1, 1))
    assert OutputSpec.pooled().mode == "pooled" and OutputSpec.pooled("max").pooling == "max"
    assert OutputSpec.grid().mode == "grid" and OutputSpec.grid(grid_orientation="native").grid_orientation == "native"
    assert not hasattr(OutputSpec.grid(), "scale_m")
    assert InputPrepSpec.coerce("TILE").mode == "tile" and InputPrepSpec.coerce(None) == InputPrepSpec.tile()
    assert InputPrepSpec().mode == "tile" and InputPrepSpec.auto(max_tiles=4).max_tiles == 4
    assert SensorSpec("x", bands="B04").bands == ("B04",)
    s = SensorSpec("x", ("B04",))
    assert s.scale_m == 10 and s.scale_is_default and not SensorSpec("x", (), 10).scale_is_default
    assert s.with_fetch(FetchSpec(scale_m=30, composite="mosaic")).scale_m == 30
    BBox(355590, 3451240, 358590, 3454240, crs="EPSG:32651").validate()  # projected CRSs in metres are accepted


def test_specs_build_unchecked_as_in_rs_embed() -> None:
    """rs-embed code builds specs first and validates at use: building never raises (OutputSpec excepted)."""
    bad = [BBox(2, 0, 1, 1), PointBuffer(0, 0, -1), TemporalSpec(mode="year"), SensorSpec("", scale_m=-1),
           InputPrepSpec(mode="crop")]
    for spec in bad:
        with pytest.raises(SpecError):
            spec.validate()


def test_importing_geo_loads_no_ml_or_raster_library() -> None:
    import subprocess
    import sys

    code = ("import sys, omniembed.geo, omniembed.geo.export, omniembed.cli.geo, omniembed.geo.backends.stac, "
            "omniembed.geo.backends.gee; print(sorted(m for m in ('torch', 'transformers', 'rasterio', 'xarray', "
            "'pyproj', 'pystac', 'shapely', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("spec", [TemporalSpec.year(2022), TemporalSpec.range("2022-06-01", "2022-09-01")])
def test_temporal_spec_pickles(spec: TemporalSpec) -> None:
    """Specs travel to Ray workers and subprocesses by pickle, as rs-embed's dataclasses do."""
    import pickle

    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and (back.mode, back.year, back.start, back.end) == (spec.mode, spec.year, spec.start, spec.end)
