"""An rs-embed user's script runs with only the import line and ``backend=`` changed: the seed's
``get_embedding`` / ``get_embeddings_batch`` example (shared/reference/rs-embed-api-embedding.txt) and an
``export_batch`` call with ``ExportTarget`` / ``ExportConfig``, each run as a user would, in a fresh Python
process with the default engine. ``remoteclip`` loads a tiny random checkpoint in the official open_clip
layout from ``OMNIEMBED_MODEL_DIR`` (real weights cannot be downloaded here); the imagery is the local sample
rasters of tests/geo_data.py, plus a copy placed under the example's second point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from geo_data import shared_geo_dir

torch = pytest.importorskip("torch")

SEED_EXAMPLE = '''
from omniembed.geo import PointBuffer, TemporalSpec, OutputSpec, get_embedding

emb = get_embedding(
    "remoteclip",
    spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    output=OutputSpec.pooled(pooling="mean"),
    backend="local:s2",
    device="auto",
    input_prep="resize", # default
)
vec = emb.data # (D,)

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

EXPORT_SCRIPT = '''
from omniembed.geo import (ExportConfig, ExportTarget, OutputSpec, PointBuffer, TemporalSpec, export_batch,
                           load_export)

spatials = [PointBuffer(121.5, 31.2, 2048), PointBuffer(120.5, 30.2, 2048)]
per_item = export_batch(
    spatials=spatials,
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=["remoteclip"],
    target=ExportTarget.per_item(OUT + "/per_item", names=["shanghai", "hangzhou"]),
    config=ExportConfig(format="npz", save_inputs=False, show_progress=False),
    backend="local:s2",
)
combined = export_batch(
    spatials=spatials,
    temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    models=["remoteclip"],
    target=ExportTarget.combined(OUT + "/all"),
    config=ExportConfig(format="netcdf"),
    output=OutputSpec.grid(),
    backend="local:s2",
)
result = load_export(OUT + "/all.nc")
'''

REPORT = '''
import json, sys
import numpy as np
out = {}
if "emb" in globals():
    out |= {"vec": np.asarray(vec).tolist(), "model": emb.meta["model"], "dims": list(emb.data.shape),
            "batch": [np.asarray(e.data).tolist() for e in embs], "keys": sorted(emb.meta.keys()),
            "temporal": emb.meta["temporal"], "prep": emb.meta["input_prep"],
            "batch_prep": [e.meta["input_prep"] for e in embs]}
if "per_item" in globals():
    out |= {"per_item": [m["npz_path"] for m in per_item], "status": [m["status"] for m in per_item],
            "combined": combined["nc_path"], "loaded": list(result.embedding("remoteclip").shape),
            "ok_models": result.ok_models}
print("REPORT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's setup: weights in OMNIEMBED_MODEL_DIR, imagery named ``s2`` in OMNIEMBED_GEO_SOURCES."""
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    from test_geo_models import openclip_state_dict

    geo = shared_geo_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("rs_embed_user")
    (root / "models" / "remoteclip").mkdir(parents=True)
    torch.save(openclip_state_dict(), root / "models" / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    s2 = root / "s2"
    s2.mkdir()
    src_path = geo / "s2" / "s2_20220715.tif"
    (s2 / src_path.name).write_bytes(src_path.read_bytes())
    with rasterio.open(src_path) as src:  # the same sample, placed under the example's second point
        profile, data = src.profile, src.read()
        tags, descriptions = src.tags(), src.descriptions
    x, y = Transformer.from_crs("EPSG:4326", profile["crs"], always_xy=True).transform(120.5, 30.2)
    profile["transform"] = Affine(10.0, 0.0, x - 1500, 0.0, -10.0, y + 1500)
    with rasterio.open(s2 / "s2_20220716_b.tif", "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**{**tags, "DATE_ACQUIRED": "2022-07-16"})
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIEMBED_")}
    env |= {"OMNIEMBED_MODEL_DIR": str(root / "models"), "OMNIEMBED_CACHE_DIR": str(root / "cache"),
            "OMNIEMBED_HUB_OFFLINE": "1", "OMNIEMBED_GEO_SOURCES": json.dumps({"s2": str(s2)}),
            "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OUT": str(root / "out")}
    return env


def run_script(body: str, env: dict[str, str], tmp_path: Path) -> dict:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent('import os\nOUT = os.environ["OUT"]\n') + body + REPORT)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("REPORT "))
    return {**json.loads(line[len("REPORT "):]), "stderr": done.stderr}


def test_seed_example_runs_with_only_the_import_and_backend_changed(user_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    out = run_script(SEED_EXAMPLE, user_env, tmp_path)
    vec = np.asarray(out["vec"])
    # pooled: CLIP's projected image embedding, as rs-embed gives it (the tiny checkpoint's projection is 32-d)
    assert out["model"] == "remoteclip" and out["dims"] == [32] and np.isfinite(vec).all()
    batch = [np.asarray(v) for v in out["batch"]]
    assert len(batch) == 2 and all(v.shape == (32,) and np.isfinite(v).all() for v in batch)
    # the page's "# default" is rs-embed 0.1's: since 0.2 the default is tile, so the batch (input_prep not
    # given) tiles the 410 px region at 10 m where the first call resizes it whole, in rs-embed as here
    assert out["prep"]["requested_mode"] == out["prep"]["resolved_mode"] == "resize"
    assert [p["requested_mode"] for p in out["batch_prep"]] == ["default", "default"]
    assert [p["resolved_mode"] for p in out["batch_prep"]] == ["tile", "tile"]
    cos = float(batch[0] @ vec / np.linalg.norm(batch[0]) / np.linalg.norm(vec))
    assert 0.9 < cos < 1 - 1e-6  # the same point, seen whole vs in tiles
    assert {"model", "dim", "backend", "temporal", "input_prep", "output"} <= set(out["keys"])
    assert out["temporal"] == {"mode": "range", "start": "2022-06-01", "end": "2022-09-01"}


def test_export_batch_with_export_target_and_config(user_env: dict[str, str], tmp_path: Path) -> None:
    out = run_script(EXPORT_SCRIPT, user_env, tmp_path)
    assert [Path(p).name for p in out["per_item"]] == ["shanghai.npz", "hangzhou.npz"]
    assert out["status"] == ["ok", "ok"] and Path(out["combined"]).name == "all.nc"
    assert out["loaded"][:2] == [2, 64] and out["ok_models"] == ["remoteclip"]  # grids: the 64-d patch tokens
    root = Path(user_env["OUT"])
    with np.load(root / "per_item" / "shanghai.npz") as z:
        assert z["embedding__remoteclip"].shape == (32,)
    assert (root / "per_item" / "shanghai.json").is_file() and (root / "all.json").is_file()
