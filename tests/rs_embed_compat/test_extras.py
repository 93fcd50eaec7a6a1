"""rs-embed 0.3 names beyond its copied tests, on the tiny conv model and the sample rasters: bring-your-own-data,
meta read as a mapping, ``temporal=None``'s default window, ``load_export`` of each layout, ``Model``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.geo import (
    ExportConfig,
    ExportTarget,
    Model,
    ModelError,
    PointBuffer,
    TemporalSpec,
    UserData,
    export_batch,
    get_embedding,
    get_embedding_from_data,
    list_models_for_data,
    load_export,
)

SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
HERE = PointBuffer(121.5, 31.2, 600)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("extras_engine"), CONV_SPEC)


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"local:{shared_geo_dir(tmp_path_factory) / 's2'}"


def test_user_data_bands_matched_by_name(eng: Engine) -> None:
    cube = np.stack([np.full((64, 64), 100.0 * i, np.float32) for i in range(12)])  # B1..B12 canonical order
    data = UserData(data=cube, collection="s2", spatial=HERE)
    emb = get_embedding_from_data("test-conv-geo", data, engine=eng)
    assert emb.data.shape == (8,) and emb.meta["user_input"]["channel_indices"] == [1, 2, 3, 7]
    report = {r["model"]: r for r in list_models_for_data(data, engine=eng)}
    assert report["test-conv-geo"]["compatible"] and not report["gse"]["compatible"]
    with pytest.raises(ModelError, match="lacks"):
        get_embedding_from_data("test-conv-geo", UserData(cube[:3], "s2", bands=("B2", "B3", "B4")), engine=eng)


def test_meta_mapping_and_default_window(eng: Engine, s2: str) -> None:
    with pytest.warns(UserWarning, match="2022-06-01..2022-09-01"):
        emb = get_embedding("test-conv-geo", spatial=HERE, backend=s2, engine=eng)
    assert emb.meta["model"] == emb.meta.model == "test-conv-geo" and "backend" in emb.meta
    assert emb.meta.get("temporal") == {"mode": "range", "start": "2022-06-01", "end": "2022-09-01"}
    assert dict(emb.meta)["dim"] == 8
    same = Model("test-conv-geo", backend=s2, engine=eng).get_embedding(HERE, temporal=SUMMER)
    np.testing.assert_allclose(same.data, emb.data, rtol=1e-6)


@pytest.mark.parametrize("layout", ["per_item", "combined", "folder"])
def test_load_export_reads_each_layout(eng: Engine, s2: str, tmp_path: Path, layout: str) -> None:
    rois = [HERE, PointBuffer(121.495, 31.205, 400), PointBuffer(0.0, 0.0, 100)]  # the last has no imagery
    target = {"per_item": ExportTarget.per_item(str(tmp_path / "p")),
              "combined": ExportTarget.combined(str(tmp_path / "all")),
              "folder": ExportTarget.folder(str(tmp_path / "f"))}[layout]
    export_batch(spatials=rois, temporal=SUMMER, models=["test-conv-geo"], target=target, backend=s2, engine=eng,
                 config=ExportConfig(format="npz", continue_on_error=True))
    paths = {"per_item": tmp_path / "p", "combined": tmp_path / "all.npz", "folder": tmp_path / "f"}
    result = load_export(paths[layout])
    got = result.embedding("test-conv-geo")
    want = [get_embedding("test-conv-geo", spatial=r, temporal=SUMMER, backend=s2, engine=eng).data for r in rois[:2]]
    assert got.shape == (3, 8) and np.isnan(got[2]).all() and result.models["test-conv-geo"].status == "partial"
    np.testing.assert_allclose(got[:2], np.stack(want), rtol=1e-6, atol=1e-7)
