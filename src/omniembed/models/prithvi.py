"""Prithvi-EO-2.0 (``prithvi``, alias ``prithvi_eo_v2_s2_6b``): the ViT-MAE encoder, 6 bands, T frames.

Written compactly in torch with the official checkpoint's key names (``encoder.patch_embed.proj``,
``encoder.cls_token``, ``encoder.pos_embed``, ``encoder.blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
mlp.fc2}``, ``encoder.norm``), so ``Prithvi_EO_V2_*.pt`` loads strictly (decoder keys are not used; the
TL variants' time/location encoders, ``coords_encoding: ["time", "location"]`` in the config, are built
too: they add sin/cos codes of each frame's (year, day of year) and the region centre's (lat, lon),
scaled by ``scale``; without dates the time code is left out, as upstream). The folder holds
``config.json`` (``pretrained_cfg``: sizes, mean/std) and the ``*.pt`` checkpoint.
Grid output: the last layer's patch tokens, averaged over frames, one cell per 16 x 16 pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.model_config import ModelSetting
from omniembed.registry import ModelSpec, WeightsSource

LOADER = "omniembed.models.prithvi:load"
S2_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")  # HLS: blue, green, red, narrow NIR, SWIR 1, SWIR 2
DEFAULTS: dict[str, Any] = {"img_size": 224, "num_frames": 4, "patch_size": [1, 16, 16], "in_chans": 6,
                            "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0,
                            "mean": [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0],
                            "std": [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0],
                            "coords_encoding": [], "coords_scale_learn": False, "layer_norm_eps": 1e-6}
SKIPPED_PREFIXES = ("decoder.", "mask_token")

# rs-embed's prithvi ``variant`` (onthefly_prithvi.py): the three time-location (TL) checkpoints, each its own
# model here (name = rs-embed's model key; hub repository and checkpoint file as rs-embed downloads them;
# dim = the published config's embed_dim). omniembed's ``prithvi`` is the 300M checkpoint without TL.
TL_VARIANTS = (
    ("prithvi_eo_v2_100_tl", "ibm-nasa-geospatial/Prithvi-EO-2.0-100M-TL", "Prithvi_EO_V2_100M_TL.pt", 768, "100"),
    ("prithvi_eo_v2_300_tl", "ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt", 1024, "300"),
    ("prithvi_eo_v2_600_tl", "ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt", 1280, "600"),
)


def variant_setting(default: str) -> ModelSetting:
    """The ``variant`` setting of the family, defaulting to the model it is set on."""
    return ModelSetting(
        name="variant",
        default=default,
        choices=("prithvi_eo_v2_300", *(v[0] for v in TL_VARIANTS)),
        aliases=(("300", "prithvi_eo_v2_300"), ("300m", "prithvi_eo_v2_300"), ("prithvi", "prithvi_eo_v2_300"),
                 *((f"{v[4]}{m}_tl", v[0]) for v in TL_VARIANTS for m in ("", "m"))),
        selects=(("prithvi_eo_v2_300", "prithvi"), *((v[0], v[0]) for v in TL_VARIANTS)),
        description="Which Prithvi-EO-2.0 checkpoint runs: prithvi_eo_v2_300 (omniembed's prithvi, the 300M model "
        "without time/location codes) or rs-embed's time-location variants prithvi_eo_v2_100_tl (rs-embed's "
        "default), prithvi_eo_v2_300_tl, prithvi_eo_v2_600_tl; rs-embed's short forms (100_tl, 300m_tl, ...) too",
    )


def options(variant: str) -> tuple[tuple[str, Any], ...]:
    return (("bands", S2_BANDS), ("scale_m", 30.0), ("input_size", 224), ("model_config", (variant_setting(variant),)))


SPECS = (
    ModelSpec(
        name="prithvi",
        loader=LOADER,
        modalities=(Modality.GEO,),
        dim=1024,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(hub_id="ibm-nasa-geospatial/Prithvi-EO-2.0-300M"),
        license="Apache-2.0",
        aliases=("prithvi_eo_v2_s2_6b", "prithvi-eo-2.0-300m"),
        description="Prithvi-EO-2.0 300M ViT-MAE encoder on 6 Sentinel-2/HLS bands, multi-temporal",
        options=options("prithvi_eo_v2_300"),
        # bf16 (compiled ahead of time): min cosine to fp32 0.999986 over every pooled vector, grid cell and grid
        # mean of the real Sentinel-2 composites in bench/geo_throughput.py (300M at real size, random weights in
        # the official layout); 1.93x the eager fp32 regions/s there vs ONNX fp32 1.0x.
        auto_precision="bf16",
    ),
    *(ModelSpec(
        name=name,
        loader=LOADER,
        modalities=(Modality.GEO,),
        dim=dim,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(hub_id=hub_id, marker=checkpoint),
        license="Apache-2.0",
        description=f"Prithvi-EO-2.0 {size}M-TL ViT-MAE encoder (time and location codes) on 6 Sentinel-2/HLS "
        "bands; prithvi's variant in rs-embed",
        options=options(name),
    ) for name, hub_id, checkpoint, dim, size in TL_VARIANTS),
)


def read_config(folder: Path) -> dict[str, Any]:
    raw = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    cfg = dict(DEFAULTS)
    cfg.update(raw.get("pretrained_cfg", raw))
    return cfg


def build_encoder_module(cfg: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    dim, heads = int(cfg["embed_dim"]), int(cfg["num_heads"])
    t_p, p, _ = (int(v) for v in cfg["patch_size"])
    grid = int(cfg["img_size"]) // p
    tokens = (int(cfg["num_frames"]) // t_p) * grid * grid
    hidden = int(dim * float(cfg["mlp_ratio"]))
    eps = float(cfg["layer_norm_eps"])

    def sincos(values: torch.Tensor, width: int) -> torch.Tensor:  # (M,) -> (M, width), as Prithvi's 1-D code
        omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32) / (width / 2.0))
        out = values.reshape(-1, 1).float() * omega.to(values.device)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    class CoordEncoder(nn.Module):
        """Sin/cos of two coordinates (half the channels each) times ``scale`` (learned or fixed 1)."""

        def __init__(self) -> None:
            super().__init__()
            if cfg["coords_scale_learn"]:
                self.scale = nn.Parameter(torch.full((1,), 0.1))
            else:
                self.register_buffer("scale", torch.ones(1))

        def forward(self, coords: torch.Tensor) -> torch.Tensor:  # (..., 2) -> (..., dim)
            first = sincos(coords[..., 0], dim // 2).reshape(*coords.shape[:-1], -1)
            second = sincos(coords[..., 1], dim - dim // 2).reshape(*coords.shape[:-1], -1)
            return torch.as_tensor(self.scale) * torch.cat([first, second], dim=-1)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return self.proj(out.transpose(1, 2).reshape(b, n, dim))

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), Attention()
            self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), Mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv3d(int(cfg["in_chans"]), dim, (t_p, p, p), stride=(t_p, p, p))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).flatten(2).transpose(1, 2)  # tokens ordered (frame, row, col)

    class Encoder(nn.Module):
        """(B, bands, frames, H, W) -> (B, D, H/16, W/16): patch tokens of the last layer, mean over frames."""

        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = PatchEmbed()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.register_buffer("pos_embed", torch.zeros(1, tokens + 1, dim))
            self.blocks = nn.ModuleList(Block() for _ in range(int(cfg["depth"])))
            self.norm = nn.LayerNorm(dim, eps=eps)
            if "time" in cfg["coords_encoding"]:
                self.temporal_embed_enc = CoordEncoder()
            if "location" in cfg["coords_encoding"]:
                self.location_embed_enc = CoordEncoder()

        def forward(self, x: torch.Tensor, temporal: torch.Tensor | None = None,
                    location: torch.Tensor | None = None, has_time: torch.Tensor | None = None) -> torch.Tensor:
            b, h, w = x.shape[0], x.shape[-2] // p, x.shape[-1] // p
            pos = torch.as_tensor(self.pos_embed)
            tok = self.patch_embed(x) + pos[:, 1:]
            if temporal is not None and hasattr(self, "temporal_embed_enc"):  # (B, T, 2): year, day of year
                code = self.temporal_embed_enc(temporal).repeat_interleave(tok.shape[1] // temporal.shape[1], 1)
                if has_time is not None:  # (B,): 0 where a frame is undated: the time code is left out
                    code = code * has_time.reshape(-1, 1, 1)
                tok = tok + code
            if location is not None and hasattr(self, "location_embed_enc"):  # (B, 2): lat, lon
                tok = tok + self.location_embed_enc(location)[:, None]
            cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)
            z = torch.cat([cls, tok], dim=1)
            for block in self.blocks:
                z = block(z)
            z = self.norm(z)[:, 1:]
            return z.reshape(b, -1, h, w, dim).mean(dim=1).permute(0, 3, 1, 2)

    return Encoder()


def load_state_dict(folder: Path) -> dict[str, Any]:
    import torch

    files = sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"no *.pt checkpoint in {folder}")
    raw = torch.load(files[0], map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and isinstance(raw.get("model", raw.get("state_dict")), dict):
        raw = raw.get("model", raw.get("state_dict"))
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.removeprefix("module.").removeprefix("model.")
        if key.startswith(SKIPPED_PREFIXES):
            continue
        out[key.removeprefix("encoder.")] = value
    return out


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    import numpy as np
    import torch

    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    cfg = read_config(folder)
    coords = bool(cfg["coords_encoding"])
    frames, side = int(cfg["num_frames"]), int(cfg["img_size"])

    def fresh() -> Any:
        net = build_encoder_module(cfg).eval()
        net.load_state_dict(load_state_dict(folder), strict=True)
        return net

    built = [fresh()]  # loaded now, so a bad checkpoint fails here; handed to the first build, then dropped
    names = ("pixel_values", "temporal", "location", "has_time") if coords else ("pixel_values",)

    class Grid(torch.nn.Module):
        """(N, frames, bands, S, S) [+ (N, frames, 2), (N, 2), (N,)] -> (N, D, S/16, S/16)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = built.pop() if built else fresh()

        def forward(self, pixel_values: torch.Tensor, temporal: torch.Tensor | None = None,
                    location: torch.Tensor | None = None, has_time: torch.Tensor | None = None) -> torch.Tensor:
            out: torch.Tensor = self.net(pixel_values.transpose(1, 2), temporal, location, has_time)
            return out

    def example() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        feeds = {"pixel_values": rng.standard_normal((2, frames, int(cfg["in_chans"]), side, side), np.float32)}
        if coords:
            feeds |= {"temporal": np.tile(np.array([[2022.0, 180.0]], np.float32), (2, frames, 1)),
                      "location": np.array([[31.2, 121.5]] * 2, np.float32), "has_time": np.ones(2, np.float32)}
        return feeds

    version = fingerprint(folder, ("*.pt", "*.pth", "config.json"))
    graph = GraphSpec(cache_key=f"{spec.name}-{version}-grid", build=Grid, input_names=names, output_name="grid",
                      dynamic_axes={n: {0: "batch"} for n in names}, example=example)
    mean = np.asarray(cfg["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(cfg["std"], dtype=np.float32)[None, :, None, None]

    def normalize(raw: np.ndarray) -> np.ndarray:  # (frames, bands, H, W) reflectance x 10000; no data -> mean
        return np.nan_to_num((raw - mean) / std, nan=0.0).astype(np.float32)

    raster = RasterInput(tuple(spec.option("bands")), side, int(cfg["patch_size"][1]), normalize,
                         "(x - mean) / std per band (Prithvi config); frames="
                         f"{frames}; coords={','.join(cfg['coords_encoding']) or 'none'}",
                         frames=frames, coords=coords, scale_m=30.0)
    encoder = build_encoder(graph, runtime, device, settings)
    if runtime == "onnx":
        built.clear()  # exported or found in the cache: the torch module is not needed in memory
    return LoadedModel(spec, version, {}, {Modality.GEO: encoder}, runtime, device, raster=raster)
