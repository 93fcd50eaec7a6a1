"""Galileo (``galileo``): the nasaharvest Galileo encoder (Tseng et al. 2025, "Galileo: Learning Global &
Local Features of Many Remote Sensing Modalities"), the nano size rs-embed runs by default.

Written compactly in torch from the paper and the official checkpoint's keys, so ``encoder.pt`` loads
strictly (every key a parameter or buffer here, every one filled, shapes checked) and safely
(``torch.load(weights_only=True)``). The folder holds ``encoder.pt`` and ``config.json``
(``model.encoder``: ``embedding_size``, ``depth``, ``num_heads``, ``mlp_ratio``, ``max_sequence_length``,
``max_patch_size``), as ``models/<size>/`` of github.com/nasaharvest/galileo and the hub's nasaharvest/galileo.

Galileo embeds each band group of each frame of each patch as its own token: a per-group patch projection
plus four quarter-width codes (the group's learned channel code, the frame's position, the month, and a
2-D sin/cos code of the patch's place scaled by its ground size). Absent groups are masked: their tokens
take no part in attention or pooling. As rs-embed feeds it: the ten Sentinel-2 L2A bands (B02..B12) as
surface reflectance x 10000 clipped to 0..10000, 64 x 64 px at 10 m, patch 8, the S2 groups seen (RGB, red
edge, NIR 10 m, NIR 20 m, SWIR) and every other group (S1, NDVI, ERA5, TerraClimate, VIIRS, SRTM, Dynamic
World, WorldCereal, LandScan, location) masked. Normalisation: ``galileo`` standardises with Galileo's
pretraining statistics, as its own code does (rs-embed's ``official_stats``); ``galileo_raw``
(``normalization="none"``) feeds the raw values, rs-embed's default. A source missing bands (every pixel NaN) has the
groups holding them masked too. Frames: up to 12 (rs-embed's monthly cap); frames the reader repeats to
fill them are masked, so T frames run as T frames; months from each frame's date (June when undated).
Grid: per patch the mean of its visible tokens after the final LayerNorm (rs-embed's "official patch
mean"); pooled: the mean over the grid, which equals the mean of all visible tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.model_config import ModelSetting
from omniembed.registry import ModelSpec, WeightsSource

LOADER = "omniembed.models.galileo:load"
CHECKPOINT, CONFIG = "encoder.pt", "config.json"
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
# Galileo's band groups, in its channel-code order, with their input channels; S2 groups as indices into S2_BANDS
SPACE_TIME_GROUPS = (("S1", 2), ("S2_RGB", 3), ("S2_Red_Edge", 3), ("S2_NIR_10m", 1), ("S2_NIR_20m", 1),
                     ("S2_SWIR", 2), ("NDVI", 1))
S2_GROUPS = (("S2_RGB", (0, 1, 2)), ("S2_Red_Edge", (3, 4, 5)), ("S2_NIR_10m", (6,)), ("S2_NIR_20m", (7,)),
             ("S2_SWIR", (8, 9)))
SPACE_GROUPS = (("SRTM", 2), ("DW", 9), ("WC", 5))
TIME_GROUPS = (("ERA5", 2), ("TC", 3), ("VIIRS", 1))
STATIC_GROUPS = (("LS", 1), ("location", 3), ("DW_static", 9), ("WC_static", 5))
DEFAULTS: dict[str, Any] = {"embedding_size": 128, "depth": 4, "num_heads": 8, "mlp_ratio": 4.0,
                            "max_sequence_length": 24, "max_patch_size": 8}
FRAMES = 12
"""At most 12 frames, as rs-embed (Galileo was pretrained on up to 12 monthly composites)."""
INPUT_SIZE, SCALE_M, BASE_GSD = 64, 10.0, 10.0
UNDATED_MONTH = 5
"""The month index (0 = January) used for undated frames: June, as rs-embed."""
ABSENT = -10000.0
"""What ``normalize`` writes into an absent band group: far below any input (clipped reflectance is >= 0,
standardised >= -3)."""

# Galileo's pretraining statistics of the ten S2 bands (its "13"-channel space-time table, S2 rows), which
# its own code applies as (x - mean) / std; rs-embed's default feeds raw values instead (RS_EMBED_GALILEO_NORM)
S2_MEAN = (1395.3408730676722, 1338.4026921784578, 1343.09883810357, 1543.8607982512297, 2186.2022069512263,
           2525.0932853316694, 2410.3377187373408, 2750.2854646886753, 2234.911100061487, 1474.5311266077113)
S2_STD = (917.7041440370853, 913.2988423581528, 1092.678723527555, 1047.2206083460424, 1048.0101611156767,
          1143.6903026819996, 1098.979177731649, 1204.472755085893, 1145.9774063078878, 980.2429840007796)
NORMALIZATIONS = (("official_stats", "galileo"), ("none", "galileo_raw"))
"""rs-embed's ``normalization`` values omniembed offers, and the model each runs."""


def normalization_setting(default: str) -> ModelSetting:
    return ModelSetting(
        name="normalization",
        default=default,
        choices=tuple(v for v, _ in NORMALIZATIONS),
        aliases=(("pretrain_stats", "official_stats"), ("pretraining_stats", "official_stats"),
                 ("galileo_stats", "official_stats"), ("raw", "none")),
        selects=NORMALIZATIONS,
        description="How raw Sentinel-2 reflectance (x 10000, clipped 0..10000) is fed: official_stats (omniembed's "
        "default: Galileo's own pretraining mean/std, as its code normalises) or none (rs-embed's default: the raw "
        "values, model galileo_raw)",
    )


def spec(name: str, normalization: str, description: str, aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(
        name=name,
        loader=LOADER,
        modalities=(Modality.GEO,),
        dim=128,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(hub_id="nasaharvest/galileo", marker=CHECKPOINT),
        license="MIT",
        aliases=aliases,
        description=description,
        options=(("bands", S2_BANDS), ("scale_m", SCALE_M), ("input_size", INPUT_SIZE),
                 ("normalization", normalization), ("model_config", (normalization_setting(normalization),))),
    )


SPECS = (
    spec("galileo", "official_stats", "Galileo nano (nasaharvest) on 10 Sentinel-2 bands standardised with its "
         "pretraining statistics, up to 12 monthly frames; pooled and grid 128-d (visible-token means, 8 px patches)",
         aliases=("galileo-nano",)),
    spec("galileo_raw", "none", "Galileo nano fed raw Sentinel-2 reflectance, exactly as rs-embed's galileo feeds it "
         "by default (galileo with normalization='none')"),
)


def read_config(folder: Path) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    path = folder / CONFIG
    if path.is_file():
        raw = json.loads(path.read_text())
        cfg.update(raw.get("model", {}).get("encoder", raw) if isinstance(raw, dict) else {})
    return cfg


def sincos(pos: Any, width: int) -> Any:
    """Galileo's 1-D sin/cos code: (M,) -> (M, width), frequencies 10000^(-i / (2 width)) (its own spacing)."""
    import torch

    omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32, device=pos.device) / width / 2.0)
    out = pos.reshape(-1, 1).float() * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def month_index(temporal: Any, has_time: Any) -> Any:
    """(N, T, 2: year, day of year) -> (N, T) month index 0..11; ``UNDATED_MONTH`` where ``has_time`` is 0."""
    import torch

    year, day = temporal[..., 0], temporal[..., 1]
    leap = ((year - 4 * torch.floor(year / 4) == 0) & (year - 100 * torch.floor(year / 100) != 0)) | \
        (year - 400 * torch.floor(year / 400) == 0)
    starts = torch.tensor([31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=temporal.dtype,
                          device=temporal.device)  # last day of year of each month before December
    after_feb = (torch.arange(11, device=temporal.device) >= 1).to(temporal.dtype)
    ends = starts + leap[..., None].to(temporal.dtype) * after_feb
    month = (day[..., None] > ends).sum(-1)
    dated = has_time.reshape(-1, 1) > 0.5
    return torch.where(dated, month, torch.full_like(month, UNDATED_MONTH))


def build_encoder_module(cfg: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    d, heads = int(cfg["embedding_size"]), int(cfg["num_heads"])
    quarter, p = d // 4, int(cfg["max_patch_size"])
    hidden = int(d * float(cfg["mlp_ratio"]))
    s2 = [(next(i for i, (n, _) in enumerate(SPACE_TIME_GROUPS) if n == name), name, bands)
          for name, bands in S2_GROUPS]

    class PatchProjection(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.proj = nn.Conv2d(channels, d, p, stride=p)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:  # keep: (B, L) True = attends
            b, n, _ = x.shape
            q, k, v = (f(x).reshape(b, n, heads, d // heads).transpose(1, 2) for f in (self.q, self.k, self.v))
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
            return self.proj(out.transpose(1, 2).reshape(b, n, d))

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.attn, self.norm2, self.mlp = nn.LayerNorm(d), Attention(), nn.LayerNorm(d), Mlp()

        def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x), keep)
            return x + self.mlp(self.norm2(x))

    class Encoder(nn.Module):
        """(N, T, 10, S, S) raw S2 [+ (N, T, 2) dates, (N,) dated] -> (N, D, S/p, S/p) patch means."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("pos_embed", torch.zeros(int(cfg["max_sequence_length"]), quarter))
            self.month_embed = nn.Embedding(12, quarter)
            self.s_t_channel_embed = nn.Parameter(torch.zeros(len(SPACE_TIME_GROUPS), quarter))
            self.sp_channel_embed = nn.Parameter(torch.zeros(len(SPACE_GROUPS), quarter))
            self.t_channel_embed = nn.Parameter(torch.zeros(len(TIME_GROUPS), quarter))
            self.st_channel_embed = nn.Parameter(torch.zeros(len(STATIC_GROUPS), quarter))
            # every group's projection is held (and loaded); only the Sentinel-2 ones see data here
            self.space_time_embed = nn.ModuleDict({n: PatchProjection(c) for n, c in SPACE_TIME_GROUPS})
            self.space_embed = nn.ModuleDict({n: PatchProjection(c) for n, c in SPACE_GROUPS})
            self.time_embed = nn.ModuleDict({n: nn.Linear(c, d) for n, c in TIME_GROUPS})
            self.static_embed = nn.ModuleDict({n: nn.Linear(c, d) for n, c in STATIC_GROUPS})
            self.blocks = nn.ModuleList(Block() for _ in range(int(cfg["depth"])))
            self.norm = nn.LayerNorm(d)

        def forward(self, x: torch.Tensor, temporal: torch.Tensor, has_time: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            # a frame is visible unless it repeats the one before it (same pixels, same date): a filler
            same = (x[:, 1:] == x[:, :-1]).flatten(2).all(-1) & (temporal[:, 1:] == temporal[:, :-1]).all(-1)
            frame_ok = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=x.device), ~same], dim=1)  # (N, T)
            # run only up to the last visible frame of the batch (the fillers after it take no part)
            last = (frame_ok * torch.arange(1, x.shape[1] + 1, device=x.device)).flatten().amax(dim=0)
            k: Any = last.item()  # data-dependent: exported, the ONNX graph slices at run time
            torch._check_is_size(k)
            torch._check(k >= 1)
            torch._check(k <= x.shape[1])
            x, temporal, frame_ok = x.narrow(1, 0, k), temporal.narrow(1, 0, k), frame_ok.narrow(1, 0, k)
            t = x.shape[1]
            present = torch.stack([(x[:, :, list(b)].amax(dim=(1, 3, 4)) > ABSENT / 2).all(-1) for _, _, b in s2], 1)
            present = present | ~present.any(1, keepdim=True)  # nothing read at all: run on the zeros
            groups = []
            for _, name, bands in s2:
                proj: nn.Module = self.space_time_embed[name].proj  # type: ignore[assignment]
                y = proj(x[:, :, list(bands)].flatten(0, 1))  # (N T, D, h, w)
                groups.append(y.reshape(n, t, d, y.shape[-2], y.shape[-1]).permute(0, 3, 4, 1, 2))
            tok = torch.stack(groups, dim=4)  # (N, h, w, T, G, D)
            h, w, g = tok.shape[1], tok.shape[2], tok.shape[4]
            res = BASE_GSD * p / BASE_GSD  # the token's ground size over Galileo's base 10 m
            rows = torch.arange(h, device=x.device, dtype=torch.float32).repeat_interleave(w) * res
            cols = torch.arange(w, device=x.device, dtype=torch.float32).repeat(h) * res
            place = torch.cat([sincos(cols, quarter // 2), sincos(rows, quarter // 2)], 1).reshape(h, w, quarter)
            channel = self.s_t_channel_embed[[i for i, _, _ in s2]]  # (G, q)
            months = self.month_embed(month_index(temporal, has_time))  # (N, T, q)
            codes = torch.cat([
                channel[None, None, None, None].expand(n, h, w, t, g, quarter),
                torch.as_tensor(self.pos_embed)[:t][None, None, None, :, None].expand(n, h, w, t, g, quarter),
                months[:, None, None, :, None].expand(n, h, w, t, g, quarter),
                place[None, :, :, None, None].expand(n, h, w, t, g, quarter)], dim=-1)
            keep = (frame_ok[:, None, None, :, None] & present[:, None, None, None, :]).expand(n, h, w, t, g)
            z, keep_flat = (tok + codes).reshape(n, -1, d), keep.reshape(n, -1)
            for block in self.blocks:
                z = block(z, keep_flat)
            z = self.norm(z).reshape(n, h, w, t * g, d)
            weight = keep.reshape(n, h, w, t * g, 1).to(z.dtype)
            grid = (z * weight).sum(3) / weight.sum(3).clamp(min=1.0)
            return grid.permute(0, 3, 1, 2)

    return Encoder()


def read_checkpoint(folder: Path, model: str = "galileo") -> dict[str, Any]:
    """``encoder.pt``'s tensors, loaded weights-only (a pickle that would build other objects is refused)."""
    import torch

    from omniembed.errors import ModelLoadFailed

    path = folder / CHECKPOINT
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadFailed(
            f"model {model!r}: {CHECKPOINT} is not a weights-only checkpoint (it holds objects other than tensors, "
            "which would run code when loaded, or it is damaged), so it was refused. Use the official encoder.pt "
            "from nasaharvest/galileo (models/nano/).", param="model", model=model,
            hint=f"omniembed models prepare {model}", detail=f"{path}: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelLoadFailed(f"model {model!r}: {CHECKPOINT} is not a state dict of tensors; use the official "
                              "encoder.pt from nasaharvest/galileo", param="model", model=model, detail=str(path))
    return {str(k).replace(".backbone", ""): v for k, v in raw.items()}  # some releases nest a ".backbone"


def load_strict(net: Any, sd: dict[str, Any], model: str = "galileo") -> None:
    """Every checkpoint key used, every parameter and buffer filled, every shape equal; else ModelLoadFailed."""
    from omniembed.errors import ModelLoadFailed

    want = net.state_dict()
    missing, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(want[k].shape)})" for k in sorted(set(want) & set(sd))
             if tuple(sd[k].shape) != tuple(want[k].shape)]
    problems = [f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong))
                if items]
    if problems:
        raise ModelLoadFailed(
            f"model {model!r}: {CHECKPOINT} does not match Galileo's encoder as config.json describes it "
            f"({'; '.join(problems)}). Use encoder.pt and config.json from the same nasaharvest/galileo models/<size>/ "
            "folder.", param="model", model=model, hint=f"omniembed models prepare {model}")
    net.load_state_dict(sd, strict=True)


def model_folder(folder: Path) -> Path:
    """The folder holding encoder.pt: the given one, or a hub snapshot's ``models/nano``."""
    return folder if (folder / CHECKPOINT).is_file() or not (folder / "models" / "nano").is_dir() else \
        folder / "models" / "nano"


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    import numpy as np
    import torch

    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    folder = model_folder(folder)
    cfg = read_config(folder)

    def fresh() -> Any:
        net = build_encoder_module(cfg).eval()
        load_strict(net, read_checkpoint(folder, spec.name), spec.name)
        return net

    built = [fresh()]  # loaded now, so a bad checkpoint fails here; handed to the first build, then dropped
    names = ("pixel_values", "temporal", "has_time")  # the region's location is not fed (masked, as rs-embed)

    class Grid(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = built.pop() if built else fresh()

        def forward(self, pixel_values: torch.Tensor, temporal: torch.Tensor, has_time: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(pixel_values, temporal, has_time)
            return out

    def example() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        pixels = (rng.random((2, FRAMES, len(S2_BANDS), INPUT_SIZE, INPUT_SIZE), np.float32) * 3000).astype(np.float32)
        pixels[0, 2:] = pixels[0, 1]  # a region with two real frames, the rest fillers
        pixels[1, :, 3:6] = ABSENT  # and one without red-edge bands
        days = np.tile(np.arange(15.0, 365.0, 30.0, dtype=np.float32)[:FRAMES, None], (2, 1, 1))
        temporal = np.concatenate([np.full_like(days, 2022.0), days], axis=-1)
        temporal[0, 2:] = temporal[0, 1]
        return {"pixel_values": pixels, "temporal": temporal, "has_time": np.ones(2, np.float32)}

    version = fingerprint(folder, (CHECKPOINT, CONFIG))
    graph = GraphSpec(cache_key=f"{spec.name}-{version}-grid", build=Grid, input_names=names, output_name="grid",
                      dynamic_axes={n: {0: "batch"} for n in names}, example=example)

    standardise = spec.option("normalization") == "official_stats"
    mean = np.asarray(S2_MEAN, np.float32)[None, :, None, None]
    std = np.asarray(S2_STD, np.float32)[None, :, None, None]

    def normalize(raw: np.ndarray) -> np.ndarray:
        """(frames, 10, H, W) reflectance x 10000, NaN = no data -> clipped to 0..10000 (no data -> 0, as
        rs-embed), then standardised (``official_stats``) or not (``none``); a band group with a band absent
        from the whole read -> ``ABSENT`` (masked)."""
        out = np.clip(np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 10000.0).astype(np.float32)
        if standardise:
            out = ((out - mean) / std).astype(np.float32)
        absent = np.isnan(raw).all(axis=(0, 2, 3))
        if absent.any() and not absent.all():
            for _, bands in S2_GROUPS:
                if absent[list(bands)].any():
                    out[:, list(bands)] = ABSENT
        return out

    how = "(x - mean) / std with Galileo's pretraining statistics" if standardise else \
        "raw values (rs-embed's default, no normalisation)"
    raster = RasterInput(S2_BANDS, INPUT_SIZE, int(cfg["max_patch_size"]), normalize,
                         f"S2 reflectance clipped 0..10000, {how}; frames<={FRAMES} (repeated fillers masked), "
                         "month per frame; absent band groups masked",
                         frames=FRAMES, coords=True, scale_m=SCALE_M)
    encoder = build_encoder(graph, runtime, device, settings)
    if runtime == "onnx":
        built.clear()  # exported or found in the cache: the torch module is not needed in memory
    return LoadedModel(spec, version, {}, {Modality.GEO: encoder}, runtime, device, raster=raster)
