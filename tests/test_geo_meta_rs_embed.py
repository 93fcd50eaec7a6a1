"""rs-embed scripts on omniembed.geo (issue 23): ``meta`` is rs-embed's plain dict with its keys and types, and
a grid DataArray carries it as rs-embed's does (defect 3); ``input_prep=None`` is rs-embed's default (tile, a
one-tile region resized) and reading at another resolution than rs-embed's warns (defect 4); a region partly
outside the source reports its covered fraction and warns below the setting (defect 10)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, load_conv, shared_geo_dir
from omniembed.api import Engine
from omniembed.embedding import EmbeddingMeta
from omniembed.geo import BBox, FetchSpec, InputPrepSpec, OutputSpec, TemporalSpec, get_embedding, get_embeddings_batch
from omniembed.registry import ModelSpec
from omniembed.settings import Settings

X0, Y0 = 355590.0, 3454240.0  # the top-left corner of the 300 x 300 px (10 m) Sentinel-2 test raster
SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
INSIDE = BBox(X0 + 400, Y0 - 1200, X0 + 1680, Y0 - 240, crs="EPSG:32651")  # 128 x 96 px, all inside
CONV30 = dataclasses.replace(CONV_SPEC, name="test-conv-geo-30m", loader="test_geo_meta_rs_embed:load_conv_30m")


def load_conv_30m(spec: ModelSpec, folder: Any, runtime: str, device: str, settings: Settings) -> Any:
    """The test conv model, read at 30 m by default (as rs-embed reads prithvi)."""
    loaded = load_conv(spec, folder, runtime, device, settings)
    loaded.raster = dataclasses.replace(loaded.raster, scale_m=30.0)
    return loaded


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("geo_meta"), CONV_SPEC, CONV30)


def _local(geo_dir: Path) -> str:
    return f"local:{geo_dir / 's2'}"


# -- defect 3: meta is rs-embed's dict -----------------------------------------------------------------------


def test_meta_is_a_json_ready_dict_with_rs_embeds_keys(eng: Engine, geo_dir: Path) -> None:
    from rs_embed.embedders.meta import META_REQUIRED_KEYS

    emb = get_embedding("test-conv-geo", spatial=INSIDE, temporal=SUMMER, output=OutputSpec.grid(),
                        backend=_local(geo_dir), input_prep="resize", engine=eng)
    meta = emb.meta
    assert isinstance(meta, dict)
    assert json.loads(json.dumps(meta))["model"] == "test-conv-geo"  # JSON-ready, no default= needed
    assert set(META_REQUIRED_KEYS) <= set(meta)
    assert meta["type"] == "on_the_fly" and meta["backend"] == _local(geo_dir)
    assert meta["source"] == meta["sensor"]["collection"] == str(geo_dir / "s2")
    assert meta["sensor"]["bands"] == ("B02", "B03", "B04", "B08") and meta["bands"] == ("B02", "B03", "B04", "B08")
    assert meta["temporal"] == {"mode": "range", "start": "2022-06-01", "end": "2022-09-01"}
    assert (meta["start"], meta["end"]) == ("2022-06-01", "2022-09-01")
    assert meta["image_size"] == 32 and type(meta["image_size"]) is int
    assert meta["grid_hw"] == (8, 8) == tuple(emb.data.shape[1:]) and type(meta["grid_hw"]) is tuple
    assert meta["cls_removed"] is False  # a conv net: no class token
    assert meta["scale_m"] == 10.0 and meta["input_hw"] == (96, 128) and meta["coverage"] == 1.0
    assert meta["input_prep"]["mode"] == "resize" and meta["input_prep"]["resolved_mode"] == "resize"
    assert meta["input_prep"]["requested_mode"] == "resize"
    # a plain dict: item assignment and update, as rs-embed users annotate their results
    meta["note"] = 1
    meta.update({"site": "a"})
    assert json.loads(json.dumps(meta))["note"] == 1 and meta["site"] == "a"
    # the typed fields are still read as attributes where omniembed's code reads them
    assert meta.model == "test-conv-geo" and meta.dim == 8 and meta.input.kind == "geo"
    assert isinstance(meta, EmbeddingMeta) and meta.timings.encode_ms >= 0
    assert meta.to_dict() == dict(meta) and meta.to_dict() is not meta
    assert copy.deepcopy(meta) == meta and pickle.loads(pickle.dumps(meta)) == meta
    assert dataclasses.replace(meta, extra={"k": 2})["k"] == 2


def test_grid_dataarray_is_rs_embeds(eng: Engine, geo_dir: Path) -> None:
    emb = get_embedding("test-conv-geo", spatial=INSIDE, temporal=SUMMER, output=OutputSpec.grid(),
                        backend=_local(geo_dir), engine=eng)
    da = emb.data
    # rs-embed's grid_to_dataarray: name "embedding", dims (d, y, x), d = 0..D-1, attrs = the embedding's meta
    assert da.name == "embedding" and da.dims == ("d", "y", "x")
    assert set(da.coords) == {"d", "y", "x"} and da.d.values.tolist() == list(range(8))
    assert set(da.attrs) == set(emb.meta) | {"crs", "transform"}
    assert da.attrs["grid_hw"] == tuple(da.shape[1:]) == emb.meta["grid_hw"]
    assert da.attrs["temporal"]["mode"] == "range" and da.attrs["crs"] == "EPSG:32651"
    pooled = get_embedding("test-conv-geo", spatial=INSIDE, temporal=SUMMER, backend=_local(geo_dir), engine=eng)
    assert pooled.meta["grid_hw"] == emb.meta["grid_hw"] and pooled.meta["output"] == "pooled"


# -- defect 4: rs-embed's input_prep default; warn where the read resolution differs ---------------------------


def test_default_input_prep_is_rs_embeds_tile(eng: Engine, geo_dir: Path) -> None:
    kw: dict[str, Any] = {"temporal": SUMMER, "output": OutputSpec.grid(), "backend": _local(geo_dir), "engine": eng}
    default = get_embedding("test-conv-geo", spatial=INSIDE, **kw)
    tiled = get_embedding("test-conv-geo", spatial=INSIDE, input_prep=InputPrepSpec.tile(), **kw)
    # 128 x 96 px is larger than the 32 px input: tiled at the read resolution (one cell per 4 px), as rs-embed
    assert default.data.shape == tiled.data.shape == (8, 24, 32)
    np.testing.assert_array_equal(default.data.values, tiled.data.values)
    assert default.meta["input_prep"]["requested_mode"] == "default"
    assert default.meta["input_prep"]["resolved_mode"] == "tile" and default.meta["input_prep"]["tile_count"] > 1
    # a region that is one input (34 px: within rs-embed's tile_snap_frac of 32) is resized whole, as rs-embed's
    # single call; tile and the default give the same vectors as resize
    small = BBox(X0 + 400, Y0 - 740, X0 + 740, Y0 - 400, crs="EPSG:32651")
    one = get_embedding("test-conv-geo", spatial=small, **kw)
    resized = get_embedding("test-conv-geo", spatial=small, input_prep="resize", **kw)
    assert one.data.shape == (8, 8, 8) and one.meta["input_prep"]["resolved_mode"] == "resize"
    np.testing.assert_array_equal(one.data.values, resized.data.values)
    # auto resizes for pooled output, as rs-embed's auto
    auto = get_embedding("test-conv-geo", spatial=INSIDE, temporal=SUMMER, backend=_local(geo_dir),
                         input_prep="auto", engine=eng)
    assert auto.meta["input_prep"]["resolved_mode"] == "resize"


def test_native_read_at_another_resolution_than_rs_embeds_warns(eng: Engine, geo_dir: Path) -> None:
    kw: dict[str, Any] = {"temporal": SUMMER, "backend": _local(geo_dir), "engine": eng}
    with pytest.warns(UserWarning, match=r"native 10 m.*reads 'test-conv-geo-30m' at 30 m") as caught:
        native = get_embeddings_batch("test-conv-geo-30m", spatials=[INSIDE, INSIDE], **kw)
    assert sum("native 10 m" in str(w.message) for w in caught) == 1  # once per call, naming how many
    assert "2 of 2 regions" in str(next(w.message for w in caught if "native" in str(w.message)))
    assert native[0].meta["scale_m"] == 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        at30 = get_embedding("test-conv-geo-30m", spatial=INSIDE, fetch=FetchSpec(scale_m=30), **kw)
        get_embedding("test-conv-geo", spatial=INSIDE, **kw)  # a 10 m model on 10 m files: nothing to say
    assert at30.meta["scale_m"] == 30.0 and at30.meta["input_hw"] == (32, 43)


# -- defect 10: partial coverage -----------------------------------------------------------------------------


def test_partly_covered_region_reports_its_fraction_and_warns(eng: Engine, geo_dir: Path) -> None:
    corner = BBox(X0 - 900, Y0 - 100, X0 + 100, Y0 + 900, crs="EPSG:32651")  # 100 x 100 px, 10 x 10 inside
    kw: dict[str, Any] = {"temporal": SUMMER, "backend": _local(geo_dir), "engine": eng}
    with pytest.warns(UserWarning, match=r"1 of 2 regions are less than 50% covered.*lowest: 1\.0%") as caught:
        out = get_embeddings_batch("test-conv-geo", spatials=[corner, INSIDE], **kw)
    assert sum("covered" in str(w.message) for w in caught) == 1
    assert out[0].meta["coverage"] == pytest.approx(0.01, abs=1e-9) and out[1].meta["coverage"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inside = get_embedding("test-conv-geo", spatial=INSIDE, **kw)
    assert inside.meta["coverage"] == 1.0
    # the threshold is a setting: 0 never warns
    quiet = geo_engine(Path(eng.settings.cache_dir).parent, CONV_SPEC, geo_min_coverage=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = get_embedding("test-conv-geo", spatial=corner, **{**kw, "engine": quiet})
    assert again.meta["coverage"] == pytest.approx(0.01, abs=1e-9)


def test_an_export_warns_once_for_all_its_chunks(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    """One coverage warning per export, counted over every chunk (it was one per chunk of ``chunk_size``)."""
    from omniembed.geo import ExportConfig, ExportTarget, export_batch

    corner = BBox(X0 - 900, Y0 - 100, X0 + 100, Y0 + 900, crs="EPSG:32651")  # 1% inside
    edge = BBox(X0 - 700, Y0 - 1000, X0 + 300, Y0, crs="EPSG:32651")  # 30% inside
    with pytest.warns(UserWarning, match="covered") as caught:
        export_batch(spatials=[corner, INSIDE, edge, INSIDE], temporal=SUMMER, models=["test-conv-geo"],
                     target=ExportTarget.per_item(str(tmp_path / "out")), backend=_local(geo_dir), engine=eng,
                     config=ExportConfig(chunk_size=1, save_inputs=False, show_progress=False))
    covered = [str(w.message) for w in caught if "covered" in str(w.message)]
    assert len(covered) == 1 and covered[0].startswith("2 of 4 regions are less than 50% covered")
    assert "lowest: 1.0%" in covered[0]


def test_a_band_the_source_lacks_does_not_count_as_missing_coverage() -> None:
    """coverage() counts the pixels with every present band valid: a band absent from the whole read (NaN
    everywhere, e.g. a red-edge band a 4-band source lacks, which galileo masks) does not make it 0."""
    from omniembed.geo.preparer import coverage

    data = np.ones((1, 3, 10, 10), np.float32)
    data[:, 2] = np.nan  # a band the source lacks
    assert coverage(data) == 1.0
    data[:, :, :, :3] = np.nan  # and the region's left 30% outside the rasters
    assert coverage(data) == pytest.approx(0.7)
    assert coverage(np.full((1, 2, 4, 4), np.nan, np.float32)) == 0.0
