"""Issue 23, defects 6, 9 and 12 (second half): the geo face accepts what rs-embed 0.3.1 accepts and raises
its classes (``ModelError`` for ``input_prep`` and for bands a source lacks), takes model settings
(``variant=``) as data on the model's spec, and answers an unknown Earth-observation name with geo/image
models only."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from geo_data import CONV_SPEC, geo_engine, shared_geo_dir
from omniembed.api import Engine
from omniembed.errors import ParameterInvalid
from omniembed.geo import (
    BBox,
    ExportModelRequest,
    ExportTarget,
    InputPrepSpec,
    Model,
    PointBuffer,
    SensorSpec,
    SpecError,
    TemporalSpec,
    export_batch,
    get_embedding,
    get_embeddings_batch,
    inspect_model_input,
)
from omniembed.geo.errors import ModelError, ModelRequestInvalid, ModelWeightsMissing, UnknownModel
from omniembed.model_config import describe_settings, resolve_settings, selected_model
from omniembed.models import default_registry

X0, Y0 = 355590.0, 3454240.0
SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture
def eng(tmp_path: Path) -> Engine:
    return geo_engine(tmp_path, CONV_SPEC)


# ------------------------------------------------------------------------------------ defect 9: acceptance


def test_values_rs_embed_accepts_are_accepted() -> None:
    # rs-embed's TemporalSpec.validate takes int(year): "2022" and NumPy integers name the year
    for year in ("2022", np.int64(2022), 2022.0):
        spec = TemporalSpec.year(year)  # type: ignore[arg-type]
        spec.validate()
        assert spec.window().start == date(2022, 1, 1) and spec.window().end == date(2023, 1, 1)
    assert TemporalSpec.year(9999).window().start == date(9999, 1, 1)  # the last year has a window too
    # rs-embed compares bounds as numbers: NumPy floats are fine
    BBox(np.float32(121.0), np.float32(31.0), np.float64(121.5), np.float32(31.4)).validate()
    PointBuffer(np.float32(121.5), np.float32(31.2), np.int64(500)).validate()
    # rs-embed's _resolve_input_prep_spec clamps max_tiles to >= 1 and tile_snap_frac to [0, 0.5]
    assert InputPrepSpec.tile(max_tiles=0).resolved().max_tiles == 1
    assert InputPrepSpec.coerce(InputPrepSpec.tile(max_tiles=-3)).max_tiles == 1
    assert InputPrepSpec.tile(tile_snap_frac=0.9).resolved().tile_snap_frac == 0.5
    assert InputPrepSpec.tile(tile_snap_frac=-1).resolved().tile_snap_frac == 0.0
    # ... takes int() of sizes, and lower-cases the mode of a spec as of a string
    fixed = InputPrepSpec(mode=" TILE ", tile_size=32.0, tile_stride="16", max_tiles_hard=np.int64(8))  # type: ignore[arg-type]
    assert (fixed.resolved().mode, fixed.resolved().tile_size, fixed.resolved().tile_stride,
            fixed.resolved().max_tiles_hard) == ("tile", 32, 16, 8)
    assert type(fixed.resolved().tile_size) is int


@pytest.mark.parametrize(
    ("value", "param"),
    [("crop", "input_prep"), (InputPrepSpec(mode="crop"), "input_prep"), (InputPrepSpec.tile(tile_size=0), "tile_size"),
     (InputPrepSpec.tile(tile_stride=-4), "tile_stride"), (InputPrepSpec.tile(tile_size=2.5), "tile_size"),  # type: ignore[arg-type]
     (3, "input_prep")],
)
def test_invalid_input_prep_is_a_model_error(eng: Engine, value: object, param: str) -> None:
    # rs-embed raises ModelError for input_prep: `except ModelError` must catch it (it is a SpecError too)
    with pytest.raises(ModelError) as info:
        get_embedding("test-conv-geo", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER,
                      input_prep=value, engine=eng)  # type: ignore[arg-type]
    assert isinstance(info.value, SpecError) and isinstance(info.value, ParameterInvalid)
    assert info.value.param == param and info.value.code == "parameter_invalid"
    assert param in info.value.message


def test_a_band_the_source_lacks_is_a_model_error(eng: Engine, geo_dir: Path) -> None:
    box = BBox(X0, Y0 - 320, X0 + 320, Y0, crs="EPSG:32651")
    sensor = SensorSpec(str(geo_dir / "s2"), bands=("B02", "B03", "B04", "B12"))  # the folder has no B12
    with pytest.raises(ModelError) as info:
        get_embedding("test-conv-geo", spatial=box, temporal=SUMMER, sensor=sensor, engine=eng)
    assert isinstance(info.value, ParameterInvalid) and info.value.param == "bands"
    assert info.value.code == "parameter_invalid" and "B12" in info.value.message
    out = get_embeddings_batch("test-conv-geo", spatials=[box], temporal=SUMMER, sensor=sensor, engine=eng,
                               errors="return")
    assert isinstance(out[0], ModelError) and out[0].index == 0
    with pytest.raises(ModelError, match="B12"):  # and where only the input is inspected
        inspect_model_input("test-conv-geo", spatial=box, temporal=SUMMER, sensor=sensor, engine=eng)
    with pytest.raises(ModelError, match="max_tiles_hard"):  # a region over the hard tile limit
        get_embedding("test-conv-geo", spatial=BBox(X0, Y0 - 2560, X0 + 2560, Y0, crs="EPSG:32651"),
                      temporal=SUMMER, backend=f"local:{geo_dir / 's2'}", engine=eng,
                      input_prep=InputPrepSpec.tile(max_tiles=1, max_tiles_hard=2))


# ------------------------------------------------------------------------------- defect 6: model settings


def test_prithvi_variant_is_data_on_its_spec() -> None:
    registry = default_registry()
    prithvi = registry.resolve("prithvi")
    # rs-embed's spellings of its three TL variants, and omniembed's own 300M checkpoint (the default)
    for given, canonical in [("100_tl", "prithvi_eo_v2_100_tl"), ("300M_TL", "prithvi_eo_v2_300_tl"),
                             ("prithvi_eo_v2_600_tl", "prithvi_eo_v2_600_tl"), ("300", "prithvi_eo_v2_300")]:
        config = resolve_settings(prithvi, {"variant": given})
        assert config == {"variant": canonical}
        target = registry.resolve(selected_model(prithvi, config))
        assert target.name == ("prithvi" if canonical == "prithvi_eo_v2_300" else canonical)
    assert resolve_settings(prithvi, {}) == {"variant": "prithvi_eo_v2_300"}
    tl = registry.resolve("prithvi_eo_v2_600_tl")
    assert selected_model(tl, resolve_settings(tl, {})) == tl.name  # a variant named directly runs itself
    assert (tl.dim, tl.weights.hub_id, tl.weights.marker) == (1280, "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL",
                                                              "Prithvi_EO_V2_600M_TL.pt")
    shown = describe_settings(prithvi)["variant"]
    assert shown["default"] == "prithvi_eo_v2_300" and shown["type"] == "string"
    assert shown["choices"] == ["prithvi_eo_v2_300", "prithvi_eo_v2_100_tl", "prithvi_eo_v2_300_tl",
                                "prithvi_eo_v2_600_tl"]
    assert shown["aliases"]["100m_tl"] == "prithvi_eo_v2_100_tl"
    assert describe_settings(registry.resolve("remoteclip")) == {}


@pytest.mark.parametrize(("kwargs", "param", "named"), [
    ({"variant": "large"}, "variant", "prithvi_eo_v2_100_tl"),
    ({"temporal_mode": "single"}, "temporal_mode", "variant"),
])
def test_unknown_setting_or_value_names_the_allowed_ones(tmp_path: Path, kwargs: dict[str, str], param: str,
                                                         named: str) -> None:
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with pytest.raises(ModelRequestInvalid) as info:
        get_embedding("prithvi", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng, **kwargs)
    assert isinstance(info.value, ModelError) and info.value.param == param and named in info.value.message
    with pytest.raises(ModelRequestInvalid, match="does not accept model-specific keyword arguments"):
        get_embedding("remoteclip", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng, **kwargs)


def test_model_class_checks_its_settings_on_construction(tmp_path: Path) -> None:
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with pytest.raises(ModelRequestInvalid, match="prithvi_eo_v2_600_tl"):
        Model("prithvi", variant="huge", engine=eng)
    model = Model("prithvi_eo_v2_s2_6b", variant="600m_tl", engine=eng, backend=f"local:{tmp_path}")
    assert model.name == "prithvi" and model.settings["variant"] == "600m_tl"
    with pytest.raises(ModelWeightsMissing, match=r"Prithvi_EO_V2_600M_TL\.pt"):
        model.get_embedding(PointBuffer(121.5, 31.2, 500), temporal=SUMMER)


def test_a_variant_without_weights_names_its_checkpoint(tmp_path: Path) -> None:
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with pytest.raises(ModelWeightsMissing) as info:
        get_embedding("prithvi", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng,
                      backend=f"local:{tmp_path}", variant="600m_tl")
    assert info.value.code == "weights_not_found" and info.value.model == "prithvi_eo_v2_600_tl"
    assert "Prithvi_EO_V2_600M_TL.pt" in info.value.message
    assert "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL" in info.value.message


def test_a_variant_loads_its_own_weights(tmp_path: Path, geo_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    import rasterio

    from omniembed.geo import TensorBackend
    from test_geo_models import CFG, prithvi_state_dict

    models = tmp_path / "models"
    for name, scale in (("prithvi", 1.0), ("prithvi_eo_v2_100_tl", -1.0)):  # two different checkpoints
        (models / name).mkdir(parents=True)
        sd = {k: (v * scale if k.endswith("norm.bias") else v) for k, v in prithvi_state_dict().items()}
        torch.save(sd, models / name / ("Prithvi_EO_V2_100M_TL.pt" if scale < 0 else "Prithvi_EO_V2_tiny.pt"))
        (models / name / "config.json").write_text(json.dumps({"pretrained_cfg": CFG}))
    eng = geo_engine(tmp_path, model_dir=models)
    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        real = src.read().astype(np.float32)[:, 100:132, 100:132]
        transform = src.transform
    six = np.concatenate([real, real[3:4] * 0.8, real[2:3] * 1.3])
    backend = TensorBackend(np.stack([six, six]), transform @ __import__("affine").Affine.translation(100, 100),
                            "EPSG:32651", bands=("B02", "B03", "B04", "B8A", "B11", "B12"))
    box = BBox(X0 + 1000, Y0 - 1320, X0 + 1320, Y0 - 1000, crs="EPSG:32651")
    common = {"spatial": box, "temporal": SUMMER, "backend": backend, "runtime": "torch", "precision": "fp32",
              "sensor": SensorSpec("tensor", composite="frames"), "engine": eng}
    default = get_embedding("prithvi", **common)
    variant = get_embedding("prithvi", variant="100m_tl", **common)
    direct = get_embedding("prithvi_eo_v2_100_tl", **common)
    assert variant.meta["model"] == direct.meta["model"] == "prithvi_eo_v2_100_tl"
    assert default.meta["model"] == "prithvi"
    assert variant.meta["model_config"] == {"variant": "prithvi_eo_v2_100_tl"}
    np.testing.assert_allclose(variant.data, direct.data, rtol=1e-6, atol=1e-6)
    assert not np.allclose(variant.data, default.data, atol=1e-3)  # the other checkpoint ran


def test_export_passes_model_settings_on(tmp_path: Path) -> None:
    # rs-embed's ExportModelRequest.configure(name, variant=...): export_batch hands them to the model
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    for variant, error, named in (("large", ModelRequestInvalid, "prithvi_eo_v2_100_tl"),
                                  ("300_tl", ModelWeightsMissing, "Prithvi_EO_V2_300M_TL.pt")):
        with pytest.raises(error) as info:
            export_batch(spatials=[PointBuffer(121.5, 31.2, 500)], temporal=SUMMER, engine=eng,
                         backend=f"local:{tmp_path}", target=ExportTarget.combined(str(tmp_path / "out.npz")),
                         models=[ExportModelRequest.configure("prithvi", variant=variant)])
        assert named in info.value.message


def test_hf_checkpoint_collection_is_refused_with_the_reason(eng: Engine) -> None:
    with pytest.raises(ModelRequestInvalid) as info:
        get_embedding("test-conv-geo", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng,
                      sensor=SensorSpec("hf:MVRL/remote-clip-vit-base-patch32", bands=("B04", "B03", "B02")))
    assert info.value.param == "sensor" and "OMNIEMBED_MODEL_DIR" in info.value.message


# -------------------------------------------------------------------- defect 12: same-modality suggestions


def test_unknown_eo_model_suggests_only_models_usable_on_regions(eng: Engine) -> None:
    with pytest.raises(UnknownModel) as info:
        get_embedding("clay", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng)
    message = info.value.message
    audio = [s.name for s in eng.registry if {str(m) for m in s.modalities} <= {"audio", "text"}]
    assert "clap" in audio  # the audio model the old hint offered for "clay"
    assert not [name for name in audio if repr(name) in message], message
    assert "'prithvi'" in message and "list_models" in message
    with pytest.raises(UnknownModel, match="Did you mean 'prithvi'"):
        get_embedding("prithvii", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng)
    with pytest.raises(UnknownModel, match=r"Did you mean 'prithvi'.*cannot be checked") as info:
        get_embedding("prithvii", spatial=PointBuffer(121.5, 31.2, 500), temporal=SUMMER, engine=eng,
                      variant="100_tl")
    assert info.value.param == "model" and info.value.code == "model_not_found"
    # the registry's hint takes several modalities: any of them
    assert eng.registry.suggest("clap", ("geo", "image")) == []
    assert eng.registry.suggest("clap", ("audio", "geo")) == ["clap"]
    assert eng.registry.suggest("clay") != [] and "clap" in eng.registry.suggest("clay")  # without a modality


def test_every_face_takes_model_settings(tmp_path: Path) -> None:
    """describe_model shows them; inspect_model_input and the bring-your-own-data functions check them as
    get_embedding does (they refused any model setting before)."""
    from omniembed.geo import UserData, describe_model, get_embedding_from_data, inspect_model_input

    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    shown = describe_model("prithvi", engine=eng)["model_config"]
    assert shown == describe_settings(default_registry().resolve("prithvi")) and "variant" in shown
    assert describe_model("remoteclip", engine=eng)["model_config"] == {}
    region = PointBuffer(121.5, 31.2, 500)
    with pytest.raises(ModelRequestInvalid, match="prithvi_eo_v2_600_tl") as info:
        inspect_model_input("prithvi", spatial=region, temporal=SUMMER, engine=eng, variant="huge")
    assert info.value.param == "variant"
    six = np.ones((6, 32, 32), np.float32) * 1000
    data = UserData(data=six, collection="s2", spatial=region, bands=("B02", "B03", "B04", "B8A", "B11", "B12"))
    with pytest.raises(ModelRequestInvalid, match="prithvi_eo_v2_600_tl"):
        get_embedding_from_data("prithvi", data, engine=eng, variant="huge")
    with pytest.raises(ModelWeightsMissing, match=r"Prithvi_EO_V2_600M_TL\.pt"):  # the variant's own weights
        get_embedding_from_data("prithvi", data, engine=eng, variant="600m_tl")
