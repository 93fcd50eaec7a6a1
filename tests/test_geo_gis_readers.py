"""Every export format x pooled/grid, made by ``export_batch`` from the real test rasters, read back by the tools
GIS users open them with: geopandas (GeoParquet), xarray + rioxarray (NetCDF, Zarr), rasterio and ``gdalinfo -json``
as a subprocess (GeoTIFF, NetCDF, Zarr). Values are checked, not only presence: CRS equal to the source raster's,
transform equal to the grid's (and on the source's pixel grid), geometry bounds equal to the region's."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import CONV_SPEC, folder_export, geo_engine, shared_geo_dir
from omniembed import __version__
from omniembed.api import Engine
from omniembed.geo import OutputSpec, PointBuffer, SensorSpec, TemporalSpec, get_embedding

SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
ROIS = [PointBuffer(121.5, 31.195, 300), PointBuffer(121.504, 31.199, 460)]
IDS = ["roi00000", "roi00001"]
MODELS = ["test-conv-geo", "gse"]
GRID_FORMATS = {"netcdf": "nc", "zarr": "zarr", "geotiff": "tif"}
POOLED_FORMATS = {"netcdf": "embeddings.nc", "zarr": "embeddings.zarr", "geoparquet": "embeddings.parquet"}
GDALINFO = shutil.which("gdalinfo")
# Skipped only outside CI: `make test` installs gdal-bin, so in CI a missing gdalinfo is a failure, not a skip.
needs_gdalinfo = pytest.mark.skipif(GDALINFO is None and not os.environ.get("CI"),
                                    reason="gdalinfo not found: `make test` installs gdal-bin")
# rioxarray 0.19 computes transforms with affine's `*`, which affine 3 marks as pending deprecation
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("gis_engine"), CONV_SPEC)


def _sensors(geo_dir: Path) -> dict[str, SensorSpec]:
    return {"gse": SensorSpec(str(geo_dir / "gse"))}


@pytest.fixture(scope="module")
def source(geo_dir: Path) -> dict[str, Any]:
    """The source rasters' CRS, transform and band names, as rasterio reads them."""
    import rasterio

    out = {}
    files = {"test-conv-geo": geo_dir / "s2" / "s2_20220715.tif", "gse": geo_dir / "gse" / "gse_2022.tif"}
    for model, path in files.items():
        with rasterio.open(path) as src:
            out[model] = {"crs": src.crs, "transform": src.transform, "bands": list(src.descriptions)}
    return out


@pytest.fixture(scope="module")
def expected(eng: Engine, geo_dir: Path) -> dict[tuple[str, str], Any]:
    """(model, id) -> the grid DataArray ``get_embedding`` returns (values, transform, crs); ("pooled", model, id)
    -> the pooled vector; ("version", model) -> the model version in its meta."""
    out: dict[Any, Any] = {}
    for model in MODELS:
        sensor = _sensors(geo_dir).get(model)
        for roi, rid in zip(ROIS, IDS, strict=True):
            kw: dict[str, Any] = {"spatial": roi, "temporal": SUMMER, "backend": f"local:{geo_dir / 's2'}",
                                  "sensor": sensor, "engine": eng}
            out[model, rid] = get_embedding(model, output=OutputSpec.grid(), **kw).data
            pooled = get_embedding(model, **kw)
            out["pooled", model, rid], out["version", model] = pooled.data, pooled.meta.model_version
    return out


@pytest.fixture(scope="module")
def grid_dir(eng: Engine, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export folder, assembled as NetCDF, Zarr and GeoTIFF (the items are embedded once, then reused)."""
    out = tmp_path_factory.mktemp("gis_grid")
    for fmt in GRID_FORMATS:
        m = folder_export(ROIS, SUMMER, MODELS, out, fmt, output=OutputSpec.grid(), backend=f"local:{geo_dir / 's2'}",
                         per_model_sensors=_sensors(geo_dir), ids=IDS, engine=eng)
        assert m["counts"] == {"total": 4, "done": 4, "error": 0}
    return out


@pytest.fixture(scope="module")
def pooled_dir(eng: Engine, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gis_pooled")
    for fmt in POOLED_FORMATS:
        m = folder_export(ROIS, SUMMER, MODELS, out, fmt, backend=f"local:{geo_dir / 's2'}",
                         per_model_sensors=_sensors(geo_dir), ids=IDS, engine=eng)
        assert m["counts"] == {"total": 4, "done": 4, "error": 0}
    return out


def _grid_files(grid_dir: Path, fmt: str) -> list[tuple[str, str, Path]]:
    return [(model, rid, grid_dir / model / f"{rid}.{GRID_FORMATS[fmt]}") for model in MODELS for rid in IDS]


def _band_names(da: Any) -> list[str]:
    names = [str(b) for b in da[da.dims[0]].values]
    return [f"emb_{int(n):03d}" for n in names] if all(n.isdigit() for n in names) else names


def _check_on_source_grid(transform: Any, model: str, rid: str, src: dict[str, Any], want: Any) -> None:
    """The file's transform equals the grid's, which lies on the source raster's pixel grid and covers the region."""
    from affine import Affine
    from pyproj import Transformer

    t, s = Affine(*tuple(transform)[:6]), src["transform"]
    np.testing.assert_allclose(tuple(t)[:6], want.attrs["transform"], rtol=0, atol=1e-6)
    assert t.b == 0 and t.d == 0 and t.e < 0 < t.a
    for offset, step in (((t.c - s.c) / s.a, 1.0), ((t.f - s.f) / s.e, 1.0)):
        assert abs(offset - round(offset)) < 1e-6 * step  # the origin is a corner of a source pixel
    if model == "gse":  # a precomputed product's grid is its own pixel grid
        assert (t.a, t.e) == (s.a, s.e)
    roi = ROIS[IDS.index(rid)]
    cx, cy = Transformer.from_crs("EPSG:4326", src["crs"].to_wkt(), always_xy=True).transform(roi.lon, roi.lat)
    h, w = want.shape[1:]
    left, top, right, bottom = t.c, t.f, t.c + w * t.a, t.f + h * t.e
    for got, region in ((left, cx - roi.buffer_m), (right, cx + roi.buffer_m), (top, cy + roi.buffer_m),
                        (bottom, cy - roi.buffer_m)):
        assert abs(got - region) <= max(abs(s.a), abs(t.a)), (got, region)  # within a source pixel / cell


def _same_crs(crs: Any, src: dict[str, Any]) -> None:
    from pyproj import CRS

    got, want = CRS.from_user_input(crs if isinstance(crs, str) else crs.to_wkt()), CRS(src["crs"].to_wkt())
    assert got.equals(want, ignore_axis_order=True), (got.to_string(), want.to_string())
    assert got.to_epsg() == want.to_epsg() == 32651


def _provenance(attrs: dict[str, Any], model: str, expected: dict[Any, Any]) -> None:
    assert attrs["model"] == model
    assert attrs["model_version"] == expected["version", model] != ""
    assert (attrs["start_date"], attrs["end_date"]) == ("2022-06-01", "2022-09-01")
    assert attrs["omniembed_version"] == __version__


# ---------------------------------------------------------------- pooled: GeoParquet, NetCDF, Zarr

def test_geoparquet_read_by_geopandas(pooled_dir: Path, expected: dict[Any, Any]) -> None:
    import geopandas
    import pyarrow.parquet as pq
    from pyproj import CRS

    path = pooled_dir / POOLED_FORMATS["geoparquet"]
    gdf = geopandas.read_parquet(path)
    assert gdf.crs is not None and gdf.crs.equals(CRS("EPSG:4326")) and gdf.crs.to_epsg() == 4326
    assert gdf.geometry.is_valid.all() and list(gdf.geom_type.unique()) == ["Polygon"]
    assert list(zip(gdf["model"], gdf["id"], strict=True)) == [(m, r) for m in MODELS for r in IDS]
    for k, row in gdf.iterrows():
        roi = ROIS[IDS.index(row["id"])]
        np.testing.assert_allclose(row.geometry.bounds, roi.lonlat_bounds(), rtol=0, atol=1e-12)
        assert row.geometry.contains(geopandas.points_from_xy([roi.lon], [roi.lat])[0])
        np.testing.assert_allclose(row["embedding"], expected["pooled", row["model"], row["id"]], rtol=1e-6,
                                   atol=1e-7)
        assert row["model_version"] == expected["version", row["model"]], k
        assert (row["start"], row["end"]) == ("2022-06-01", "2022-09-01"), k

    meta = json.loads(pq.read_schema(path).metadata[b"geo"])
    col = meta["columns"]["geometry"]
    assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry"
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
    assert CRS.from_json_dict(col["crs"]).equals(CRS("EPSG:4326")) and col["crs"]["id"]["code"] == 4326
    assert col["covering"] == {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    np.testing.assert_allclose(col["bbox"], gdf.total_bounds, rtol=0, atol=1e-12)
    bbox = pq.read_table(path, columns=["bbox"]).column("bbox").to_pylist()
    for box, geom in zip(bbox, gdf.geometry, strict=True):
        np.testing.assert_allclose([box["xmin"], box["ymin"], box["xmax"], box["ymax"]], geom.bounds, atol=1e-12)
    # the covering column lets a reader filter by box without decoding geometries
    assert len(geopandas.read_parquet(path, bbox=(121.497, 31.192, 121.498, 31.193))) == 2


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_pooled_netcdf_zarr_put_rows_on_a_map(pooled_dir: Path, expected: dict[Any, Any], fmt: str) -> None:
    import shapely
    import xarray as xr

    engine = "h5netcdf" if fmt == "netcdf" else "zarr"
    with xr.open_dataset(pooled_dir / POOLED_FORMATS[fmt], engine=engine) as ds:
        assert ds.attrs["Conventions"].startswith("CF-")
        assert ds.attrs["omniembed_version"] == __version__
        assert (ds.attrs["start_date"], ds.attrs["end_date"]) == ("2022-06-01", "2022-09-01")
        assert ds.attrs["model"] == ", ".join(MODELS)
        assert ds.attrs["model_version"] == ", ".join(expected["version", m] for m in MODELS)
        for model in MODELS:
            var = ds[model]
            assert (var.attrs["model"], var.attrs["model_version"]) == (model, expected["version", model])
            assert [str(i) for i in var[f"{model}_roi"].values] == IDS
            lon, lat = var[f"{model}_lon"], var[f"{model}_lat"]
            assert (lon.attrs["standard_name"], lon.attrs["units"]) == ("longitude", "degrees_east")
            assert (lat.attrs["standard_name"], lat.attrs["units"]) == ("latitude", "degrees_north")
            for k, roi in enumerate(ROIS):
                x0, y0, x1, y1 = roi.lonlat_bounds()
                np.testing.assert_allclose([lon.values[k], lat.values[k]], [(x0 + x1) / 2, (y0 + y1) / 2], atol=1e-9)
                geom = shapely.from_wkt(str(var[f"{model}_geometry"].values[k]))
                assert geom.is_valid and geom.geom_type == "Polygon"
                np.testing.assert_allclose(geom.bounds, (x0, y0, x1, y1), rtol=0, atol=1e-12)
                np.testing.assert_allclose(var.values[k], expected["pooled", model, IDS[k]], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- grids: NetCDF, Zarr (xarray + rioxarray)

@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_grid_rioxarray_reads_crs_and_transform(grid_dir: Path, source: dict[str, Any],
                                                 expected: dict[Any, Any], fmt: str) -> None:
    import rioxarray  # noqa: F401
    import xarray as xr
    from affine import Affine
    from pyproj import CRS

    for model, rid, path in _grid_files(grid_dir, fmt):
        want = expected[model, rid]
        with xr.open_dataset(path, engine="h5netcdf" if fmt == "netcdf" else "zarr", decode_coords="all") as ds:
            da = ds["embedding"]
            _same_crs(da.rio.crs, source[model])
            _check_on_source_grid(da.rio.transform(), model, rid, source[model], want)
            np.testing.assert_allclose(tuple(da.rio.transform(recalc=True))[:6], want.attrs["transform"], atol=1e-6)
            assert np.isnan(da.rio.encoded_nodata if da.rio.encoded_nodata is not None else da.rio.nodata)
            # CF: grid mapping variable with crs_wkt and GeoTransform, projected x/y with units
            assert da.encoding["grid_mapping"] == "spatial_ref"
            gm = ds["spatial_ref"].attrs
            assert CRS.from_wkt(gm["crs_wkt"]).to_epsg() == 32651
            assert gm["grid_mapping_name"] == "transverse_mercator"
            np.testing.assert_allclose([float(v) for v in gm["GeoTransform"].split()],
                                       Affine(*want.attrs["transform"]).to_gdal(), atol=1e-6)
            for axis in ("x", "y"):
                assert ds[axis].attrs["standard_name"] == f"projection_{axis}_coordinate"
                assert ds[axis].attrs["units"] == "metre"
            np.testing.assert_allclose(da.x.values, want.x.values)
            np.testing.assert_allclose(da.y.values, want.y.values)
            assert [str(b) for b in da[da.dims[0]].values] == _band_names(want)
            np.testing.assert_allclose(da.values, want.values, rtol=1e-6, atol=1e-7)
            _provenance(ds.attrs, model, expected)
            assert ds.attrs["Conventions"].startswith("CF-") and ds.attrs["region_id"] == rid
        if model == "gse":
            assert _band_names(want) == source["gse"]["bands"]


# ---------------------------------------------------------------- grids: GeoTIFF, NetCDF, Zarr through GDAL

def _rasterio_name(fmt: str, path: Path) -> str:
    return {"geotiff": str(path), "netcdf": f'netcdf:"{path}":embedding', "zarr": f'ZARR:"{path}":/embedding'}[fmt]


@pytest.mark.parametrize("fmt", list(GRID_FORMATS))
def test_grid_rasterio_reads_georeference(grid_dir: Path, source: dict[str, Any], expected: dict[Any, Any],
                                          fmt: str) -> None:
    import rasterio

    for model, rid, path in _grid_files(grid_dir, fmt):
        want = expected[model, rid]
        with rasterio.open(_rasterio_name(fmt, path)) as src:
            assert src.crs is not None and src.crs == source[model]["crs"]
            _same_crs(src.crs, source[model])
            _check_on_source_grid(src.transform, model, rid, source[model], want)
            assert src.count == want.shape[0] and (src.height, src.width) == want.shape[1:]
            assert src.nodata is not None and math.isnan(src.nodata)
            np.testing.assert_allclose(src.read(), want.values, rtol=1e-6, atol=1e-7)
            if fmt == "geotiff":
                assert list(src.descriptions) == _band_names(want)
                _provenance(src.tags(), model, expected)
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert src.profile["tiled"] and src.profile["compress"] == "deflate"
            elif fmt == "netcdf":
                _provenance({k.removeprefix("NC_GLOBAL#"): v for k, v in src.tags().items()}, model, expected)


def _gdalinfo(name: str) -> tuple[dict[str, Any], str]:
    assert GDALINFO is not None
    proc = subprocess.run([GDALINFO, "-json", name], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _gdal_zarr(path: Path) -> list[tuple[dict[str, Any], str]]:
    """GDAL >= 3.8 opens the 3-d Zarr array as a multi-band raster; older GDAL (Debian 12 has 3.6) exposes it
    as one 2-d subdataset per band."""
    proc = subprocess.run([str(GDALINFO), "-json", f'ZARR:"{path}":/embedding'], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode == 0:
        return [(json.loads(proc.stdout), proc.stderr)]
    info, _ = _gdalinfo(str(path))
    slices = [v for k, v in info["metadata"]["SUBDATASETS"].items() if k.endswith("_NAME") and "/embedding:" in v]
    return [_gdalinfo(name) for name in slices]


@needs_gdalinfo
@pytest.mark.parametrize("fmt", list(GRID_FORMATS))
def test_gdalinfo_reads_georeference(grid_dir: Path, source: dict[str, Any], expected: dict[Any, Any],
                                     fmt: str) -> None:
    from affine import Affine

    for model, rid, path in _grid_files(grid_dir, fmt):
        want = expected[model, rid]
        infos = _gdal_zarr(path) if fmt == "zarr" else [_gdalinfo(str(path))]
        assert sum(len(info["bands"]) for info, _ in infos) == want.shape[0]
        for info, stderr in infos:
            assert "geotransform" not in stderr.lower(), stderr
            _same_crs(info["coordinateSystem"]["wkt"], source[model])
            assert info["size"] == [want.shape[2], want.shape[1]]
            _check_on_source_grid(Affine.from_gdal(*info["geoTransform"]), model, rid, source[model], want)
            assert all(b["noDataValue"] == "NaN" for b in info["bands"])
        info = infos[0][0]
        if fmt == "geotiff":
            assert [b["description"] for b in info["bands"]] == _band_names(want)
            _provenance(info["metadata"][""], model, expected)
            assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
            assert info["bands"][0]["block"] == [256, 256]
        elif fmt == "netcdf":
            md = info["metadata"][""]
            _provenance({k.removeprefix("NC_GLOBAL#"): v for k, v in md.items()}, model, expected)
            assert md[f"NETCDF_DIM_{want.dims[0]}_VALUES"] == "{" + ",".join(_band_names(want)) + "}"


# ---------------------------------------------------------------- a geographic grid large enough for overviews

def test_large_geographic_grid_has_overviews_and_lonlat_axes(tmp_path: Path) -> None:
    import rasterio
    import rioxarray  # noqa: F401
    import xarray as xr

    from omniembed.geo.export.writers import write_grid_file

    n, step = 600, 0.001
    transform = (step, 0.0, 10.0, 0.0, -step, 50.0)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((2, n, n)).astype(np.float32)
    values[:, :3, :3] = np.nan
    centres = step * (np.arange(n) + 0.5)
    da = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": [0, 1], "y": 50 - centres, "x": 10 + centres},
                      attrs={"crs": "EPSG:4326", "transform": transform})
    for fmt, ext in GRID_FORMATS.items():
        write_grid_file(fmt, tmp_path / f"g.{ext}", da)
    with rasterio.open(tmp_path / "g.tif") as src:
        assert src.overviews(1) == [2, 4] and src.crs.to_epsg() == 4326
        np.testing.assert_allclose(tuple(src.transform)[:6], transform, atol=1e-12)
        assert list(src.descriptions) == ["emb_000", "emb_001"]
        assert np.isnan(src.read(1)[0, 0]) and np.isnan(src.nodata)
        assert src.tags()["omniembed_version"] == __version__
    for fmt in ("netcdf", "zarr"):
        path = tmp_path / f"g.{GRID_FORMATS[fmt]}"
        with xr.open_dataset(path, engine="h5netcdf" if fmt == "netcdf" else "zarr", decode_coords="all") as ds:
            assert ds["embedding"].rio.crs.to_epsg() == 4326
            np.testing.assert_allclose(tuple(ds["embedding"].rio.transform())[:6], transform, atol=1e-9)
            assert (ds.x.attrs["standard_name"], ds.x.attrs["units"]) == ("longitude", "degrees_east")
            assert (ds.y.attrs["standard_name"], ds.y.attrs["units"]) == ("latitude", "degrees_north")
        with rasterio.open(_rasterio_name(fmt, path)) as src:
            assert src.crs.to_epsg() == 4326
            np.testing.assert_allclose(tuple(src.transform)[:6], transform, atol=1e-9)
