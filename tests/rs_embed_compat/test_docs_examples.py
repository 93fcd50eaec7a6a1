"""rs-embed's documentation examples, run as a user would: the upstream text with only the import line,
``backend=`` and (where it names one) the data path changed, each in a fresh Python process with the default
engine, in a folder of its own (the examples write ``exports/...`` relative to it).

Upstream: https://github.com/cybergis/rs-embed, commit ``6f46d0c`` (main after 0.2.1), ``docs/api_embedding.md``,
``docs/api_export.md`` and the Supported Models pages ``docs/models/{remoteclip,prithvi,galileo,gse}.md``
(Apache-2.0, copyright the rs-embed authors); the API they show did not change in 0.3.1. Which examples are taken
and which are not, and why: README.md here.

The data: the real Sentinel-2 sample (tests/data/make_geo_data.py) as one folder ``s2`` named in
``OMNIEMBED_GEO_SOURCES``, with the ten bands the example models read: B02, B03, B04 and B08 are the sample's
own; B8A is the sample's B08 (the narrow and broad NIR bands of Sentinel-2 differ by a few percent over
vegetation) and the red-edge bands B05-B07 and SWIR B11/B12 are derived from red and NIR (no such band ships in
any package here). A copy sits under the examples' second point. The gse page's example reads the tests' 64-band
stand-in raster, dated 2021. Weights: ``remoteclip``, ``prithvi`` (and its 300M-TL variant) and ``galileo`` load
small random checkpoints in their official layouts from ``OMNIEMBED_MODEL_DIR`` (real weights cannot be
downloaded here). Examples left at ``backend="auto"`` run with only the import changed: the user names Earth
Engine's collection ids as local sources (``with_collections``).

What is asserted is what rs-embed documents: the return types, the shapes, the meta keys (rs-embed's own
``META_REQUIRED_KEYS``, imported from the rs-embed 0.3.1 wheel that ``make test`` installs), a meta that is a
JSON-serialisable ``dict``, and the files an export writes with the array keys rs-embed names them by."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import shared_geo_dir

torch = pytest.importorskip("torch")

# --------------------------------------------------------------------------------- the examples, upstream text

# docs/api_embedding.md, "get_embedding", example. Changed: the import line; backend="auto" -> "local:s2".
EMBEDDING_EXAMPLE = '''
from omniembed.geo import FetchSpec, PointBuffer, TemporalSpec, OutputSpec, get_embedding

emb = get_embedding(
    "remoteclip",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(pooling="mean"),
    fetch=FetchSpec(scale_m=10),
    backend="local:s2",
    device="auto",
    input_prep="tile",  # default; pass "resize" to downsample instead
)
vec = emb.data  # (D,)
'''

# docs/api_embedding.md, "get_embeddings_batch", example. Changed: the import line; backend= added.
BATCH_EXAMPLE = '''
from omniembed.geo import PointBuffer, TemporalSpec, get_embeddings_batch

spatials = [
    PointBuffer(121.5, 31.2, 2048),
    PointBuffer(120.5, 30.2, 2048),
]
embs = get_embeddings_batch(
    "remoteclip",
    spatials=spatials,
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    backend="local:s2",
)
'''

# docs/api_export.md, "export_batch", example. Changed: the import line; backend= added.
EXPORT_COMBINED = '''
from omniembed.geo import export_batch, ExportConfig, ExportTarget, PointBuffer, TemporalSpec

export_batch(
    spatials=[PointBuffer(121.5, 31.2, 2048)],
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=["remoteclip"],
    target=ExportTarget.combined("exports/run"),
    config=ExportConfig(),
    backend="local:s2",
)
'''

# docs/api_export.md, "Per-item export for many points". Changed: the import line; backend= added.
EXPORT_PER_ITEM = '''
from omniembed.geo import export_batch, ExportConfig, ExportTarget, PointBuffer, TemporalSpec

spatials = [
    PointBuffer(121.5, 31.2, 2048),
    PointBuffer(120.5, 30.2, 2048),
]

export_batch(
    spatials=spatials,
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=["remoteclip", "prithvi"],
    target=ExportTarget.per_item("exports", names=["p1", "p2"]),
    config=ExportConfig(
        chunk_size=32,
        num_workers=8,
    ),
    input_prep="tile",
    backend="local:s2",
)
'''

# docs/api_export.md, "Per-model overrides" (ExportModelRequest with fetch=) and "ExportConfig" (the config
# shown), put in one call as the page describes them. Changed: the import line; backend= added.
EXPORT_MODEL_REQUEST = '''
from omniembed.geo import (ExportConfig, ExportModelRequest, ExportTarget, FetchSpec, PointBuffer,
                           TemporalSpec, export_batch)

config = ExportConfig(
    format="npz",
    save_inputs=True,
    save_embeddings=True,
    save_manifest=True,
    resume=True,
)
models=[
    "remoteclip",
    ExportModelRequest("prithvi", fetch=FetchSpec(scale_m=30)),
]
export_batch(
    spatials=[PointBuffer(121.5, 31.2, 2048)],
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=models,
    target=ExportTarget.combined("exports/combined_run"),
    config=config,
    backend="local:s2",
)
'''

# docs/api_export.md, "Shared fetch for all models". Changed: the import line; backend= added.
EXPORT_SHARED_FETCH = '''
from omniembed.geo import FetchSpec, export_batch, ExportTarget, PointBuffer, TemporalSpec

export_batch(
    spatials=[PointBuffer(121.5, 31.2, 2048)],
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=["remoteclip", "prithvi"],
    fetch=FetchSpec(scale_m=10),
    target=ExportTarget.combined("exports/shared_sampling"),
    backend="local:s2",
)
'''

REPORT = '''
import json as _json
import numpy as _np
_out = {}
def _describe(e):
    return {"type": type(e).__name__, "data_type": type(e.data).__name__, "shape": list(_np.shape(e.data)),
            "meta_is_dict": isinstance(e.meta, dict), "meta_json": _json.loads(_json.dumps(e.meta, default=None)),
            "finite": bool(_np.isfinite(_np.asarray(e.data)).all()), "vector": _np.asarray(e.data).ravel().tolist()}
if "emb" in globals():
    _out["emb"] = _describe(emb)
if "embs" in globals():
    _out["embs"] = [_describe(e) for e in embs]
print("REPORT " + _json.dumps(_out))
'''

S2_NAMES = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's machine: weights in OMNIEMBED_MODEL_DIR, imagery named ``s2`` in OMNIEMBED_GEO_SOURCES."""
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    from test_geo_galileo import save_tiny_galileo
    from test_geo_models import CFG, openclip_state_dict, prithvi_state_dict

    geo = shared_geo_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("rs_embed_docs")
    models = root / "models"
    (models / "remoteclip").mkdir(parents=True)
    torch.save(openclip_state_dict(), models / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    (models / "prithvi").mkdir()
    torch.save(prithvi_state_dict(), models / "prithvi" / "Prithvi_EO_V2_tiny.pt")
    (models / "prithvi" / "config.json").write_text(json.dumps({"pretrained_cfg": CFG}))
    tl = models / "prithvi_eo_v2_300_tl"  # prithvi's variant="300_tl": the TL checkpoint layout, tiny
    tl.mkdir()
    torch.save(prithvi_state_dict() | {"encoder.temporal_embed_enc.scale": torch.tensor([0.3]),
                                       "encoder.location_embed_enc.scale": torch.tensor([0.2])},
               tl / "Prithvi_EO_V2_300M_TL.pt")
    (tl / "config.json").write_text(json.dumps(
        {"pretrained_cfg": CFG | {"coords_encoding": ["time", "location"], "coords_scale_learn": True}}))
    save_tiny_galileo(models)
    gse = root / "gse"  # the gse stand-in raster of the sample, dated as the gse page's example asks (2021)
    gse.mkdir()
    with rasterio.open(geo / "gse" / "gse_2022.tif") as src:
        gse_profile, gse_data, gse_names = src.profile, src.read(), src.descriptions
    with rasterio.open(gse / "gse_2021.tif", "w", **gse_profile) as dst:
        dst.write(gse_data)
        dst.update_tags(DATE_ACQUIRED="2021-07-01")
        for i, band in enumerate(gse_names, start=1):
            dst.set_band_description(i, band or f"A{i - 1:02d}")
    s2 = root / "s2"
    s2.mkdir()
    with rasterio.open(geo / "s2" / "s2_20220715.tif") as src:
        profile, four = src.profile, src.read().astype(np.float32)
    blue, green, red, nir = four
    seven = np.stack([blue, green, red, red * 1.1, nir * 0.7, nir * 0.9, nir, nir, nir * 0.8,
                      nir * 0.55]).astype(np.float32)
    profile.update(count=len(S2_NAMES), dtype="float32")
    x, y = Transformer.from_crs("EPSG:4326", profile["crs"], always_xy=True).transform(120.5, 30.2)
    for name, transform in (("s2_20220715.tif", profile["transform"]),
                            ("s2_20220716_b.tif", Affine(10.0, 0.0, x - 1500, 0.0, -10.0, y + 1500))):
        with rasterio.open(s2 / name, "w", **{**profile, "transform": transform}) as dst:
            dst.write(seven)
            dst.update_tags(DATE_ACQUIRED="2022-07-" + name[10:12])
            for i, band in enumerate(S2_NAMES, start=1):
                dst.set_band_description(i, band)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIEMBED_")}
    env |= {"OMNIEMBED_MODEL_DIR": str(models), "OMNIEMBED_CACHE_DIR": str(root / "cache"),
            "OMNIEMBED_HUB_OFFLINE": "1", "OMNIEMBED_GEO_SOURCES": json.dumps({"s2": str(s2)}),
            "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "GSE_DIR": str(gse)}
    return env


def with_collections(env: dict[str, str]) -> dict[str, str]:
    """The user's setting for scripts left at ``backend="auto"``: Earth Engine's collection ids named as local
    sources (Sentinel-2 L2A and the annual Satellite Embedding)."""
    sources = json.loads(env["OMNIEMBED_GEO_SOURCES"])
    return env | {"OMNIEMBED_GEO_SOURCES": json.dumps(
        {**sources, "COPERNICUS/S2_SR_HARMONIZED": sources["s2"],
         "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL": env["GSE_DIR"]})}


def run_example(body: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    script = cwd / "example.py"
    script.write_text(textwrap.dedent(body) + REPORT)
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("REPORT "))
    return {**json.loads(line[len("REPORT "):]), "stderr": done.stderr}


def rs_embed_meta_keys() -> set[str]:
    """The keys every rs-embed embedding's meta holds, from rs-embed itself."""
    from rs_embed.embedders.meta import META_REQUIRED_KEYS

    return set(META_REQUIRED_KEYS)


def check_embedding(e: dict[str, Any], dim: int, model: str = "remoteclip",
                    window: tuple[str, str] = ("2022-06-01", "2022-09-01")) -> None:
    assert e["type"] == "GeoEmbedding" and e["data_type"] == "ndarray" and e["shape"] == [dim] and e["finite"]
    assert e["meta_is_dict"], "rs-embed's Embedding.meta is a dict"
    meta = e["meta_json"]
    assert rs_embed_meta_keys() <= set(meta), rs_embed_meta_keys() - set(meta)
    assert meta["model"] == model and meta["type"] == "on_the_fly"
    assert meta["temporal"]["mode"] == "range" and (meta["temporal"]["start"], meta["temporal"]["end"]) == window
    assert {"grid_hw", "cls_removed"} <= set(meta)


# The "Supported Models" pages (docs/models/<model>.md), the examples whose model omniembed has. Changed: the
# import line (the prithvi page's variant examples); backend="gee" -> "local:s2"; the pages' backend="auto"
# examples run unchanged but for the import, with the collections named as local sources (with_collections).
MODEL_PAGE_EXAMPLES: dict[str, tuple[str, str, int, tuple[str, str] | None]] = {
    "remoteclip": ('''
from omniembed.geo import get_embedding, PointBuffer, TemporalSpec, OutputSpec

emb = get_embedding(
    "remoteclip",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(),
    backend="auto",
)
''', "remoteclip", 32, ("2022-06-01", "2022-09-01")),
    "prithvi_variant": ('''
from omniembed.geo import PointBuffer, TemporalSpec, OutputSpec, get_embedding

emb = get_embedding(
    "prithvi",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(),
    backend="local:s2",
    variant="300_tl",
)
''', "prithvi_eo_v2_300_tl", 32, ("2022-06-01", "2022-09-01")),
    "prithvi": ('''
from omniembed.geo import get_embedding, PointBuffer, TemporalSpec, OutputSpec

emb = get_embedding(
    "prithvi",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(),
    backend="local:s2",
)
''', "prithvi", 32, ("2022-06-01", "2022-09-01")),
    "prithvi_variant_full_name": ('''
from omniembed.geo import get_embedding, PointBuffer, TemporalSpec, OutputSpec

emb = get_embedding(
    "prithvi",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(),
    backend="local:s2",
    variant="prithvi_eo_v2_300_tl",
)
''', "prithvi_eo_v2_300_tl", 32, ("2022-06-01", "2022-09-01")),
    "galileo": ('''
from omniembed.geo import get_embedding, PointBuffer, TemporalSpec, OutputSpec

emb = get_embedding(
    "galileo",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-01-01", "2023-01-01"),
    output=OutputSpec.pooled(),
    backend="auto",
)
''', "galileo", 32, ("2022-01-01", "2023-01-01")),
    "gse": ('''
from omniembed.geo import get_embedding, PointBuffer, TemporalSpec, OutputSpec

emb = get_embedding(
    "gse",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.year(2021),
    output=OutputSpec.pooled(),
    backend="auto",
)
''', "gse", 64, None),
}


@pytest.mark.parametrize("page", sorted(MODEL_PAGE_EXAMPLES))
def test_model_page_example(user_env: dict[str, str], tmp_path: Path, page: str) -> None:
    body, model, dim, window = MODEL_PAGE_EXAMPLES[page]
    e = run_example(body, with_collections(user_env), tmp_path)["emb"]
    if window is not None:
        check_embedding(e, dim, model, window)
        return
    # a precomputed product: rs-embed's keys and its year form of meta["temporal"]
    meta = e["meta_json"]
    assert e["shape"] == [dim] and e["finite"] and e["meta_is_dict"] and rs_embed_meta_keys() <= set(meta)
    assert meta["model"] == model and meta["type"] == "precomputed" and meta["temporal"]["mode"] == "year"
    assert int(meta["temporal"]["year"]) == 2021


def test_get_embedding_example(user_env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(EMBEDDING_EXAMPLE, user_env, tmp_path)
    check_embedding(out["emb"], 32)  # the tiny checkpoint's CLIP projection is 32-d (ViT-B/32's is 512)
    assert out["emb"]["meta_json"]["image_size"] == 64  # the tiny checkpoint's input size (ViT-B/32: 224)


def test_get_embedding_example_unchanged_with_the_collection_as_a_named_source(user_env: dict[str, str],
                                                                                tmp_path: Path) -> None:
    """The same page's example with only the import changed (``backend="auto"`` kept): the user names the Earth
    Engine collection as a local source, and the model's default collection is read from it."""
    unchanged = run_example(EMBEDDING_EXAMPLE.replace('backend="local:s2"', 'backend="auto"'),
                            with_collections(user_env), tmp_path)
    local = run_example(EMBEDDING_EXAMPLE, user_env, tmp_path)
    check_embedding(unchanged["emb"], 32)
    np.testing.assert_allclose(unchanged["emb"]["vector"], local["emb"]["vector"], rtol=1e-6, atol=1e-7)


def test_get_embeddings_batch_example(user_env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(BATCH_EXAMPLE, user_env, tmp_path)
    assert len(out["embs"]) == 2
    for e in out["embs"]:
        check_embedding(e, 32)
    assert out["embs"][0]["meta_json"]["model"] == "remoteclip"


def _manifest(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_export_combined_example(user_env: dict[str, str], tmp_path: Path) -> None:
    run_example(EXPORT_COMBINED, user_env, tmp_path)
    npz, manifest = tmp_path / "exports" / "run.npz", tmp_path / "exports" / "run.json"
    assert npz.is_file() and manifest.is_file()
    with np.load(npz) as z:
        assert z["embeddings__remoteclip"].shape == (1, 32) and np.isfinite(z["embeddings__remoteclip"]).all()
        # ExportConfig()'s save_inputs=True: the model's input, as rs-embed keys it
        assert any(k.startswith("inputs_bchw__remoteclip") or k.startswith("input_chw__remoteclip") for k in z)
    summary = _manifest(manifest)
    assert summary["status"] == "ok"
    assert [m["model"] for m in summary["models"]] == ["remoteclip"]


def test_export_per_item_example(user_env: dict[str, str], tmp_path: Path) -> None:
    run_example(EXPORT_PER_ITEM, user_env, tmp_path)
    dims = {"remoteclip": 32, "prithvi": 32}
    for name in ("p1", "p2"):
        with np.load(tmp_path / "exports" / f"{name}.npz") as z:
            for model, dim in dims.items():
                assert z[f"embedding__{model}"].shape == (dim,) and np.isfinite(z[f"embedding__{model}"]).all()
        manifest = _manifest(tmp_path / "exports" / f"{name}.json")
        assert manifest["status"] == "ok"
        entries = {m["model"]: m for m in manifest["models"]}
        assert set(entries) == set(dims)
        for model in dims:
            assert entries[model]["status"] == "ok"
            assert entries[model]["embedding"]["npz_key"] == f"embedding__{model}"
    with np.load(tmp_path / "exports" / "p1.npz") as a, np.load(tmp_path / "exports" / "p2.npz") as b:
        # the second point reads a copy of the same pixels, placed on another sub-pixel phase of the region's
        # grid: nearly the same vector (a check that each point read its own copy)
        u, v = a["embedding__remoteclip"], b["embedding__remoteclip"]
        assert float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) > 0.999


def test_export_model_request_example(user_env: dict[str, str], tmp_path: Path) -> None:
    run_example(EXPORT_MODEL_REQUEST, user_env, tmp_path)
    summary = _manifest(tmp_path / "exports" / "combined_run.json")
    assert summary["status"] == "ok"
    with np.load(tmp_path / "exports" / "combined_run.npz") as z:
        assert z["embeddings__remoteclip"].shape == (1, 32) and z["embeddings__prithvi"].shape == (1, 32)
    entries = {m["model"]: m for m in summary["models"]}
    assert entries["prithvi"]["status"] == "ok"
    # rerun with resume=True: nothing changed, so nothing is recomputed and the file keeps its vectors
    with np.load(tmp_path / "exports" / "combined_run.npz") as z:
        before = {k: z[k].copy() for k in z if k.startswith("embeddings__")}
    run_example(EXPORT_MODEL_REQUEST, user_env, tmp_path)
    with np.load(tmp_path / "exports" / "combined_run.npz") as z:
        for k, v in before.items():
            np.testing.assert_array_equal(z[k], v)


def test_export_shared_fetch_example(user_env: dict[str, str], tmp_path: Path) -> None:
    run_example(EXPORT_SHARED_FETCH, user_env, tmp_path)
    with np.load(tmp_path / "exports" / "shared_sampling.npz") as z:
        remoteclip, prithvi = z["embeddings__remoteclip"], z["embeddings__prithvi"]
    assert remoteclip.shape == (1, 32) and prithvi.shape == (1, 32)
    assert np.isfinite(remoteclip).all() and np.isfinite(prithvi).all()
