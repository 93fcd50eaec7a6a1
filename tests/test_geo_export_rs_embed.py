"""export_batch as rs-embed's exports: resume recomputes what another request made (defect 1 of issue 23), per-item
NetCDF grids keep their CRS and transform for GDAL and rioxarray (2), manifests and files read by rs-embed's own
examples/plot_utils.py with the model inputs saved (7), and an unknown model fails alone (12)."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.geo import (
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    InputPrepSpec,
    ModelError,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    export_batch,
    get_embedding,
    inspect_model_input,
    load_export,
)

SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
SPRING_2021 = TemporalSpec.range("2021-01-01", "2021-06-01")  # the other (mirrored) scene of the sample folder
ROIS = [PointBuffer(121.5, 31.2, 600), PointBuffer(121.495, 31.205, 400)]
MODEL = "test-conv-geo"


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return geo_engine(tmp_path_factory.mktemp("export_rs_embed_engine"), CONV_SPEC)


def per_item(eng: Engine, geo_dir: Path, out: Path, *, rois: list[Any] = ROIS, temporal: TemporalSpec = SUMMER,
             models: list[Any] | None = None, fmt: str = "npz", **kw: Any) -> list[dict[str, Any]]:
    config = kw.pop("config", None) or ExportConfig(format=fmt, resume=True, continue_on_error=True)
    result: list[dict[str, Any]] = export_batch(
        spatials=list(rois), temporal=temporal, models=models or [MODEL], target=ExportTarget.per_item(str(out)),
        backend=f"local:{geo_dir / 's2'}", engine=eng, config=config, **kw)
    return result


def vectors(out: Path) -> list[np.ndarray]:
    """The test model's vector (or grid) of each region file (its key as the plot_utils test checks it)."""
    got = []
    for name in ("p00000", "p00001"):
        with np.load(out / f"{name}.npz") as z:
            got.append(z[next(k for k in z.files if k.startswith("embedding__test"))].copy())
    return got


def runs(out: Path) -> int:
    return len((out / ".items" / "runs.jsonl").read_text().splitlines())


def want(eng: Engine, geo_dir: Path, rois: list[Any] = ROIS, **kw: Any) -> list[np.ndarray]:
    kw = {"temporal": SUMMER, **kw}
    return [np.asarray(get_embedding(MODEL, spatial=r, backend=f"local:{geo_dir / 's2'}", engine=eng, **kw).data)
            for r in rois]


def close(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, w in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# 1. resume


def test_resume_reuses_only_what_the_same_request_made(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    # input_prep given (so this test does not depend on get_embedding's default), until it is changed below
    export = functools.partial(per_item, input_prep="resize")
    expect = functools.partial(want, input_prep="resize")
    first = export(eng, geo_dir, out)
    close(vectors(out), expect(eng, geo_dir))
    again = export(eng, geo_dir, out)  # nothing changed: both regions reused, nothing embedded
    close(vectors(out), expect(eng, geo_dir))
    assert runs(out) == 2

    # another time window: the other scene, so other vectors; every item is recomputed
    spring = export(eng, geo_dir, out, temporal=SPRING_2021)
    new = expect(eng, geo_dir, temporal=SPRING_2021)
    assert not np.allclose(new[0], expect(eng, geo_dir)[0], atol=1e-4)  # the check below can tell them apart
    close(vectors(out), new)
    assert runs(out) == 4 and spring[0]["temporal"]["start"] == "2021-01-01"
    assert [m["resume_skipped"] for m in first] == [False, False]
    assert [m["resume_skipped"] for m in again] == [True, True]
    assert [e["resume_skipped"] for m in again for e in m["models"]] == [True, True]
    assert [m["resume_skipped"] for m in spring] == [False, False]

    # one region's geometry changes under the same name: only that one is recomputed
    moved = [ROIS[0], PointBuffer(121.497, 31.203, 500)]
    m = export(eng, geo_dir, out, rois=moved, temporal=SPRING_2021)
    close(vectors(out), expect(eng, geo_dir, moved, temporal=SPRING_2021))
    assert [x["resume_skipped"] for x in m] == [True, False] and runs(out) == 5

    # pooled -> grid, and the pooling: recomputed, with the new output's values
    grid = export(eng, geo_dir, out, rois=moved, temporal=SPRING_2021, output=OutputSpec.grid())
    close(vectors(out), expect(eng, geo_dir, moved, temporal=SPRING_2021, output=OutputSpec.grid()))
    assert not any(x["resume_skipped"] for x in grid) and runs(out) == 7
    export(eng, geo_dir, out, rois=moved, temporal=SPRING_2021, output=OutputSpec.pooled("max"))
    close(vectors(out), expect(eng, geo_dir, moved, temporal=SPRING_2021, output=OutputSpec.pooled("max")))
    assert runs(out) == 9

    # the model's reading settings (fetch) and its input preparation are part of the request too
    fetch = FetchSpec(scale_m=20)
    export(eng, geo_dir, out, rois=moved, temporal=SPRING_2021, fetch=fetch)
    close(vectors(out), expect(eng, geo_dir, moved, temporal=SPRING_2021, fetch=fetch))
    assert runs(out) == 11
    per_item(eng, geo_dir, out, rois=moved, temporal=SPRING_2021, fetch=fetch, input_prep="tile")
    assert runs(out) == 13
    per_item(eng, geo_dir, out, rois=moved, temporal=SPRING_2021, fetch=fetch, input_prep="tile")
    assert runs(out) == 13  # and the same again is reused


def test_resume_of_the_folder_and_combined_layouts(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    folder = ExportTarget.folder(str(tmp_path / "f"))
    config = ExportConfig(resume=True, continue_on_error=True)
    kw: dict[str, Any] = {"spatials": ROIS, "models": [MODEL], "backend": f"local:{geo_dir / 's2'}", "engine": eng,
                          "config": config}
    m = export_batch(temporal=SUMMER, target=folder, **kw)
    log = tmp_path / "f" / ".items" / "runs.jsonl"
    assert len(log.read_text().splitlines()) == 2
    again = export_batch(temporal=SUMMER, target=folder, **kw)
    assert len(log.read_text().splitlines()) == 2 and again == m  # reused: nothing embedded, the same manifest
    m = export_batch(temporal=SPRING_2021, target=folder, **kw)
    assert len(log.read_text().splitlines()) == 4
    close(list(load_export(tmp_path / "f").embedding(MODEL)), want(eng, geo_dir, temporal=SPRING_2021))
    assert load_export(tmp_path / "f").models[MODEL].inputs is None  # omniembed's GIS folder keeps no inputs

    combined = ExportTarget.combined(str(tmp_path / "all"))
    m = export_batch(temporal=SUMMER, target=combined, **kw)
    assert m["resume_skipped"] is False
    m = export_batch(temporal=SUMMER, target=combined, **kw)
    assert m["resume_skipped"] is True and m["models"][0]["resume_skipped_indices"] == [0, 1]
    m = export_batch(temporal=SPRING_2021, target=combined, **kw)
    assert m["resume_skipped"] is False
    close(list(load_export(tmp_path / "all.npz").embedding(MODEL)), want(eng, geo_dir, temporal=SPRING_2021))
    inputs = load_export(tmp_path / "all.npz").models[MODEL].inputs
    assert inputs is not None
    for x, roi in zip(inputs, ROIS, strict=True):  # regions of other sizes: NaN-padded to the largest
        one = fed(geo_dir, eng, roi, SPRING_2021)
        np.testing.assert_array_equal(x[:, :one.shape[1], :one.shape[2]], one)


def test_fingerprint_covers_model_settings_sensor_and_backend() -> None:
    from omniembed.geo.export import _backend_key, _Model, _request
    from omniembed.geo.export.manifest import request_fingerprint

    when = SUMMER.window()

    def fp(model: _Model, backend: Any = "local:/data", spatial: Any = ROIS[0]) -> str:
        return request_fingerprint(_request(model, spatial, SUMMER, when, OutputSpec.pooled(), None,
                                            _backend_key(backend)))

    base = _Model("prithvi", None, None, None, None)
    same = fp(base)
    assert fp(_Model("prithvi", None, None, None, None)) == same
    assert fp(_Model("prithvi", None, None, None, {"variant": "300m"})) != same
    assert fp(_Model("prithvi", None, None, None, {"variant": "300m"})) != fp(
        _Model("prithvi", None, None, None, {"variant": "600m"}))
    assert fp(_Model("prithvi", SensorSpec("/data", bands=("B02",)), None, None, None)) != same
    assert fp(_Model("prithvi", None, None, "s2", None)) != same
    assert fp(base, backend="local:/other") != same
    assert fp(base, spatial=ROIS[1]) != same
    # a backend object by its fields, an array in it by its pixels
    from omniembed.geo import TensorBackend

    def tensor(value: float) -> TensorBackend:
        return TensorBackend(np.full((4, 8, 8), value, np.float32), (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), "EPSG:32651")

    assert fp(base, backend=tensor(1.0)) == fp(base, backend=tensor(1.0)) != fp(base, backend=tensor(2.0))
    # every byte counts: arrays that differ only past rs-embed's 2 MB manifest digest are other requests
    big = np.zeros((4, 512, 512), np.float32)  # 4 MiB
    changed = big.copy()
    changed[-1, -1, -1] = 1.0
    transform = (10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    assert fp(base, backend=TensorBackend(big, transform, "EPSG:32651")) != fp(
        base, backend=TensorBackend(changed, transform, "EPSG:32651"))


# --------------------------------------------------------------------------------------------------------------
# 2. per-item NetCDF grids are georeferenced


def test_per_item_netcdf_grids_are_read_by_gdal_and_rioxarray(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr
    from pyproj import CRS

    out = tmp_path / "nc"
    gse = ExportModelRequest("gse", sensor=SensorSpec(str(geo_dir / "gse")))
    per_item(eng, geo_dir, out, models=[MODEL, gse], fmt="netcdf", output=OutputSpec.grid())
    for k, roi in enumerate(ROIS):
        path = out / f"p{k:05d}.nc"
        for model, key in (("gse", "gse"), (MODEL, "test_conv_geo")):
            sensor = SensorSpec(str(geo_dir / "gse")) if model == "gse" else None
            emb = get_embedding(model, spatial=roi, temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                                sensor=sensor, output=OutputSpec.grid(), engine=eng).data
            transform = tuple(float(v) for v in emb.attrs["transform"][:6])
            crs = CRS.from_user_input(emb.attrs["crs"])
            with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as ds:
                da = ds[f"embedding__{key}"]
                assert CRS.from_user_input(da.rio.crs) == crs
                np.testing.assert_allclose(tuple(da.rio.transform())[:6], transform)
                np.testing.assert_allclose(da.values, emb.values, rtol=1e-6, atol=1e-7)
            info = json.loads(subprocess.run(["gdalinfo", "-json", f'NETCDF:"{path}":embedding__{key}'],
                                             capture_output=True, check=True, text=True).stdout)
            assert CRS.from_wkt(info["coordinateSystem"]["wkt"]) == crs
            a, b, c, d, e, f = transform  # GDAL's order: c, a, b, f, d, e
            np.testing.assert_allclose(info["geoTransform"], [c, a, b, f, d, e])
            assert info["size"] == [emb.shape[2], emb.shape[1]] and len(info["bands"]) == emb.shape[0]
    # and load_export places them too (each grid's transform read back from the file)
    result = load_export(out)
    assert result.models[MODEL].grids[0].attrs["crs"] == "EPSG:32651"
    np.testing.assert_allclose(result.models[MODEL].grids[0].attrs["transform"][:6],
                               get_embedding(MODEL, spatial=ROIS[0], temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                                             output=OutputSpec.grid(), engine=eng).data.attrs["transform"][:6])


# --------------------------------------------------------------------------------------------------------------
# 7. rs-embed's manifests and files, read by rs-embed's own plot_utils


def plot_utils() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    path = Path(__file__).parent / "rs_embed_compat" / "upstream_plot_utils.py"
    spec = importlib.util.spec_from_file_location("upstream_plot_utils", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fed(geo_dir: Path, eng: Engine, roi: Any, temporal: TemporalSpec = SUMMER) -> np.ndarray:
    report = inspect_model_input(MODEL, spatial=roi, temporal=temporal, backend=f"local:{geo_dir / 's2'}",
                                 return_arrays=True, engine=eng)
    return np.asarray(report["arrays"][0], dtype=np.float32)


def test_plot_utils_read_the_per_item_export(eng: Engine, geo_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pu = plot_utils()
    out = tmp_path / "exports"
    gse = ExportModelRequest("gse", sensor=SensorSpec(str(geo_dir / "gse")))
    # ExportConfig() as rs-embed's users write it: save_inputs=True by default
    manifests = per_item(eng, geo_dir, out, models=[MODEL, gse], output=OutputSpec.grid(),
                         config=ExportConfig(continue_on_error=True))
    monkeypatch.chdir(tmp_path)  # plot_embedding_pseudocolor saves its PNGs in the working directory
    for k, roi in enumerate(ROIS):
        grid = get_embedding(MODEL, spatial=roi, temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                             output=OutputSpec.grid(), engine=eng)
        manifest, z = pu.inspect_export_npz(out / f"p{k:05d}.npz")
        printed = capsys.readouterr().out
        assert "input=input_chw__test_conv_geo | embedding=embedding__test_conv_geo" in printed
        assert "gse: input=None | embedding=embedding__gse" in printed  # a product has no model input
        assert "No model inputs found" not in printed and "[missing]" not in printed
        assert "input_chw__test_conv_geo <- test-conv-geo" in printed
        np.testing.assert_array_equal(z["input_chw__test_conv_geo"], fed(geo_dir, eng, roi))

        entry = {e["model"]: e for e in manifest["models"]}[MODEL]
        assert entry["status"] == "ok" and entry["sensor"]["bands"] == ["B02", "B03", "B04", "B08"]
        assert entry["embedding"]["shape"] == list(grid.data.shape) and entry["embedding"]["dtype"] == "float32"
        assert entry["input"]["shape"] == [4, *fed(geo_dir, eng, roi).shape[1:]] and len(entry["input"]["sha1"]) == 40
        assert entry["meta"]["model"] == MODEL and entry["meta"]["grid_hw"] == list(grid.data.shape[1:])
        assert manifest == json.loads((out / f"p{k:05d}.json").read_text()) == manifests[k] | {
            "manifest_path": str(out / f"p{k:05d}.json")}

        loaded = dict(pu.load_manifest_grid_embeddings(manifest, z))
        assert set(loaded) == {MODEL, "gse"}
        np.testing.assert_allclose(loaded[MODEL].data, grid.data.values, rtol=1e-6, atol=1e-7)
        assert loaded[MODEL].meta["model"] == MODEL
        shown = pu.visualize_manifest_embeddings(manifest, z)
        printed = capsys.readouterr().out
        assert "No saved grid embeddings found" not in printed and [name for name, _ in shown] == [MODEL, "gse"]
        pu.visualize_manifest_inputs(manifest, z)
        printed = capsys.readouterr().out
        assert "Visualizing exact model inputs" in printed and "No model inputs found" not in printed
        z.close()
    assert list(tmp_path.glob("*_pca.png"))  # the helpers drew the embeddings
    # load_export gives the inputs too
    result = load_export(out)
    np.testing.assert_array_equal(result.models[MODEL].inputs[0], fed(geo_dir, eng, ROIS[0]))


def test_save_inputs_false_and_combined_inputs(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    m = per_item(eng, geo_dir, tmp_path / "noin", config=ExportConfig(save_inputs=False, continue_on_error=True))
    assert m[0]["models"][0]["input"] is None
    with np.load(tmp_path / "noin" / "p00000.npz") as z:
        assert not [k for k in z.files if k.startswith("input")]

    combined = export_batch(spatials=[*ROIS, PointBuffer(0.0, 0.0, 100)], temporal=SUMMER, models=[MODEL],
                            target=ExportTarget.combined(str(tmp_path / "all")), backend=f"local:{geo_dir / 's2'}",
                            engine=eng, config=ExportConfig(continue_on_error=True, input_prep=InputPrepSpec.tile()))
    entry = combined["models"][0]
    assert entry["status"] == "partial" and entry["failed_indices"] == [2]
    assert combined["summary"] == {"total_models": 1, "failed_models": 0, "partial_models": 1, "ok_models": 0}
    assert entry["embeddings"] == {"npz_key": "embeddings__test_conv_geo", "shape": [3, 8], "dtype": "float32"}
    with np.load(tmp_path / "all.npz") as z:
        ref = entry["inputs"]
        stacked = z[ref["npz_key"]] if "npz_key" in ref else None
        firsts = [z[k] for k in ref.get("npz_keys", [])] if stacked is None else list(stacked)
    assert ref["indices"] == [0, 1]
    for x, roi in zip(firsts, ROIS, strict=True):
        np.testing.assert_array_equal(x, fed(geo_dir, eng, roi))


# --------------------------------------------------------------------------------------------------------------
# 12. an unknown model fails alone


def test_unknown_model_is_recorded_and_the_others_written(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    ms = per_item(eng, geo_dir, tmp_path / "p", models=[MODEL, "no-such-model"])
    close(vectors(tmp_path / "p"), want(eng, geo_dir))
    for m in ms:
        assert m["status"] == "partial" and m["summary"] == {"total_models": 2, "failed_models": 1, "ok_models": 1}
        bad = m["models"][1]
        assert bad["model"] == "no-such-model" and bad["status"] == "failed" and bad["embedding"] is None
        assert bad["error_code"] == "model_not_found" and "no-such-model" in bad["error"]
        assert bad["error_detail"]["code"] == "model_not_found"

    combined = export_batch(spatials=ROIS, temporal=SUMMER, models=["no-such-model", MODEL],
                            target=ExportTarget.combined(str(tmp_path / "all")), backend=f"local:{geo_dir / 's2'}",
                            engine=eng, config=ExportConfig(continue_on_error=True))
    assert combined["status"] == "partial"
    assert combined["summary"] == {"total_models": 2, "failed_models": 1, "partial_models": 0, "ok_models": 1}
    assert combined["models"][0]["status"] == "failed" and combined["models"][0]["error_code"] == "model_not_found"
    close(list(load_export(tmp_path / "all.npz").embedding(MODEL)), want(eng, geo_dir))

    # continue_on_error=False (rs-embed's default): refused before anything is embedded or written, as rs-embed
    # refuses an unknown model when it resolves the export's models
    with pytest.raises(ModelError, match="no-such-model"):
        per_item(eng, geo_dir, tmp_path / "strict", models=[MODEL, "no-such-model"], config=ExportConfig())
    assert not (tmp_path / "strict").exists() or not list((tmp_path / "strict").glob("*.npz"))


def test_saved_inputs_come_from_the_embedding_read(eng: Engine, geo_dir: Path, tmp_path: Path) -> None:
    """``save_inputs=True`` saves the raster the embedding was made from: each region is read once (it used
    to be read again through ``inspect_model_input``), and the saved input equals what that function reads."""
    from omniembed.geo import LocalBackend

    reads: list[Any] = []

    class CountingBackend(LocalBackend):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            reads.append(args[0])
            return super().read(*args, **kwargs)

    backend = CountingBackend(root=str(geo_dir / "s2"))
    export_batch(spatials=list(ROIS), temporal=SUMMER, models=[MODEL], target=ExportTarget.per_item(str(tmp_path)),
                 backend=backend, engine=eng, config=ExportConfig(save_inputs=True, show_progress=False))
    assert len(reads) == len(ROIS)
    for k, roi in enumerate(ROIS):
        want = inspect_model_input(MODEL, spatial=roi, temporal=SUMMER, backend=f"local:{geo_dir / 's2'}",
                                   return_arrays=True, engine=eng)["arrays"]
        with np.load(tmp_path / f"p{k:05d}.npz") as z:
            np.testing.assert_array_equal(z["input_chw__test_conv_geo"], want[0])
        manifest = json.loads((tmp_path / f"p{k:05d}.json").read_text())
        entry = manifest["models"][0]["input"]
        assert entry["npz_key"] == "input_chw__test_conv_geo" and entry["inspection"]["ok"]


def test_refused_settings_stop_the_export_before_anything_is_written(eng: Engine, geo_dir: Path,
                                                                      tmp_path: Path) -> None:
    """As rs-embed, every model of an export is checked first (name, settings, modality): a refused setting of the
    second model used to be raised only after the first model's items were embedded and saved."""
    bad = ExportModelRequest.configure("prithvi", variant="huge")
    with pytest.raises(ModelError, match="prithvi_eo_v2_600_tl") as info:
        export_batch(spatials=list(ROIS), temporal=SUMMER, models=[MODEL, bad], target=ExportTarget.per_item(
            str(tmp_path / "out")), backend=f"local:{geo_dir / 's2'}", engine=eng, config=ExportConfig())
    assert info.value.param == "variant"
    assert not list((tmp_path / "out").rglob("*.npz"))  # nothing embedded, nothing written
    with pytest.raises(ModelError, match="modality"):
        export_batch(spatials=list(ROIS), temporal=SUMMER, models=[MODEL, ExportModelRequest("gse", modality="s1")],
                     target=ExportTarget.per_item(str(tmp_path / "out2")), backend=f"local:{geo_dir / 's2'}",
                     engine=eng, config=ExportConfig())
    assert not list((tmp_path / "out2").rglob("*.npz"))
