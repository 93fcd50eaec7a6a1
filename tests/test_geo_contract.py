"""A contract over every registered geo-capable model (native geo models, precomputed products, image models on
RGB composites): the engine's grid for a region equals the model's own direct forward pass on the same prepared
pixels (``region_inputs``), in both runtimes, and the meta says which runtime ran.

Weights: efficientnet-lite0 ships real ones; the others are tiny random models saved in their official formats
(open_clip for remoteclip, the Prithvi checkpoint layout, transformers folders for CLIP and DINOv2) and loaded
through the same code as real weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import geo_engine, shared_geo_dir
from image_data import save_tiny_clip, save_tiny_dinov2
from omniembed.api import Engine
from omniembed.embedding import Modality
from omniembed.geo import BBox, OutputSpec, SensorSpec, TemporalSpec, TensorBackend, get_embedding, region_inputs
from omniembed.models import default_registry
from omniembed.pipeline import normalize, pool

torch = pytest.importorskip("torch")
X0, Y0 = 355590.0, 3454240.0
GEO_CAPABLE = sorted(s.name for s in default_registry() if {Modality.GEO, Modality.IMAGE} & set(s.modalities))


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    from test_geo_models import CFG, openclip_state_dict, prithvi_state_dict

    root = tmp_path_factory.mktemp("contract-models")
    (root / "remoteclip").mkdir()
    torch.save(openclip_state_dict(), root / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    (root / "prithvi").mkdir()
    torch.save(prithvi_state_dict(), root / "prithvi" / "Prithvi_EO_V2_tiny.pt")
    (root / "prithvi" / "config.json").write_text(json.dumps({"pretrained_cfg": CFG}))
    for name, checkpoint in (("prithvi_eo_v2_100_tl", "Prithvi_EO_V2_100M_TL.pt"),
                             ("prithvi_eo_v2_300_tl", "Prithvi_EO_V2_300M_TL.pt"),
                             ("prithvi_eo_v2_600_tl", "Prithvi_EO_V2_600M_TL.pt")):  # the TL layout, tiny
        (root / name).mkdir()
        sd = prithvi_state_dict() | {"encoder.temporal_embed_enc.scale": torch.tensor([0.3]),
                                     "encoder.location_embed_enc.scale": torch.tensor([0.2])}
        torch.save(sd, root / name / checkpoint)
        tl = CFG | {"coords_encoding": ["time", "location"], "coords_scale_learn": True}
        (root / name / "config.json").write_text(json.dumps({"pretrained_cfg": tl}))
    for name in ("clip-vit-b32", "clip-vit-l14"):
        save_tiny_clip(root / name)
    save_tiny_dinov2(root / "dinov2-small")
    from test_geo_galileo import save_tiny_galileo

    save_tiny_galileo(root)
    return geo_engine(tmp_path_factory.mktemp("contract-engine"), model_dir=root)


def _where(name: str, geo_dir: Path) -> dict[str, Any]:
    """A region and its source for each kind of model (all real rasters made by tests/data/make_geo_data.py)."""
    if name == "gse":
        box = BBox(X0 + 300, Y0 - 1500, X0 + 1500, Y0 - 300, crs="EPSG:32651")
        return {"spatial": box, "temporal": TemporalSpec.year(2022), "backend": f"local:{geo_dir / 'gse'}"}
    if name.startswith("prithvi"):  # six bands, two dated frames: the real S2 bands plus two derived from them
        import datetime

        import rasterio
        from affine import Affine

        with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
            real = src.read().astype(np.float32)[:, 100:132, 100:132]
            transform = src.transform
        six = np.concatenate([real, real[3:4] * 0.8, real[2:3] * 1.3])
        backend = TensorBackend(np.stack([six[:, ::-1], six]), transform @ Affine.translation(100, 100),
                                "EPSG:32651", bands=("B02", "B03", "B04", "B8A", "B11", "B12"),
                                dates=(datetime.date(2021, 3, 1), datetime.date(2022, 7, 15)))
        box = BBox(X0 + 1000, Y0 - 1320, X0 + 1320, Y0 - 1000, crs="EPSG:32651")
        return {"spatial": box, "backend": backend, "sensor": SensorSpec("tensor", composite="frames")}
    if name.startswith("galileo"):  # ten S2 bands (six derived from the real four), two dated frames
        from test_geo_galileo import galileo_where
        return galileo_where(geo_dir)
    box = BBox(X0 + 500, Y0 - 1140, X0 + 1140, Y0 - 500, crs="EPSG:32651")
    return {"spatial": box, "temporal": TemporalSpec.year(2022), "backend": f"local:{geo_dir / 's2'}"}


def _direct(eng: Engine, name: str, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's own eager fp32 forward pass on the feeds, as a grid (D, rows, cols) for one tile, and its
    pooled head where the model has one."""
    spec = eng.spec(name)
    modality = Modality.GEO if Modality.GEO in spec.modalities else Modality.IMAGE
    encoder: Any = eng.load(name, runtime="torch", precision="fp32").encoders[modality]
    if not hasattr(encoder, "module"):  # precomputed: the raster read is the embedding
        return np.asarray(feeds["grid"][0]), None
    with torch.inference_mode():
        raw = encoder.module(*(torch.from_numpy(feeds[n]) for n in encoder.input_names))
    head = raw[1].float().numpy()[0] if isinstance(raw, tuple) else None  # a pooled head comes second
    out = (raw[0] if isinstance(raw, tuple) else raw).float().numpy()
    if out.ndim == 4:  # a geo model's grid
        return out[0], head
    vector = pool(out, None, spec.pooling)  # an image model: its embedding of the tile is one cell
    return (normalize(vector) if spec.normalize else vector)[0][:, None, None], None


@pytest.mark.parametrize("name", GEO_CAPABLE)
def test_engine_equals_the_models_direct_forward_in_both_runtimes(
    name: str, eng: Engine, geo_dir: Path, record_property: Any
) -> None:
    where = _where(name, geo_dir)
    feeds = region_inputs(name, engine=eng, **where)
    want, head = _direct(eng, name, feeds)
    assert np.isfinite(want).all() and np.abs(want).max() > 0
    for runtime in ("onnx", "torch"):
        emb = get_embedding(name, output=OutputSpec.grid(), runtime=runtime, precision="fp32", engine=eng, **where)
        got = np.asarray(emb.data.values)
        assert got.shape == want.shape
        diff = float(np.abs(got - want).max())
        record_property(f"max_abs_diff_{runtime}", diff)
        print(f"{name} {runtime}: max |engine - direct| = {diff:.2e} (max |direct| {np.abs(want).max():.2f})")
        assert diff <= 1e-4 * max(1.0, float(np.abs(want).max())), (name, runtime, diff)
        ran = "precomputed" if name == "gse" else runtime
        assert emb.meta.runtime == ran and emb.meta.precision == "fp32" and emb.meta.modality == "geo"
        pooled = get_embedding(name, runtime=runtime, precision="fp32", engine=eng, **where)
        if head is not None:  # the model's own pooled head (remoteclip: CLIP's projected image embedding)
            np.testing.assert_allclose(pooled.data, head, rtol=1e-4, atol=1e-5)
        else:  # the mean of the grid's cells
            np.testing.assert_allclose(pooled.data, got.reshape(got.shape[0], -1).mean(axis=1), rtol=1e-5,
                                       atol=1e-6)


def test_default_runtime_on_cpu_is_onnx_and_torch_when_asked(eng: Engine, geo_dir: Path) -> None:
    where = _where("remoteclip", geo_dir)
    default = get_embedding("remoteclip", precision="fp32", engine=eng, **where)
    assert default.meta.runtime == "onnx" and default.meta.device == "cpu"
    assert default.meta.timings is not None and default.meta.timings.encode_ms > 0
    asked = get_embedding("remoteclip", runtime="torch", precision="fp32", engine=eng, **where)
    assert asked.meta.runtime == "torch"
    np.testing.assert_allclose(default.data, asked.data, rtol=1e-4, atol=1e-5)


def test_auto_precision_uses_the_verified_bf16_where_the_cpu_has_it(eng: Engine, geo_dir: Path) -> None:
    """remoteclip and prithvi declare auto bf16 (measured min cosine to fp32 >= 0.9995 in
    bench/geo_throughput.py); where the CPU has native bf16 it runs compiled on torch, else ONNX fp32."""
    from omniembed.runtime.precision import cpu_supports_bf16

    where = _where("remoteclip", geo_dir)
    fp32 = get_embedding("remoteclip", output=OutputSpec.grid(), precision="fp32", engine=eng, **where)
    auto = get_embedding("remoteclip", output=OutputSpec.grid(), precision="auto", engine=eng, **where)
    if cpu_supports_bf16():
        assert (auto.meta.runtime, auto.meta.precision) == ("torch", "bf16")
    else:
        assert (auto.meta.runtime, auto.meta.precision) == ("onnx", "fp32")
    a = np.asarray(auto.data.values).reshape(auto.data.shape[0], -1).T
    b = np.asarray(fp32.data.values).reshape(fp32.data.shape[0], -1).T
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9995, cos.min()
