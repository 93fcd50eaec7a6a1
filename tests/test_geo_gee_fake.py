"""gee backend end to end against ``fake_ee``, a stand-in ``ee`` module that keeps Earth Engine's
documented limits and reply shapes (see its docstring): splitting and stitching, masks, quota retries,
authentication and project errors, composites and frames, band names, all checked by value."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pytest

import fake_ee
from fake_ee import FakeImage
from omniembed.errors import BackendAuthFailed, InputTooLarge, InputUnreadable, ParameterInvalid, RuntimeUnavailable
from omniembed.geo import BBox, PointBuffer, SensorSpec, TemporalSpec
from omniembed.geo.backends import Raster, gee
from omniembed.geo.backends.gee import GeeBackend
from omniembed.settings import Settings

S2 = "COPERNICUS/S2_SR_HARMONIZED"
L9 = "LANDSAT/LC09/C02/T1_L2"
SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01").window()
HERE = PointBuffer(121.5, 31.2, 200)  # 20 x 20 px at 20 m, EPSG:32651
Fn = Callable[[np.ndarray, np.ndarray], Any]


def ramp(k: int, res: float) -> Fn:
    """Band ``k``'s value at a pixel centre: a whole number from the pixel's position (exact in float32,
    whatever tile the pixel was fetched in)."""
    return lambda x, y: np.floor(x / res) % 4096 + 4096 * (np.floor(y / res) % 2048) + k


def const(value: float, valid: Fn | None = None) -> Fn:
    return lambda x, y: (np.full(x.shape, value), valid(x, y) if valid else np.ones(x.shape, bool))


@pytest.fixture
def ee(monkeypatch: pytest.MonkeyPatch) -> fake_ee.State:
    state = fake_ee.reset()
    state.default_project = "credentials-project"
    monkeypatch.setitem(sys.modules, "ee", fake_ee)
    monkeypatch.setattr(gee, "_CURRENT", {})
    for var in ("EE_PROJECT", "GOOGLE_CLOUD_PROJECT", "OMNIEMBED_GEE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    return state


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)


def expected(raster: Raster, fn: Fn) -> np.ndarray:
    """``fn`` evaluated at the centres of the raster's grid, as float32."""
    g = raster.grid
    cols, rows = np.meshgrid(np.arange(g.width) + 0.5, np.arange(g.height) + 0.5)
    t = g.transform
    x, y = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    return np.asarray(fn(x, y), np.float64).astype(np.float32)


# -- computePixels limits: split, fetch, stitch ---------------------------------------------------------------

def test_a_request_over_48_mb_is_split_and_stitched(ee: fake_ee.State) -> None:
    """8 bands of 1200 x 1200 px are 57.6 MB with their masks, over the 50,331,648-byte limit: four tiles,
    none refused, stitched equal to one unsplit request and to the values at every pixel."""
    bands = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir1")
    ee_names = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11")
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {n: ramp(k, 10) for k, n in enumerate(ee_names)})]
    sensor = SensorSpec(S2, bands=bands, scale_m=10, composite="first")
    where = PointBuffer(121.5, 31.2, 6000)
    r = GeeBackend().read(where, SUMMER, sensor, settings())
    assert r.data.shape == (1, 8, 1200, 1200) and r.bands == bands and not ee.refused
    sizes = [(q["grid"]["dimensions"]["width"], q["grid"]["dimensions"]["height"]) for q in ee.requests]
    assert sizes == [(600, 600)] * 4
    for k in range(8):
        assert np.array_equal(r.image[k], expected(r, ramp(k, 10)))
    ee.requests.clear()
    ee.max_bytes = 10**12  # the same read unsplit
    whole = GeeBackend(max_request_bytes=10**12).read(where, SUMMER, sensor, settings())
    assert len(ee.requests) == 1 and np.array_equal(whole.data, r.data)


def test_a_grid_over_32768_px_a_side_is_split(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 10)})]
    strip = BBox(0.2, 0.0, 3.8, 0.00027)  # ~400 km x 30 m: ~40,000 x 3 px at 10 m
    sensor = SensorSpec(S2, bands=("red",), scale_m=10, composite="first")
    r = GeeBackend().read(strip, SUMMER, sensor, settings())
    assert r.grid.width > 32_768 and not ee.refused
    assert all(q["grid"]["dimensions"]["width"] <= 32_768 for q in ee.requests) and len(ee.requests) == 2
    assert np.array_equal(r.image[0], expected(r, ramp(0, 10)))


def test_the_stand_in_refuses_what_earth_engine_refuses(ee: fake_ee.State) -> None:
    fake_ee.Initialize(project="p")
    image = fake_ee.ImageCollection(S2)
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 10)})]
    expr = image.first().toFloat()
    grid = {"affineTransform": {"scaleX": 10, "shearX": 0, "translateX": 0, "shearY": 0, "scaleY": -10,
                                "translateY": 0}, "crsCode": "EPSG:32631"}
    with pytest.raises(fake_ee.EEException, match=r"Total request size \(50340000 bytes\) must be less than or equal "
                                                   r"to 50331648 bytes"):
        fake_ee.data.computePixels({"expression": expr, "fileFormat": "NUMPY_NDARRAY",
                                    "grid": {**grid, "dimensions": {"width": 3000, "height": 4195}}})
    with pytest.raises(fake_ee.EEException, match="must be less than or equal to 32768"):
        fake_ee.data.computePixels({"expression": expr, "fileFormat": "NUMPY_NDARRAY",
                                    "grid": {**grid, "dimensions": {"width": 32769, "height": 1}}})
    ok = fake_ee.data.computePixels({"expression": expr, "fileFormat": "NUMPY_NDARRAY",
                                     "grid": {**grid, "dimensions": {"width": 32768, "height": 2}}})
    assert ok.dtype.names == ("B4",) and ok.dtype["B4"] == np.float32 and ok.shape == (2, 32768)


@pytest.mark.parametrize("limit", ["bytes", "memory"])
def test_a_tile_earth_engine_refuses_is_split_again(ee: fake_ee.State, limit: str) -> None:
    """Earth Engine may refuse a tile the plan thought fine (a stricter size count, "User memory limit
    exceeded"): it is split in two until the parts are accepted."""
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 20), "B3": ramp(1, 20)})]
    if limit == "bytes":
        ee.max_bytes = 1000  # 100 px of 2 bands
    else:
        ee.memory_limit_px = 60
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=("red", "green"), scale_m=20), settings())
    assert ee.refused and all(q["grid"]["dimensions"]["width"] * q["grid"]["dimensions"]["height"] <= 400
                              for q in ee.requests)
    assert np.array_equal(r.image[0], expected(r, ramp(0, 20))) and np.array_equal(r.image[1], expected(r, ramp(1, 20)))


def test_a_tile_that_never_fits_is_input_too_large(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 20)})]
    ee.memory_limit_px = 0
    with pytest.raises(InputTooLarge, match="User memory limit exceeded"):
        GeeBackend(max_split_depth=2).read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20), settings())


# -- masks ------------------------------------------------------------------------------------------------

def test_masked_pixels_are_nan(ee: fake_ee.State) -> None:
    def left_half(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x < x.mean()

    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": lambda x, y: (ramp(0, 20)(x, y), left_half(x, y)),
                                                        "B3": ramp(1, 20)})]
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=("red", "green"), scale_m=20), settings())
    valid = expected(r, left_half).astype(bool)
    assert 0 < valid.sum() < valid.size
    assert np.array_equal(np.isnan(r.image[0]), ~valid)  # masked, not the 0 Earth Engine fills in
    assert np.array_equal(r.image[0][valid], expected(r, ramp(0, 20))[valid]) and not np.isnan(r.image[1]).any()
    fields = {b[0] for q in ee.requests for b in q["expression"].resolve().bands}
    assert fields == {"B4", "B3", "B4__mask", "B3__mask"}


def test_a_region_with_no_valid_pixel_is_input_unreadable(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": const(1.0, lambda x, y: np.zeros(x.shape, bool))})]
    with pytest.raises(InputUnreadable, match="no valid pixels"):
        GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20), settings())


# -- quota retries ----------------------------------------------------------------------------------------

def test_quota_errors_are_retried_with_exponential_backoff(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 20)})]
    ee.quota_failures = 3
    sleeps: list[float] = []
    r = GeeBackend(backoff_s=1.5, sleep=sleeps.append).read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20),
                                                            settings())
    assert sleeps == [1.5, 3.0, 6.0] and len(ee.requests) == 4
    assert np.array_equal(r.image[0], expected(r, ramp(0, 20)))


def test_quota_retries_are_bounded(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 20)})]
    ee.quota_failures = 100
    sleeps: list[float] = []
    backend = GeeBackend(max_attempts=4, backoff_s=10, max_backoff_s=25, sleep=sleeps.append)
    with pytest.raises(RuntimeUnavailable, match="Too many concurrent aggregations") as info:
        backend.read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20), settings())
    assert info.value.code == "runtime_unavailable" and sleeps == [10, 20, 25] and len(ee.requests) == 4


# -- initialisation, project, authentication ------------------------------------------------------------------

def read(backend: GeeBackend | None = None, **kw: Any) -> Raster:
    return (backend or GeeBackend()).read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20), settings(**kw))


@pytest.fixture
def one_image(ee: fake_ee.State) -> fake_ee.State:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": ramp(0, 20)})]
    return ee


def test_project_from_setting_then_ee_project_then_google_cloud_project(one_image: fake_ee.State,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gcp")
    read()
    monkeypatch.setenv("EE_PROJECT", "eep")
    read()
    read(gee_project="setting")
    monkeypatch.setenv("OMNIEMBED_GEE_PROJECT", "from-env")
    assert Settings(_env_file=None).gee_project == "from-env"
    read(GeeBackend(project="explicit"), gee_project="setting")
    read(GeeBackend(project="explicit"))  # initialised again only when the project changes
    read(gee_project="setting")
    assert one_image.init_calls == ["gcp", "eep", "setting", "explicit", "setting"]
    assert one_image.project == "setting"


def test_without_a_project_the_credentials_project_is_used(one_image: fake_ee.State) -> None:
    read()
    assert one_image.init_calls == [None] and one_image.project == "credentials-project"


def test_an_already_initialised_ee_is_left_alone(one_image: fake_ee.State) -> None:
    one_image.initialized = True
    read()
    assert one_image.init_calls == []


def test_missing_credentials_say_how_to_authenticate(one_image: fake_ee.State) -> None:
    one_image.authorized = False
    with pytest.raises(BackendAuthFailed) as info:
        read(gee_project="p")
    err = info.value
    assert err.code == "backend_auth_failed" and isinstance(err, RuntimeUnavailable) and err.param == "backend"
    assert "Please authorize access" in err.message and "earthengine authenticate" in err.message
    assert "OMNIEMBED_GEE_PROJECT" in err.message and "service-account" in err.message
    assert err.to_dict()["code"] == "backend_auth_failed"


def test_no_project_is_an_auth_error_naming_the_settings(one_image: fake_ee.State) -> None:
    one_image.default_project = None
    with pytest.raises(BackendAuthFailed, match=r"no project was set.*no project found.*EE_PROJECT"):
        read()


@pytest.mark.parametrize("message", [
    "Permission denied: Caller does not have required permission to use project my-proj.",
    "Not signed up for Earth Engine or project is not registered. Visit https://developers.google.com/earth-engine",
    "Earth Engine API has not been used in project 12345 before or it is disabled.",
])
def test_auth_errors_of_a_request_have_their_own_code(one_image: fake_ee.State, monkeypatch: pytest.MonkeyPatch,
                                                      message: str) -> None:
    def refuse(params: dict) -> None:
        raise fake_ee.EEException(message)

    monkeypatch.setattr(fake_ee.data, "computePixels", refuse)
    with pytest.raises(BackendAuthFailed, match="earthengine authenticate"):
        read()


# -- composites, frames ---------------------------------------------------------------------------------------

def left(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x < x.mean()


def top(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y > y.mean()


@pytest.fixture
def three_dates(ee: fake_ee.State) -> fake_ee.State:
    """A (06-05) = 1 on the left half, B (06-15) = 2 everywhere, C (06-25) = 6 on the top half; listed out
    of date order, as a catalog may be."""
    ee.catalog[S2] = [FakeImage("C", date(2022, 6, 25), {"B4": const(6, top)}),
                      FakeImage("A", date(2022, 6, 5), {"B4": const(1, left)}),
                      FakeImage("B", date(2022, 6, 15), {"B4": const(2)})]
    return ee


def composite_of(how: str) -> Raster:
    sensor = SensorSpec(S2, bands=("red",), scale_m=20, composite=how)
    return GeeBackend().read(HERE, SUMMER, sensor, settings())


def test_first_puts_the_earliest_valid_image_on_top(three_dates: fake_ee.State) -> None:
    r = composite_of("first")
    is_left = expected(r, left).astype(bool)
    assert np.array_equal(r.image[0], np.where(is_left, 1, 2).astype(np.float32))
    assert r.dates == (date(2022, 6, 25),) and set(r.sources) == {f"{S2}/A", f"{S2}/B", f"{S2}/C"}


def test_mosaic_puts_the_latest_valid_image_on_top(three_dates: fake_ee.State) -> None:
    """rs-embed's ``mosaic``: chronological order, so ``mosaic()`` shows the latest valid pixel."""
    req = gee.build_request(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20))
    fake_ee.Initialize(project="p")
    image = gee.pixels(gee.composite(gee.collection(req, fake_ee), "mosaic"), req["names"])
    out = GeeBackend().fetch(fake_ee, image, req["grid"], req["names"])[0]
    cols, rows = np.meshgrid(np.arange(20) + 0.5, np.arange(20) + 0.5)
    a = req["grid"]["affineTransform"]
    is_top = top(a["translateX"] + cols * a["scaleX"], a["translateY"] + rows * a["scaleY"])
    assert np.array_equal(out, np.where(is_top, 6, 2).astype(np.float32))


def test_median_and_mean_of_the_valid_pixels(three_dates: fake_ee.State) -> None:
    med, mean = composite_of("median"), composite_of("mean")
    is_left, is_top = expected(med, left).astype(bool), expected(med, top).astype(bool)
    stack = np.stack([np.where(is_left, 1.0, np.nan), np.full(is_left.shape, 2.0), np.where(is_top, 6.0, np.nan)])
    assert np.allclose(med.image[0], np.nanmedian(stack, axis=0)) and np.allclose(mean.image[0], np.nanmean(stack, 0))
    assert not np.allclose(med.image[0], mean.image[0])


def test_frames_are_one_per_date_in_date_order(three_dates: fake_ee.State) -> None:
    three_dates.catalog[S2].append(FakeImage("A2", date(2022, 6, 5), {"B4": const(7, lambda x, y: ~left(x, y))}))
    r = composite_of("frames")
    assert r.data.shape == (3, 1, 20, 20) and r.dates == (date(2022, 6, 5), date(2022, 6, 15), date(2022, 6, 25))
    is_left, is_top = expected(r, left).astype(bool), expected(r, top).astype(bool)
    assert np.array_equal(r.data[0, 0], np.where(is_left, 1, 7).astype(np.float32))  # that day's two images
    assert np.array_equal(r.data[1, 0], np.full((20, 20), 2, np.float32))
    assert np.array_equal(np.isnan(r.data[2, 0]), ~is_top) and (r.data[2, 0][is_top] == 6).all()


def test_frames_limit_picks_evenly_spaced_dates(three_dates: fake_ee.State) -> None:
    sensor = SensorSpec(S2, bands=("red",), scale_m=20, composite="frames", frames=2)
    r = GeeBackend().read(HERE, SUMMER, sensor, settings())
    assert r.dates == (date(2022, 6, 5), date(2022, 6, 25)) and r.data.shape[0] == 2


def test_date_and_cloud_filters(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("jun", date(2022, 6, 5), {"B4": const(1)}, properties={"CLOUDY_PIXEL_PERCENTAGE": 5}),
                      FakeImage("jul", date(2022, 7, 5), {"B4": const(2)}, properties={"CLOUDY_PIXEL_PERCENTAGE": 90}),
                      FakeImage("oct", date(2022, 10, 5), {"B4": const(3)}, properties={"CLOUDY_PIXEL_PERCENTAGE": 0})]
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=("red",), scale_m=20, cloudy_pct=20, composite="frames"),
                          settings())
    assert r.dates == (date(2022, 6, 5),) and r.sources == (f"{S2}/jun",) and (r.data == 1).all()
    with pytest.raises(InputUnreadable, match=r"no image of .* between 2023-01-01 and 2024-01-01"):
        GeeBackend().read(HERE, TemporalSpec.year(2023).window(), SensorSpec(S2, bands=("red",), scale_m=20),
                          settings())


# -- band names -----------------------------------------------------------------------------------------------

def test_colour_names_read_the_right_sentinel2_bands(ee: fake_ee.State) -> None:
    names = ("B1", "B2", "B3", "B4", "B8", "B8A", "B11", "B12", "SCL")
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {n: const(k) for k, n in enumerate(names)})]
    wanted = ("red", "nir", "swir1", "swir2", "B02", "B8A", "SCL", 2)
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=wanted, scale_m=20), settings())
    assert r.bands == ("red", "nir", "swir1", "swir2", "B02", "B8A", "SCL", "2")
    assert [float(r.image[k, 0, 0]) for k in range(8)] == [3, 4, 6, 7, 1, 5, 8, 1]


def test_colour_names_read_the_right_landsat_bands(ee: fake_ee.State) -> None:
    names = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL")
    ee.catalog[L9] = [FakeImage("a", date(2022, 7, 1), {n: const(k) for k, n in enumerate(names)},
                                properties={"CLOUD_COVER": 3})]
    wanted = ("blue", "green", "red", "nir", "swir1", "swir2", "B10", "QA_PIXEL")
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(L9, bands=wanted, scale_m=30), settings())
    assert [float(r.image[k, 0, 0]) for k in range(8)] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_no_bands_reads_every_band_by_its_earth_engine_name(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": const(4), "B8": const(8)})]
    r = GeeBackend().read(HERE, SUMMER, SensorSpec(S2, scale_m=20), settings())
    assert r.bands == ("B4", "B8") and r.image[:, 0, 0].tolist() == [4, 8]


def test_unknown_band_and_collection_are_parameter_errors(ee: fake_ee.State) -> None:
    ee.catalog[S2] = [FakeImage("a", date(2022, 7, 1), {"B4": const(4)})]
    with pytest.raises(ParameterInvalid, match=r"did not match any bands.*colour names") as info:
        GeeBackend().read(HERE, SUMMER, SensorSpec(S2, bands=("B99",), scale_m=20), settings())
    assert info.value.param == "bands"
    with pytest.raises(ParameterInvalid, match="no image collection 'NOPE/X'") as info:
        GeeBackend().read(HERE, SUMMER, SensorSpec("NOPE/X", bands=("B1",), scale_m=20), settings())
    assert info.value.param == "sensor"


def test_an_unreachable_earth_engine_is_not_an_auth_error(one_image: fake_ee.State,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**kw: Any) -> None:
        raise ConnectionError("Unable to find the server at oauth2.googleapis.com")

    monkeypatch.setattr(fake_ee, "Initialize", offline)
    with pytest.raises(RuntimeUnavailable, match=r"could not be initialised.*Unable to find the server") as info:
        read(gee_project="p")
    assert not isinstance(info.value, BackendAuthFailed)
