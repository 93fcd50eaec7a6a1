"""remoteclip and prithvi: tiny random checkpoints written in the official key layouts load strictly through
the user's path (OMNIEMBED_MODEL_DIR) and equal a direct forward pass written here from the state dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geo_data import geo_engine, shared_geo_dir
from omniembed.errors import ModelLoadFailed
from omniembed.geo import BBox, OutputSpec, SensorSpec, TemporalSpec, TensorBackend, get_embedding

torch = pytest.importorskip("torch")
F = torch.nn.functional
X0, Y0 = 355590.0, 3454240.0


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)



def ln(x: Any, sd: dict[str, Any], key: str, eps: float) -> Any:
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], eps)


def attention(x: Any, wqkv: Any, bqkv: Any, wo: Any, bo: Any, heads: int) -> Any:
    b, n, d = x.shape
    q, k, v = (x @ wqkv.T + bqkv).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, n, d) @ wo.T + bo


# ---------------------------------------------------------------- RemoteCLIP (open_clip layout)
def openclip_state_dict(width: int = 64, layers: int = 2, patch: int = 16, grid: int = 4, proj: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)

    def r(*shape: int, s: float = 0.05) -> Any:
        return torch.randn(*shape, generator=g) * s

    sd: dict[str, Any] = {"visual.class_embedding": r(width), "visual.positional_embedding": r(grid * grid + 1, width),
                          "visual.proj": r(width, proj), "visual.conv1.weight": r(width, 3, patch, patch),
                          "visual.ln_pre.weight": 1 + r(width), "visual.ln_pre.bias": r(width),
                          "visual.ln_post.weight": 1 + r(width), "visual.ln_post.bias": r(width)}
    for i in range(layers):
        p = f"visual.transformer.resblocks.{i}."
        sd |= {p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width), p + "ln_2.weight": 1 + r(width),
               p + "ln_2.bias": r(width), p + "attn.in_proj_weight": r(3 * width, width),
               p + "attn.in_proj_bias": r(3 * width), p + "attn.out_proj.weight": r(width, width),
               p + "attn.out_proj.bias": r(width), p + "mlp.c_fc.weight": r(4 * width, width),
               p + "mlp.c_fc.bias": r(4 * width), p + "mlp.c_proj.weight": r(width, 4 * width),
               p + "mlp.c_proj.bias": r(width)}
    # text tower keys are present in the official file and must simply be ignored by the vision loader
    sd |= {"token_embedding.weight": r(10, 32), "positional_embedding": r(8, 32), "ln_final.weight": r(32),
           "ln_final.bias": r(32), "text_projection": r(32, proj), "logit_scale": torch.tensor(4.6)}
    return sd


def openclip_tokens(sd: dict[str, Any], x: Any, patch: int = 16) -> Any:
    """open_clip VisionTransformer forward (QuickGELU), ln_post on the patch tokens."""
    return ln(openclip_hidden(sd, x, patch)[:, 1:], sd, "visual.ln_post", 1e-5)


def openclip_image_embedding(sd: dict[str, Any], x: Any, patch: int = 16) -> Any:
    """open_clip's ``encode_image``: ln_post on the class token, times ``proj``."""
    return ln(openclip_hidden(sd, x, patch)[:, 0], sd, "visual.ln_post", 1e-5) @ sd["visual.proj"]


def openclip_hidden(sd: dict[str, Any], x: Any, patch: int = 16) -> Any:
    """The last residual stream of open_clip's VisionTransformer (class token first)."""
    width = sd["visual.class_embedding"].shape[0]
    t = F.conv2d(x, sd["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    t = torch.cat([cls, t], dim=1) + sd["visual.positional_embedding"]
    t = ln(t, sd, "visual.ln_pre", 1e-5)
    i = 0
    while f"visual.transformer.resblocks.{i}.ln_1.weight" in sd:
        p = f"visual.transformer.resblocks.{i}."
        t = t + attention(ln(t, sd, p + "ln_1", 1e-5), sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"],
                          sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], max(1, width // 64))
        h = ln(t, sd, p + "ln_2", 1e-5) @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        t = t + (h * torch.sigmoid(1.702 * h)) @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
        i += 1
    return t


def test_remoteclip_loads_open_clip_checkpoint_and_matches_direct_forward(tmp_path: Path, geo_dir: Path) -> None:
    sd = openclip_state_dict()
    (tmp_path / "models" / "remoteclip").mkdir(parents=True)
    torch.save(sd, tmp_path / "models" / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    box = BBox(X0 + 500, Y0 - 1140, X0 + 1140, Y0 - 500, crs="EPSG:32651")  # 64 x 64 px = the tiny input size
    emb = get_embedding("remoteclip_s2rgb", spatial=box, temporal=TemporalSpec.year(2022), output=OutputSpec.grid(),
                        backend=f"local:{geo_dir / 's2'}", engine=eng)
    import rasterio

    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        rgb = src.read([3, 2, 1])[:, 50:114, 50:114].astype(np.float32)
    x = np.clip(rgb / 3000.0, 0, 1)
    x = (x - np.array([0.48145466, 0.4578275, 0.40821073])[:, None, None]) / np.array(
        [0.26862954, 0.26130258, 0.27577711])[:, None, None]
    with torch.no_grad():
        ref = openclip_tokens(sd, torch.from_numpy(x[None]).float())[0].reshape(4, 4, 64).permute(2, 0, 1).numpy()
        image = openclip_image_embedding(sd, torch.from_numpy(x[None]).float())[0].numpy()
    assert emb.data.shape == (64, 4, 4) and emb.meta.model == "remoteclip"
    np.testing.assert_allclose(emb.data.values, ref, rtol=1e-4, atol=1e-5)
    # pooled: CLIP's projected image embedding (open_clip encode_image), as rs-embed gives it
    pooled = get_embedding("remoteclip", spatial=box, temporal=TemporalSpec.year(2022),
                           backend=f"local:{geo_dir / 's2'}", engine=eng)
    assert pooled.data.shape == (32,) and pooled.meta.dim == 32
    np.testing.assert_allclose(pooled.data, image, rtol=1e-4, atol=1e-5)


def test_remoteclip_rejects_a_checkpoint_with_missing_keys(tmp_path: Path, geo_dir: Path) -> None:
    sd = openclip_state_dict()
    del sd["visual.ln_post.bias"]
    (tmp_path / "models" / "remoteclip").mkdir(parents=True)
    torch.save(sd, tmp_path / "models" / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with pytest.raises(ModelLoadFailed, match="post_layernorm"):
        get_embedding("remoteclip", spatial=BBox(X0, Y0 - 640, X0 + 640, Y0, crs="EPSG:32651"),
                      backend=f"local:{geo_dir / 's2'}", engine=eng)


# ---------------------------------------------------------------- Prithvi-EO-2.0 (official checkpoint layout)
CFG = {"img_size": 32, "num_frames": 2, "patch_size": [1, 8, 8], "in_chans": 6, "embed_dim": 32, "depth": 2,
       "num_heads": 4, "mlp_ratio": 4.0, "mean": [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0],
       "std": [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0]}


def prithvi_state_dict() -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)

    def r(*shape: int, s: float = 0.05) -> Any:
        return torch.randn(*shape, generator=g) * s

    d, tokens = 32, 2 * 4 * 4
    sd: dict[str, Any] = {"encoder.cls_token": r(1, 1, d), "encoder.pos_embed": r(1, tokens + 1, d),
                          "encoder.patch_embed.proj.weight": r(d, 6, 1, 8, 8), "encoder.patch_embed.proj.bias": r(d),
                          "encoder.norm.weight": 1 + r(d), "encoder.norm.bias": r(d)}
    for i in range(2):
        p = f"encoder.blocks.{i}."
        sd |= {p + "norm1.weight": 1 + r(d), p + "norm1.bias": r(d), p + "attn.qkv.weight": r(3 * d, d),
               p + "attn.qkv.bias": r(3 * d), p + "attn.proj.weight": r(d, d), p + "attn.proj.bias": r(d),
               p + "norm2.weight": 1 + r(d), p + "norm2.bias": r(d), p + "mlp.fc1.weight": r(4 * d, d),
               p + "mlp.fc1.bias": r(4 * d), p + "mlp.fc2.weight": r(d, 4 * d), p + "mlp.fc2.bias": r(d)}
    sd |= {"decoder.decoder_embed.weight": r(16, d), "decoder.mask_token": r(1, 1, 16)}  # MAE decoder: unused
    return sd


def prithvi_reference(sd: dict[str, Any], x: Any) -> Any:
    """Prithvi-EO-2.0 encoder forward: x (B, C, T, H, W) -> (B, D, H/8, W/8) (frames averaged)."""
    e = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    t = F.conv3d(x, e["patch_embed.proj.weight"], e["patch_embed.proj.bias"], stride=(1, 8, 8))
    b, d, nt, h, w = t.shape
    t = t.flatten(2).transpose(1, 2) + e["pos_embed"][:, 1:]
    t = torch.cat([(e["cls_token"] + e["pos_embed"][:, :1]).expand(b, -1, -1), t], dim=1)
    for i in range(2):
        p = f"blocks.{i}."
        t = t + attention(ln(t, e, p + "norm1", 1e-6), e[p + "attn.qkv.weight"], e[p + "attn.qkv.bias"],
                          e[p + "attn.proj.weight"], e[p + "attn.proj.bias"], 4)
        hdn = F.gelu(ln(t, e, p + "norm2", 1e-6) @ e[p + "mlp.fc1.weight"].T + e[p + "mlp.fc1.bias"])
        t = t + hdn @ e[p + "mlp.fc2.weight"].T + e[p + "mlp.fc2.bias"]
    t = ln(t, e, "norm", 1e-6)[:, 1:].reshape(b, nt, h, w, d)
    return t.mean(dim=1).permute(0, 3, 1, 2)


def test_prithvi_loads_official_layout_strictly_and_matches_direct_forward(tmp_path: Path, geo_dir: Path) -> None:
    import rasterio

    folder = tmp_path / "models" / "prithvi"
    folder.mkdir(parents=True)
    sd = prithvi_state_dict()
    torch.save(sd, folder / "Prithvi_EO_V2_tiny.pt")
    (folder / "config.json").write_text(json.dumps({"architecture": "prithvi_eo_v2", "pretrained_cfg": CFG}))
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        real = src.read().astype(np.float32)[:, 100:132, 100:132]  # B02 B03 B04 B08, 32 x 32 px
        transform = src.transform
    # six bands from the four real ones (B8A ~ B08; SWIR stand-ins scaled from NIR/red) and two frames
    six = np.concatenate([real, real[3:4] * 0.8, real[2:3] * 1.3])
    frames = np.stack([six, six[:, :, ::-1]])
    backend = TensorBackend(frames, transform @ __import__("affine").Affine.translation(100, 100), "EPSG:32651",
                            bands=("B02", "B03", "B04", "B8A", "B11", "B12"))
    box = BBox(X0 + 1000, Y0 - 1320, X0 + 1320, Y0 - 1000, crs="EPSG:32651")
    emb = get_embedding("prithvi_eo_v2_s2_6b", spatial=box, output=OutputSpec.grid(), backend=backend,
                        sensor=SensorSpec("tensor", composite="frames"), engine=eng)
    mean, std = np.array(CFG["mean"])[:, None, None, None], np.array(CFG["std"])[:, None, None, None]
    x = (frames.transpose(1, 0, 2, 3) - mean) / std
    with torch.no_grad():
        ref = prithvi_reference(sd, torch.from_numpy(x[None]).float())[0].numpy()
    assert emb.data.shape == (32, 4, 4)
    np.testing.assert_allclose(emb.data.values, ref, rtol=1e-4, atol=1e-5)
    # one frame (a median composite) is repeated to the model's frame count
    single = get_embedding("prithvi", spatial=box, output=OutputSpec.grid(), backend=backend,
                           sensor=SensorSpec("tensor", composite="first"), engine=eng)
    x1 = np.repeat(((frames[0] - mean[:, 0]) / std[:, 0])[:, None], 2, axis=1)
    with torch.no_grad():
        ref1 = prithvi_reference(sd, torch.from_numpy(x1[None]).float())[0].numpy()
    np.testing.assert_allclose(single.data.values, ref1, rtol=1e-4, atol=1e-5)


def test_rs_embed_example_with_remoteclip(tmp_path: Path, geo_dir: Path) -> None:
    """The rs-embed API page example, unchanged but for the import and backend='local:<folder>'."""
    from omniembed.geo import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    (tmp_path / "models" / "remoteclip").mkdir(parents=True)
    torch.save(openclip_state_dict(), tmp_path / "models" / "remoteclip" / "RemoteCLIP-ViT-B-32.pt")
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    emb = get_embedding(
        "remoteclip",
        spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
        temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
        output=OutputSpec.pooled(pooling="mean"),
        backend=f"local:{geo_dir / 's2'}",
        device="auto",
        input_prep="resize",  # default
        engine=eng,
    )
    vec = emb.data  # (D,): the projected image embedding (the tiny model's projection is 32-d)
    assert vec.shape == (32,) and vec.dtype == np.float32 and np.isfinite(vec).all()
    grid = get_embedding("remoteclip", spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
                         temporal=TemporalSpec.range("2022-06-01", "2022-09-01"), output=OutputSpec.grid(),
                         backend=f"local:{geo_dir / 's2'}", engine=eng).data
    from pyproj import Transformer

    cx, cy = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True).transform(121.5, 31.2)
    t = grid.attrs["transform"]
    x0, y0, x1, y1 = t[2], t[5] + t[4] * grid.shape[1], t[2] + t[0] * grid.shape[2], t[5]
    # input_prep=None is rs-embed's tile: the 410 px region in 16 px cells, its edges within half a cell
    tol = abs(t[0]) / 2 + 10
    assert cx - 2048 - tol <= x0 < x1 <= cx + 2048 + tol and cy - 2048 - tol <= y0 < y1 <= cy + 2048 + tol
    assert grid.shape == (64, 26, 26) and abs(t[0]) == 160  # the grid keeps the 64-d patch tokens


def test_prithvi_tl_time_and_location_codes(tmp_path: Path, geo_dir: Path) -> None:
    """A TL-style checkpoint (coords_encoding time+location, learned scales) loads strictly and adds the
    sin/cos codes of each frame's (year, day of year) and the region centre's (lat, lon)."""
    import datetime

    import rasterio
    from affine import Affine

    folder = tmp_path / "models" / "prithvi"
    folder.mkdir(parents=True)
    sd = prithvi_state_dict()
    sd |= {"encoder.temporal_embed_enc.scale": torch.tensor([0.3]), "encoder.location_embed_enc.scale":
           torch.tensor([0.2]), "decoder.temporal_embed_dec.scale": torch.tensor([0.1])}
    torch.save(sd, folder / "Prithvi_EO_V2_tiny_TL.pt")
    cfg = CFG | {"coords_encoding": ["time", "location"], "coords_scale_learn": True}
    (folder / "config.json").write_text(json.dumps({"pretrained_cfg": cfg}))
    eng = geo_engine(tmp_path, model_dir=tmp_path / "models")
    with rasterio.open(geo_dir / "s2" / "s2_20220715.tif") as src:
        real = src.read().astype(np.float32)[:, 100:132, 100:132]
        transform = src.transform
    six = np.concatenate([real, real[3:4] * 0.8, real[2:3] * 1.3])
    frames = np.stack([six[:, ::-1], six])
    dates = (datetime.date(2021, 3, 1), datetime.date(2022, 7, 15))
    backend = TensorBackend(frames, transform @ Affine.translation(100, 100), "EPSG:32651",
                            bands=("B02", "B03", "B04", "B8A", "B11", "B12"), dates=dates)
    box = BBox(X0 + 1000, Y0 - 1320, X0 + 1320, Y0 - 1000, crs="EPSG:32651")
    emb = get_embedding("prithvi", spatial=box, output=OutputSpec.grid(), backend=backend,  # both frames' dates:
                        temporal=TemporalSpec.range("2021-01-01", "2023-01-01"),  # temporal=None is summer 2022
                        sensor=SensorSpec("tensor", composite="frames"), engine=eng)

    def code(values: list[float], width: int) -> Any:
        omega = 1.0 / 10000 ** (np.arange(width // 2) / (width / 2.0))
        out = np.asarray(values, dtype=np.float64)[:, None] * omega
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    lon0, lat0, lon1, lat1 = box.lonlat_bounds()
    t_code = 0.3 * np.concatenate([code([2021, 2022], 16), code([60, 196], 16)], axis=1)  # (T, 32)
    l_code = 0.2 * np.concatenate([code([(lat0 + lat1) / 2], 16), code([(lon0 + lon1) / 2], 16)], axis=1)[0]
    mean, std = np.array(CFG["mean"])[:, None, None, None], np.array(CFG["std"])[:, None, None, None]
    x = torch.from_numpy(((frames.transpose(1, 0, 2, 3) - mean) / std)[None]).float()
    e = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    extra = torch.from_numpy(np.repeat(t_code, 16, axis=0) + l_code).float()  # 16 tokens per frame
    # reference: the plain forward with the codes folded into the position table (added to the same tokens)
    shifted = dict(sd)
    shifted["encoder.pos_embed"] = e["pos_embed"] + torch.cat([torch.zeros(1, 32), extra])[None]
    with torch.no_grad():
        ref = prithvi_reference(shifted, x)[0].numpy()
        plain = prithvi_reference(sd, x)[0].numpy()
    np.testing.assert_allclose(emb.data.values, ref, rtol=1e-4, atol=1e-5)
    assert np.abs(ref - plain).max() > 1e-3  # the codes matter
    assert "coords=time,location" in emb.meta.preprocessing
