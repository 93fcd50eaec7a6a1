"""The geo CLI sub-app: embed (pooled and grid files), export from GeoJSON, preview as PCA PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from geo_data import shared_geo_dir
from omniembed.cli.geo import app
from omniembed.geo.files import pca_rgb

runner = CliRunner()


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


def env(tmp_path: Path) -> dict[str, str]:
    return {"OMNIEMBED_CACHE_DIR": str(tmp_path / "cache"), "OMNIEMBED_HUB_OFFLINE": "1"}


def test_embed_pooled_and_grid(geo_dir: Path, tmp_path: Path) -> None:
    args = ["embed", "gse", "--point", "121.5", "31.2", "--buffer", "600", "--start", "2022-01-01",
            "--end", "2023-01-01", "--backend", "local", "--source", str(geo_dir / "gse")]
    res = runner.invoke(app, args, env=env(tmp_path))
    assert res.exit_code == 0, res.output
    vec = np.asarray(json.loads(res.stdout)["embedding"])
    assert vec.shape == (64,) and np.isfinite(vec).all()
    res = runner.invoke(app, [*args, "--grid", "--out", str(tmp_path / "g.tif")], env=env(tmp_path))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["crs"] == "EPSG:32651" and summary["shape"] == [64, 40, 40]
    import rasterio

    with rasterio.open(tmp_path / "g.tif") as src:
        assert src.count == 64 and src.crs.to_epsg() == 32651 and src.res == (30.0, 30.0)
    res = runner.invoke(app, ["preview", str(tmp_path / "g.tif"), "-o", str(tmp_path / "g.png"), "--scale", "2"],
                        env=env(tmp_path))
    assert res.exit_code == 0, res.output
    from PIL import Image

    img = Image.open(tmp_path / "g.png")
    assert img.size == (80, 80) and np.asarray(img).std() > 10


def test_cli_errors_are_clear(geo_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["embed", "gse", "--point", "121.5", "95", "--buffer", "600", "--backend", "local",
                              "--source", str(geo_dir / "gse")], env=env(tmp_path))
    assert res.exit_code == 2 and "parameter_invalid" in res.output and "lat" in res.output
    res = runner.invoke(app, ["embed", "gse", "--backend", "local"], env=env(tmp_path))
    assert res.exit_code == 2 and "--bbox" in res.output


def test_export_from_geojson(geo_dir: Path, tmp_path: Path) -> None:
    rois = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "a", "properties": {"buffer_m": 500},
         "geometry": {"type": "Point", "coordinates": [121.5, 31.2]}},
        {"type": "Feature", "id": "b", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [[[121.49, 31.19], [121.50, 31.19], [121.50, 31.20],
                                                          [121.49, 31.20], [121.49, 31.19]]]}}]}
    (tmp_path / "rois.geojson").write_text(json.dumps(rois))
    res = runner.invoke(app, ["export", str(tmp_path / "rois.geojson"), "-m", "gse", "-o", str(tmp_path / "out"),
                              "--format", "geoparquet", "--backend", "local", "--source", str(geo_dir / "gse")],
                        env=env(tmp_path))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["counts"] == {"total": 2, "done": 2, "error": 0}
    import geopandas

    gdf = geopandas.read_parquet(tmp_path / "out" / "embeddings.parquet")
    assert list(gdf["id"]) == ["a", "b"] and len(gdf["embedding"].iloc[0]) == 64


def test_pca_rgb_orders_by_variance() -> None:
    rng = np.random.default_rng(0)
    grid = np.zeros((5, 4, 6))
    grid[2] = np.arange(24).reshape(4, 6) * 10.0  # the dominant direction
    grid += rng.normal(0, 0.01, grid.shape)
    rgb = pca_rgb(grid)
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    red = rgb[..., 0].astype(float).ravel()
    assert abs(np.corrcoef(red, grid[2].ravel())[0, 1]) > 0.99
