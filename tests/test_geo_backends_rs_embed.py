"""Backends as a user porting an rs-embed script meets them (issue 23: defects 5, 8 and 11).

- A sensor naming an Earth Engine collection id reads ``backend="local:/folder"``'s files (its subfolder of that
  name where there is one); ``inspect_provider_patch`` takes ``local:`` and answers in rs-embed 0.3.1's shape,
  its ``report`` equal to rs-embed's own ``inspect_chw`` of the same array.
- Rasters across ±180° (lon/lat running to 180.5, UTM zone 60 and EPSG:3832 past the meridian) are found for
  regions on either side, and the pixels read are the file's.
- A precomputed product (``gse``) refuses a source that is not its raster, and reads its own (float, unnamed,
  bands in another order, int8 codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.geo import (
    BBox,
    ModelError,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    get_embedding,
    get_embeddings_batch,
    inspect_model_input,
    inspect_provider_patch,
)
from omniembed.geo.backends import LocalBackend
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.settings import Settings

pytest.importorskip("rasterio")
pytest.importorskip("pyproj")

S = Settings(hub_offline=True)
S2_ID = "COPERNICUS/S2_SR_HARMONIZED"
S2_BANDS = ("B02", "B03", "B04", "B08")
YEAR = TemporalSpec.year(2022)


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("eng"), CONV_SPEC)


def write_tif(path: Path, data: np.ndarray, crs: str, transform: Any, *, names: tuple[str, ...] = (),
              nodata: float | None = None) -> Path:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", count=data.shape[0], height=data.shape[1], width=data.shape[2],
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
        for i, name in enumerate(names, start=1):
            ds.set_band_description(i, name)
    return path


def utm_box(geo_dir: Path, c0: int, r0: int, c1: int, r1: int) -> BBox:
    """A box in the S2 sample's UTM 51N by pixel columns/rows (aligned: the read is the file's pixels)."""
    import rasterio

    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as ds:
        t = ds.transform
    return BBox(t.c + c0 * 10, t.f - r1 * 10, t.c + c1 * 10, t.f - r0 * 10, crs="EPSG:32651")


# --------------------------------------------------------------------------------------------------------------
# 5. sensors and backends


def test_a_collection_id_with_a_local_folder_reads_the_folder(geo_dir: Path, eng: Engine) -> None:
    """The rs-embed script's sensor, unchanged, with backend="local:/folder": the folder's files are read (the
    id labels them), giving what the folder gives without the sensor."""
    roi = utm_box(geo_dir, 40, 40, 136, 136)
    ported = get_embedding("test-conv-geo", spatial=roi, temporal=YEAR, sensor=SensorSpec(S2_ID, bands=S2_BANDS),
                           backend=f"local:{geo_dir / 's2'}", output=OutputSpec.grid(), engine=eng)
    plain = get_embedding("test-conv-geo", spatial=roi, temporal=YEAR, backend=f"local:{geo_dir / 's2'}",
                          output=OutputSpec.grid(), engine=eng)
    np.testing.assert_array_equal(ported.data.values, plain.data.values)
    assert np.isfinite(ported.data.values).all()
    assert ported.meta["sensor"]["collection"] == S2_ID  # the label the script gave


def test_a_collection_id_picks_its_subfolder(geo_dir: Path, tmp_path: Path) -> None:
    """A folder holding several collections: the id picks its subfolder (as a path, with _ for /, or by its
    last part); an id with no subfolder reads the whole folder; an absolute path is read as it is."""
    import shutil

    s2 = geo_dir / "s2" / "s2_20220715.tif"
    other = geo_dir / "s2" / "s2_20210301.tif"  # the mirrored image
    roi = utm_box(geo_dir, 10, 10, 60, 40)
    sensor = SensorSpec(S2_ID, bands=("B04",), scale_m=None)
    want = LocalBackend().read(roi, None, SensorSpec(str(s2), bands=("B04",), scale_m=None), S).data
    mirrored = LocalBackend().read(roi, None, SensorSpec(str(other), bands=("B04",), scale_m=None), S).data
    assert not np.array_equal(want, mirrored)
    for sub in ("COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS_S2_SR_HARMONIZED", "S2_SR_HARMONIZED"):
        root = tmp_path / sub.replace("/", "-")
        (root / sub).mkdir(parents=True)
        (root / "LANDSAT").mkdir()
        shutil.copy(s2, root / sub / s2.name)
        shutil.copy(other, root / "LANDSAT" / other.name)
        backend = LocalBackend(root=str(root))
        assert backend.path(S2_ID) == root / sub
        np.testing.assert_array_equal(backend.read(roi, None, sensor, S).data, want)
        whole = backend.read(roi, None, SensorSpec("LANDSAT/LC08/C02/T1_L2", bands=("B04",), scale_m=None,
                                                   composite="frames"), S)
        assert whole.data.shape[0] == 2  # no such subfolder: both collections' files, one frame per date
        assert backend.path(str(other)) == other


def test_inspect_provider_patch_takes_local_and_answers_as_rs_embed(geo_dir: Path, eng: Engine) -> None:
    """rs-embed 0.3.1's keys (ok, report, sensor, temporal, backend, artifacts, array_chw), the array being the
    file's pixels and the report equal, key for key and value for value, to rs-embed's inspect_chw of it."""
    import rasterio

    inspection = pytest.importorskip("rs_embed.tools.inspection")
    roi = utm_box(geo_dir, 40, 25, 120, 90)
    sensor = SensorSpec(S2_ID, bands=S2_BANDS)
    out = inspect_provider_patch(spatial=roi, temporal=YEAR, sensor=sensor, backend=f"local:{geo_dir / 's2'}",
                                 name="s2_patch", value_range=(0, 3000), return_array=True, engine=eng)
    assert {"ok", "report", "sensor", "temporal", "backend", "artifacts", "array_chw"} <= set(out)
    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as ds:
        file_px = ds.read()[:, 25:90, 40:120].astype(np.float32)
    file_px[file_px == 0] = np.nan  # the file's nodata
    np.testing.assert_array_equal(out["array_chw"], file_px)
    theirs = inspection.inspect_chw(out["array_chw"], name="s2_patch", expected_channels=4, value_range=(0, 3000),
                                    fill_value=sensor.fill_value)
    assert set(out["report"]) == set(theirs)
    for key, value in theirs.items():
        if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            np.testing.assert_allclose(out["report"][key], value, rtol=1e-6, err_msg=key)
        else:
            assert out["report"][key] == value, key
    assert out["ok"] is theirs["ok"] and out["report"]["shape"] == (4, 65, 80)
    assert out["sensor"]["collection"] == S2_ID and out["sensor"]["bands"] == S2_BANDS
    assert out["temporal"] == {"mode": "year", "year": 2022, "start": None, "end": None}
    assert out["backend"] == f"local:{geo_dir / 's2'}" and out["artifacts"] is None
    no_array = inspect_provider_patch(spatial=roi, temporal=YEAR, sensor=sensor, backend=f"local:{geo_dir / 's2'}",
                                      engine=eng)
    assert "array_chw" not in no_array and no_array["report"]["band_mean"] == out["report"]["band_mean"]


def test_inspect_model_input_answers_as_rs_embed(geo_dir: Path, eng: Engine) -> None:
    inspection = pytest.importorskip("rs_embed.tools.inspection")
    roi = utm_box(geo_dir, 40, 25, 120, 90)
    out = inspect_model_input("test-conv-geo", spatial=roi, temporal=YEAR, backend=f"local:{geo_dir / 's2'}",
                              return_arrays=True, engine=eng)
    assert {"ok", "model", "backend", "n_frames", "n_empty", "frames", "fetch_meta", "sensor", "temporal",
            "artifacts"} <= set(out)
    (frame,) = out["frames"]
    assert {"index", "start", "end", "empty", "report", "array_chw"} <= set(frame)
    assert (frame["start"], frame["end"]) == ("2022-01-01", "2023-01-01") and frame["empty"] is False
    theirs = inspection.inspect_chw(frame["array_chw"], name="test-conv-geo_input_t0", fill_value=0.0)
    assert set(frame["report"]) == set(theirs) and frame["report"]["band_std"] == pytest.approx(theirs["band_std"])
    np.testing.assert_array_equal(out["arrays"][0], frame["array_chw"])


# --------------------------------------------------------------------------------------------------------------
# 8. rasters across ±180°


def _lonlat_fixture(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A lon/lat raster over Fiji running from 179.5 to 180.5 (100 x 100 pixels of 0.01°), every pixel distinct."""
    data = (np.arange(2 * 100 * 100, dtype=np.float32).reshape(2, 100, 100) + 1.0)
    return write_tif(tmp_path / "am" / "lonlat.tif", data, "EPSG:4326", Affine(0.01, 0.0, 179.5, 0.0, -0.01, -16.0),
                     names=("b1", "b2")), data


def _pixels_at(read: Any, data: np.ndarray) -> np.ndarray:
    """The file's pixels under each cell centre of ``read``'s grid (lon/lat file at 179.5..180.5, 0.01°)."""
    from pyproj import Transformer

    g = read.grid
    cols, rows = np.meshgrid(np.arange(g.width) + 0.5, np.arange(g.height) + 0.5)
    xs, ys = g.transform.c + cols * g.transform.a, g.transform.f + rows * g.transform.e
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    lon = np.where(lon < 0, lon + 360.0, lon)
    c = np.floor((lon - 179.5) / 0.01).astype(int)
    r = np.floor((-16.0 - lat) / 0.01).astype(int)
    assert (c >= 0).all() and (c < 100).all() and (r >= 0).all() and (r < 100).all()
    return data[:, r, c]


@pytest.mark.parametrize("lon", [179.8, -179.8])
def test_a_lonlat_raster_past_180_is_found_and_read_on_both_sides(tmp_path: Path, lon: float) -> None:
    path, data = _lonlat_fixture(tmp_path)
    sensor = SensorSpec(str(path), scale_m=None, resampling="nearest")
    for roi in (BBox(lon - 0.05, -16.6, lon + 0.05, -16.5), PointBuffer(lon, -16.55, 2000)):
        read = LocalBackend().read(roi, None, sensor, S)
        assert read.data.shape[0] == 1 and read.grid.width > 1 and read.grid.height > 1
        np.testing.assert_array_equal(read.image, _pixels_at(read, data))


def test_a_region_across_180_reads_both_halves_of_a_lonlat_raster(tmp_path: Path) -> None:
    from pyproj import Transformer

    path, data = _lonlat_fixture(tmp_path)
    t = Transformer.from_crs("EPSG:4326", "EPSG:32760", always_xy=True)
    (x0, y0), (x1, y1) = t.transform(179.9, -16.6), t.transform(-179.9, -16.5)
    roi = BBox(x0, y0, x1, y1, crs="EPSG:32760")  # a UTM box with the meridian through its middle
    read = LocalBackend().read(roi, None, SensorSpec(str(path), scale_m=None, resampling="nearest"), S)
    np.testing.assert_array_equal(read.image, _pixels_at(read, data))
    assert np.isfinite(read.image).all()


@pytest.mark.parametrize("crs", ["EPSG:32760", "EPSG:3832"])
@pytest.mark.parametrize("lon", [179.8, -179.8])
def test_a_projected_raster_across_180_is_found_and_read_on_both_sides(tmp_path: Path, crs: str, lon: float) -> None:
    """UTM zone 60S and PDC Mercator rasters whose extent runs past the meridian: a region on either side is
    read at the file's own grid, pixel for pixel."""
    from pyproj import Transformer
    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    (x0, y0), (x1, y1) = t.transform(179.5, -16.0), t.transform(-179.5, -17.0)
    x0, y0 = round(x0 / 100) * 100, round(y0 / 100) * 100
    w, h = int((x1 - x0) // 100), int((y0 - y1) // 100)
    data = np.arange(w * h, dtype=np.float32).reshape(1, h, w) + 1.0
    path = write_tif(tmp_path / "am" / "proj.tif", data, crs, Affine(100.0, 0.0, x0, 0.0, -100.0, y0))
    for roi in (BBox(lon - 0.05, -16.6, lon + 0.05, -16.5), PointBuffer(lon, -16.55, 2000)):
        read = LocalBackend().read(roi, None, SensorSpec(str(path), scale_m=None), S)
        g = read.grid
        col, row = round((g.transform.c - x0) / 100), round((y0 - g.transform.f) / 100)
        assert g.crs == crs and col >= 0 and col + g.width <= w and row >= 0 and row + g.height <= h
        np.testing.assert_array_equal(read.image, data[:, row:row + g.height, col:col + g.width])


def test_longitude_ranges_overlap_on_the_circle() -> None:
    from omniembed.geo.backends.base import lon_overlap

    assert lon_overlap((179.5, 180.5), (-179.9, -179.7))  # past 180
    assert lon_overlap((179.5, -179.5), (-179.9, -179.7))  # given across 180 (STAC, GDAL)
    assert lon_overlap((179.5, -179.5), (179.6, 179.7))
    assert not lon_overlap((179.5, -179.5), (170.0, 179.0))
    assert not lon_overlap((10.0, 20.0), (-170.0, -160.0)) and lon_overlap((0.0, 360.0), (-10.0, -5.0))


def test_a_stac_item_across_180_is_kept() -> None:
    from types import SimpleNamespace

    from omniembed.geo.backends.stac import _keep

    item = SimpleNamespace(bbox=[179.5, -17.0, -179.5, -16.0], datetime=None, properties={},
                           common_metadata=SimpleNamespace(start_datetime=None))
    sensor = SensorSpec("x", cloudy_pct=None)
    assert _keep(item, BBox(-179.9, -16.6, -179.7, -16.5), None, sensor)
    assert _keep(item, BBox(179.6, -16.6, 179.7, -16.5), None, sensor)
    assert not _keep(item, BBox(170.0, -16.6, 171.0, -16.5), None, sensor)


def test_an_earth_engine_request_across_180_is_gridded_where_the_region_is() -> None:
    """A UTM box with the meridian through it: the request's grid is in the zone at 180 and the box's size,
    not in the zone at 0 degrees (the mean of -179.9 and 179.9)."""
    from pyproj import Transformer

    from omniembed.geo.backends.gee import build_request

    t = Transformer.from_crs("EPSG:4326", "EPSG:32760", always_xy=True)
    (x0, y0), (x1, y1) = t.transform(179.9, -16.6), t.transform(-179.9, -16.5)
    req = build_request(BBox(x0, y0, x1, y1, crs="EPSG:32760"), None, SensorSpec(S2_ID, bands=("B4",)))
    assert req["grid"]["crsCode"] in ("EPSG:32760", "EPSG:32701")
    size = req["grid"]["dimensions"]
    assert size["width"] == pytest.approx((x1 - x0) / 10, rel=0.05)
    assert size["height"] == pytest.approx((y1 - y0) / 10, rel=0.1)


# --------------------------------------------------------------------------------------------------------------
# 11. a precomputed product refuses what is not its raster


def test_gse_over_a_sentinel2_folder_is_refused(geo_dir: Path, eng: Engine) -> None:
    point = PointBuffer(121.5, 31.2, 600)
    with pytest.raises(ModelError) as caught:
        get_embedding("gse", spatial=point, temporal=YEAR, backend=f"local:{geo_dir / 's2'}", engine=eng)
    err = caught.value
    assert isinstance(err, ModelRequestInvalid) and err.param == "sensor"
    assert "4 bands (B02, B03, B04, B08)" in err.message and "64 bands (A00, A01, A02, ..., A63)" in err.message
    assert str(geo_dir) not in err.message
    out = get_embeddings_batch("gse", spatials=[point, point], temporal=YEAR, backend=f"local:{geo_dir / 's2'}",
                               errors="return", engine=eng)
    assert all(isinstance(r, ModelRequestInvalid) for r in out) and [r.index for r in out] == [0, 1]


def test_gse_export_over_a_sentinel2_folder_writes_no_gse_file(geo_dir: Path, eng: Engine, tmp_path: Path) -> None:
    from omniembed.geo import ExportConfig, ExportTarget, export_batch

    out = tmp_path / "out"
    result = export_batch(spatials=[PointBuffer(121.5, 31.2, 600)], temporal=YEAR, models=["gse"],
                          target=ExportTarget.per_item(str(out), names=["p0"]), backend=f"local:{geo_dir / 's2'}",
                          config=ExportConfig(continue_on_error=True), engine=eng)
    (item,) = result if isinstance(result, list) else [result]
    (entry,) = item["models"]
    assert entry["status"] == "failed" and entry["error_code"] == "parameter_invalid"
    assert "4 bands" in entry["error"]
    (written,) = [np.load(f) for f in out.rglob("*.npz")]
    assert set(written.files) <= {"__manifest__"}  # no array under gse's name


def _gse_file(tmp_path: Path, geo_dir: Path, data: np.ndarray, names: tuple[str, ...] = (),
              nodata: float | None = None) -> Path:
    import rasterio

    with rasterio.open(geo_dir / "gse" / "gse_2022.tif") as ds:
        crs, tr = ds.crs.to_string(), ds.transform
    return write_tif(tmp_path / "gse_2022.tif", data, crs, tr, names=names, nodata=nodata).parent


def _gse_grid(folder: Path, eng: Engine) -> np.ndarray:
    emb = get_embedding("gse", spatial=PointBuffer(121.5, 31.2, 600), temporal=YEAR, output=OutputSpec.grid(),
                        backend=f"local:{folder}", engine=eng)
    assert list(emb.data.coords["d"].values) == [f"A{i:02d}" for i in range(64)]
    return np.asarray(emb.data.values)


def test_gse_reads_its_own_rasters(geo_dir: Path, eng: Engine, tmp_path: Path) -> None:
    """Accepted: the named float product; the same unnamed (by its 64 bands); its bands stored in another
    order (put back in A00..A63's); and the int8 codes of Google's COGs, dequantised."""
    import rasterio

    with rasterio.open(geo_dir / "gse" / "gse_2022.tif") as ds:
        emb = ds.read()
    names = tuple(f"A{i:02d}" for i in range(64))
    want = _gse_grid(geo_dir / "gse", eng)
    np.testing.assert_array_equal(_gse_grid(_gse_file(tmp_path / "unnamed", geo_dir, emb), eng), want)
    reversed_file = _gse_file(tmp_path / "reversed", geo_dir, emb[::-1].copy(), names=names[::-1])
    np.testing.assert_array_equal(_gse_grid(reversed_file, eng), want)
    codes = np.clip(np.round(np.sign(emb) * np.sqrt(np.abs(emb)) * 127.5), -127, 127).astype(np.int8)
    codes[:, 50, 50] = -128  # no data, inside the region
    got = _gse_grid(_gse_file(tmp_path / "int8", geo_dir, codes, names=names, nodata=-128), eng)
    deq = (np.sign(codes) * (codes / 127.5) ** 2).astype(np.float32)
    deq[:, 50, 50] = np.nan
    expect = _gse_grid(_gse_file(tmp_path / "deq", geo_dir, deq, names=names), eng)
    assert np.isnan(got).all(axis=0).sum() == 1 and np.abs(np.nan_to_num(got)).max() <= 1.0
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(got)], atol=0.02)  # the codes' rounding


def test_gse_refuses_64_bands_that_are_not_gse(geo_dir: Path, eng: Engine, tmp_path: Path) -> None:
    import rasterio

    with rasterio.open(geo_dir / "gse" / "gse_2022.tif") as ds:
        emb = ds.read()
    other_names = _gse_file(tmp_path / "named", geo_dir, emb, names=tuple(f"B{i}" for i in range(1, 65)))
    with pytest.raises(ModelRequestInvalid, match=r"64 bands \(B1, B2, B3, \.\.\., B64\)"):
        _gse_grid(other_names, eng)
    reflectance = _gse_file(tmp_path / "uint16", geo_dir, (np.abs(emb) * 5000 + 300).astype(np.uint16))
    with pytest.raises(ModelRequestInvalid, match=r"values run from .* \[-1, 1\]") as caught:
        _gse_grid(reflectance, eng)
    assert caught.value.param == "sensor"
