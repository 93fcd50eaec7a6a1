"""export_batch (folder layout): every format reads back with the values of get_embedding, and an export killed half way
(SIGKILL in a subprocess) resumes without embedding any item twice or losing one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from geo_data import CONV_SPEC, folder_export, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.errors import ParameterInvalid
from omniembed.geo import OutputSpec, PointBuffer, TemporalSpec, get_embedding
from omniembed.geo.export import load_item


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("export_engine"), CONV_SPEC)


SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
ROIS = [PointBuffer(121.5 + 0.004 * (k % 3), 31.195 + 0.004 * (k // 3), 300 + 40 * k) for k in range(6)]


def expected(eng: Engine, geo_dir: Path, output: OutputSpec | None = None) -> list[np.ndarray]:
    return [get_embedding("test-conv-geo", spatial=r, temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                          output=output, engine=eng).data for r in ROIS[:3]]


def test_pooled_formats_read_back(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    import geopandas
    import xarray as xr

    want = np.stack(expected(eng, geo_dir))
    rois = [*ROIS[:3], PointBuffer(0.0, 0.0, 100)]  # the last one has no imagery: recorded as an error
    for fmt in ("npz", "netcdf", "zarr", "geoparquet"):
        m = folder_export(rois, SUMMER, ["test-conv-geo"], tmp_path / fmt, fmt, backend=f"local:{geo_dir / 's2'}",
                         engine=eng)
        assert m["counts"] == {"total": 4, "done": 3, "error": 1}
        assert json.loads((tmp_path / fmt / "manifest.json").read_text())["items"][3]["error"]["code"] == \
            "input_unreadable"
        if fmt == "npz":
            with np.load(tmp_path / fmt / "embeddings.npz") as z:
                got, ids = z["test-conv-geo"], list(z["test-conv-geo__ids"])
        elif fmt == "geoparquet":
            gdf = geopandas.read_parquet(tmp_path / fmt / "embeddings.parquet")
            got, ids = np.stack(gdf["embedding"].to_list()), list(gdf["id"])
            assert gdf.geometry.iloc[0].contains(geopandas.points_from_xy([121.5], [31.195])[0])
            assert gdf.crs is None or gdf.crs.to_epsg() == 4326
        else:
            ds = xr.open_dataset(tmp_path / fmt / ("embeddings.nc" if fmt == "netcdf" else "embeddings.zarr"),
                                 engine="h5netcdf" if fmt == "netcdf" else "zarr")
            got, ids = ds["test-conv-geo"].values, [str(i) for i in ds["test-conv-geo_roi"].values]
            ds.close()
        assert ids == ["roi00000", "roi00001", "roi00002"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_grid_formats_read_back_with_georeference(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    import rasterio
    import xarray as xr

    want = expected(eng, geo_dir, OutputSpec.grid())
    for fmt in ("npz", "netcdf", "zarr", "geotiff"):
        m = folder_export(ROIS[:3], SUMMER, "test-conv-geo", tmp_path / fmt, fmt, output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 's2'}", engine=eng)
        for k, item in enumerate(m["items"]):
            path = tmp_path / fmt / item["file"]
            if fmt == "geotiff":
                with rasterio.open(path) as src:
                    values, transform, crs = src.read(), tuple(src.transform)[:6], src.crs.to_string()
            elif fmt == "npz":
                da, _ = load_item(path)
                values, transform, crs = da.values, da.attrs["transform"], da.attrs["crs"]
            else:
                ds = xr.open_dataset(path, engine="h5netcdf" if fmt == "netcdf" else "zarr")
                da = ds["embedding"]
                values, transform, crs = da.values, tuple(da.attrs["transform"]), da.attrs["crs"]
                np.testing.assert_allclose(da.x.values, want[k].x.values)
                ds.close()
            np.testing.assert_allclose(values, want[k].values, rtol=1e-6, atol=1e-7)
            assert crs == "EPSG:32651"
            np.testing.assert_allclose(transform, want[k].attrs["transform"])


def test_format_errors(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterInvalid, match="geotiff holds grids"):
        folder_export(ROIS[:1], SUMMER, "test-conv-geo", tmp_path, "geotiff", engine=eng)
    with pytest.raises(ParameterInvalid, match="Unsupported export format"):
        folder_export(ROIS[:1], SUMMER, "test-conv-geo", tmp_path, "csv", engine=eng)


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from geo_data import CONV_SPEC, folder_export, geo_engine
    from omniembed.geo import PointBuffer, SensorSpec, TemporalSpec
    rois = [PointBuffer(121.5 + 0.004 * (k % 3), 31.195 + 0.004 * (k // 3), 300 + 40 * k) for k in range(6)]
    kill_after, seen = int(sys.argv[1]), [0]
    def progress(n):
        seen[0] += n
        if seen[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    eng = geo_engine(Path({cache!r}), CONV_SPEC)
    folder_export(rois, TemporalSpec.range("2022-06-01", "2022-09-01"), ["test-conv-geo", "gse"], {out!r},
                  "netcdf", backend="local:" + {data!r}, engine=eng, chunk_size=2, progress=progress,
                 per_model_sensors={{"gse": SensorSpec({gse!r})}})
""")


def test_killed_export_resumes_without_duplicates_or_losses(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    script = tmp_path / "run_export.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), cache=str(tmp_path), out=str(out),
                                    data=str(geo_dir / "s2"), gse=str(geo_dir / "gse")))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    first = subprocess.run([sys.executable, str(script), "5"], env=env, capture_output=True, timeout=300)
    assert first.returncode == -9, first.stderr.decode()[-2000:]  # killed half way (5 of 12 items)
    assert not (out / "manifest.json").exists()
    log1 = [json.loads(line) for line in (out / ".items" / "runs.jsonl").read_text().splitlines()]
    assert len(log1) == 5
    second = subprocess.run([sys.executable, str(script), "0"], env=env, capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    log = [json.loads(line) for line in (out / ".items" / "runs.jsonl").read_text().splitlines()]
    keys = [(e["model"], e["id"]) for e in log]
    assert len(keys) == 12 and len(set(keys)) == 12  # every item embedded exactly once over both runs
    assert len({e["run"] for e in log}) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"total": 12, "done": 12, "error": 0}
    import xarray as xr

    with xr.open_dataset(out / "embeddings.nc", engine="h5netcdf") as ds:
        got = ds["test-conv-geo"].values
    np.testing.assert_allclose(got[:3], np.stack(expected(eng, geo_dir)), rtol=1e-6, atol=1e-7)
    with xr.open_dataset(out / "embeddings.nc", engine="h5netcdf") as ds:
        gse = ds["gse"].values
    assert gse.shape == (6, 64)  # the gse items were read from the gse folder (per_model_sensors)
    # a third run finds everything done and embeds nothing
    third = subprocess.run([sys.executable, str(script), "0"], env=env, capture_output=True, timeout=300)
    assert third.returncode == 0
    assert len((out / ".items" / "runs.jsonl").read_text().splitlines()) == 12


def test_rs_embed_options(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    from omniembed.errors import InputUnreadable

    rois = [ROIS[0], PointBuffer(0.0, 0.0, 100)]
    with pytest.raises(InputUnreadable) as info:
        folder_export(rois, SUMMER, ["test-conv-geo"], tmp_path / "a", backend=f"local:{geo_dir / 's2'}",
                      continue_on_error=False, engine=eng)
    assert info.value.index == 1
    m = folder_export(rois[:1], SUMMER, ["test-conv-geo"], tmp_path / "b", backend=f"local:{geo_dir / 's2'}",
                       names=["p1"], engine=eng)
    assert [i["id"] for i in m["items"]] == ["p1"]
    runs = tmp_path / "b" / ".items" / "runs.jsonl"
    folder_export(rois[:1], SUMMER, ["test-conv-geo"], tmp_path / "b", backend=f"local:{geo_dir / 's2'}",
                  names=["p1"], engine=eng)
    assert len(runs.read_text().splitlines()) == 1  # resumed: nothing to do
    folder_export(rois[:1], SUMMER, ["test-conv-geo"], tmp_path / "b", backend=f"local:{geo_dir / 's2'}",
                  names=["p1"], resume=False, engine=eng)
    assert len(runs.read_text().splitlines()) == 1  # started afresh: a new log with one entry
    with pytest.raises(ParameterInvalid, match="named twice"):
        folder_export(rois[:1], SUMMER, ["test-conv-geo", "test-conv-geo"], tmp_path / "c", engine=eng)
