"""Earth-observation throughput: regions per second through the one pipeline, before and after (issue 11).

What it measures: ``omniembed.geo.get_embeddings_batch`` on the real Sentinel-2 sample that ``spyndex``
ships (written as COGs by ``tests/data/make_geo_data.py`` into a temporary folder and read by the ``local``
backend), for three models at their real sizes:

* ``remoteclip``: CLIP ViT-B/32 (width 768, 12 layers, patch 32, 224 px, projection 512), random weights
  written in the official open_clip layout (``RemoteCLIP-ViT-B-32.pt``, text tower included; open_clip's
  own initialisation) into ``<model_dir>/remoteclip``; B04/B03/B02 true-colour composites at 10 m;
* ``prithvi``: Prithvi-EO-2.0-300M (embed_dim 1024, depth 24, 16 heads, patch 1x16x16, 224 px, 4 frames,
  6 bands), random weights in the official checkpoint layout (``encoder.*`` plus the MAE decoder, fixed 3-D
  sin/cos position table, the MAE initialisation) with a ``config.json`` holding ``pretrained_cfg``; its six
  bands are the sample's four real ones plus two derived from them (B8A = B08, B11 = 0.8 B08,
  B12 = 1.3 B04, as in the tests), two dated files read as frames. One 224 px tile costs 0.54 TFLOP
  (seconds on 2 cores), so prithvi runs on one region per mode (``--prithvi-regions``), one round, no warm-up;
* ``efficientnet-lite0`` (real ImageNet weights from its package) on RGB composites, one vector per tile.
  Its tiles are 224 px images, so tile mode reads 2.0-2.4 km boxes at 5 m (the sample is 300 px at 10 m).

Each model runs on the same regions (seeded boxes of 2.0-2.8 km inside the 3 km sample) in each output
(``pooled``, ``grid``) and mode (``resize``: one input per region; ``tile``: overlapping 224 px tiles, 2x2
per region; prithvi 1x2), three ways, with ``--threads`` compute threads (default 2):

* ``eager fp32``: ``runtime="torch", precision="fp32"``: the eager PyTorch path every geo model had before;
* ``onnx fp32``: ``runtime="onnx", precision="fp32"``: ONNX Runtime over the cached export;
* ``bf16``: ``runtime="torch", precision="bf16"``: compiled ahead of time (AOTInductor), or eager autocast
  where compiling is off or fails;

and ``default`` (``runtime``/``precision`` unset) is whichever of those the engine resolves to here (ONNX
fp32 on CPU unless the model declares ``auto_precision="bf16"`` and the CPU has AVX512-BF16); one default
call checks that its meta says so. Each timing covers reading the rasters, tiling, encoding, stitching and
pooling; model loading, the ONNX export and the compile happen before timing, each config gets one
untimed warm-up call, then ``--repeat`` rounds in which every (mode, output) runs in each config one after
the other, the order rotating (best time counts): the machine's load changes hit all configs alike.

The read/encode split: ``meta.timings.prepare_ms`` (each region's share of its chunk's preparation: the
backend read, normalisation and tiling, in chunks of 16 regions, each next chunk prepared in a second thread
while the current one is encoded) and
``encode_ms`` (the encoder call, shared by the rows of the batch; here counted per tile), plus the reads
alone (``LocalBackend.read`` on the same regions, nothing else running). Accuracy: the minimum cosine to
eager fp32 over every region's pooled vector, every grid cell and every grid's pooled vector.

Run from the project root::

    .venv/bin/python bench/geo_throughput.py              # ~8 min on 2 cores (compiles included)
    .venv/bin/python bench/geo_throughput.py --quick      # few regions, one repeat
    .venv/bin/python bench/geo_throughput.py --models remoteclip --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAKE_GEO_DATA = ROOT / "tests" / "data" / "make_geo_data.py"
MODELS = ("remoteclip", "prithvi", "efficientnet-lite0")
NATIVE = ("remoteclip", "prithvi")
CONFIGS: dict[str, dict[str, str]] = {
    "eager fp32": {"runtime": "torch", "precision": "fp32"},
    "onnx fp32": {"runtime": "onnx", "precision": "fp32"},
    "bf16": {"runtime": "torch", "precision": "bf16"},
}
MODES = ("resize", "tile")
OUTPUTS = ("pooled", "grid")
PRITHVI_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
PRITHVI_CFG: dict[str, Any] = {
    "img_size": 224, "num_frames": 4, "patch_size": [1, 16, 16], "in_chans": 6, "embed_dim": 1024, "depth": 24,
    "num_heads": 16, "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16, "mlp_ratio": 4.0,
    "mean": [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0], "std": [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0],
    "bands": ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"], "coords_encoding": [],
}


def vit_gflop(tokens: int, dim: int, hidden: int, layers: int, patches: int, patch_in: int) -> float:
    """Forward FLOPs (2 x multiply-adds) of a ViT encoder on one input: projections and MLP per token and
    layer, attention's two token x token products, the patch embedding."""
    macs = tokens * layers * (4 * dim * dim + 2 * dim * hidden) + layers * 2 * tokens * tokens * dim
    return 2 * (macs + patches * dim * patch_in) / 1e9


GFLOP_PER_TILE = {
    "remoteclip": vit_gflop(50, 768, 3072, 12, 49, 3 * 32 * 32),  # 8.8
    "prithvi": vit_gflop(785, 1024, 4096, 24, 784, 6 * 16 * 16),  # 537
    "efficientnet-lite0": 0.768,  # FlopCounterMode on the network (the image section's figure)
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Random checkpoints at real size, in the official layouts
# --------------------------------------------------------------------------------------------------


def write_remoteclip(folder: Path, seed: int = 0) -> Path:
    """A ViT-B/32 open_clip state dict (vision and text towers) with open_clip's initialisation, saved as
    ``RemoteCLIP-ViT-B-32.pt``: the keys, shapes and file name of the official RemoteCLIP checkpoint."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def uniform(*shape: int, bound: float) -> torch.Tensor:  # nn.Linear / nn.Conv default (kaiming, a=sqrt 5)
        return (torch.rand(*shape, generator=g) * 2 - 1) * bound

    def tower(prefix: str, width: int, layers: int) -> dict[str, torch.Tensor]:
        attn_std, proj_std, fc_std = width ** -0.5, width ** -0.5 * (2 * layers) ** -0.5, (2 * width) ** -0.5
        sd: dict[str, torch.Tensor] = {}
        for i in range(layers):
            p = f"{prefix}resblocks.{i}."
            sd |= {p + "ln_1.weight": torch.ones(width), p + "ln_1.bias": torch.zeros(width),
                   p + "attn.in_proj_weight": normal(3 * width, width, std=attn_std),
                   p + "attn.in_proj_bias": torch.zeros(3 * width),
                   p + "attn.out_proj.weight": normal(width, width, std=proj_std),
                   p + "attn.out_proj.bias": torch.zeros(width),
                   p + "ln_2.weight": torch.ones(width), p + "ln_2.bias": torch.zeros(width),
                   p + "mlp.c_fc.weight": normal(4 * width, width, std=fc_std),
                   p + "mlp.c_fc.bias": uniform(4 * width, bound=width ** -0.5),
                   p + "mlp.c_proj.weight": normal(width, 4 * width, std=proj_std),
                   p + "mlp.c_proj.bias": uniform(width, bound=(4 * width) ** -0.5)}
        return sd

    width, patch, grid, out = 768, 32, 7, 512
    scale = width ** -0.5
    sd = {"visual.class_embedding": normal(width, std=scale),
          "visual.positional_embedding": normal(grid * grid + 1, width, std=scale),
          "visual.proj": normal(width, out, std=scale),
          "visual.conv1.weight": uniform(width, 3, patch, patch, bound=(3 * patch * patch) ** -0.5),
          "visual.ln_pre.weight": torch.ones(width), "visual.ln_pre.bias": torch.zeros(width),
          "visual.ln_post.weight": torch.ones(width), "visual.ln_post.bias": torch.zeros(width),
          **tower("visual.transformer.", width, 12)}
    text = 512  # the text tower: in the official file, ignored by the vision loader
    sd |= {"token_embedding.weight": normal(49408, text, std=0.02), "positional_embedding": normal(77, text, std=0.01),
           "ln_final.weight": torch.ones(text), "ln_final.bias": torch.zeros(text),
           "text_projection": normal(text, out, std=text ** -0.5), "logit_scale": torch.tensor(math.log(1 / 0.07)),
           **tower("transformer.", text, 12)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "RemoteCLIP-ViT-B-32.pt"
    torch.save(sd, path)
    return path


def sincos_1d(width: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
    out = positions.reshape(-1, 1).astype(np.float64) * omega
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def prithvi_pos_embed(dim: int, t: int, h: int, w: int) -> np.ndarray:
    """Prithvi's fixed 3-D sin/cos table (``get_3d_sincos_pos_embed``, with the class token's zero row)."""
    w_emb = np.tile(sincos_1d(dim // 16 * 6, np.arange(w)), (t * h, 1))
    h_emb = np.tile(np.repeat(sincos_1d(dim // 16 * 6, np.arange(h)), w, axis=0), (t, 1))
    t_emb = np.repeat(sincos_1d(dim // 16 * 4, np.arange(t)), h * w, axis=0)
    table = np.concatenate([w_emb, h_emb, t_emb], axis=1)
    return np.concatenate([np.zeros((1, dim)), table])[None].astype(np.float32)


def write_prithvi(folder: Path, seed: int = 1) -> Path:
    """A Prithvi-EO-2.0-300M checkpoint (encoder and MAE decoder keys, the MAE initialisation: xavier-uniform
    linears, zero biases, fixed sin/cos positions) and its ``config.json``."""
    import torch

    cfg = PRITHVI_CFG
    g = torch.Generator().manual_seed(seed)

    def xavier(rows: int, cols: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (rows + cols))
        return (torch.rand(rows, cols, generator=g) * 2 - 1) * bound

    def blocks(prefix: str, dim: int, depth: int) -> dict[str, torch.Tensor]:
        sd: dict[str, torch.Tensor] = {}
        hidden = int(dim * cfg["mlp_ratio"])
        for i in range(depth):
            p = f"{prefix}.{i}."
            sd |= {p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
                   p + "attn.qkv.weight": xavier(3 * dim, dim), p + "attn.qkv.bias": torch.zeros(3 * dim),
                   p + "attn.proj.weight": xavier(dim, dim), p + "attn.proj.bias": torch.zeros(dim),
                   p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
                   p + "mlp.fc1.weight": xavier(hidden, dim), p + "mlp.fc1.bias": torch.zeros(hidden),
                   p + "mlp.fc2.weight": xavier(dim, hidden), p + "mlp.fc2.bias": torch.zeros(dim)}
        return sd

    dim, dec, chans = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg["in_chans"]
    t, p = cfg["num_frames"], cfg["patch_size"][1]
    side = cfg["img_size"] // p
    fan_in = chans * p * p
    sd = {"encoder.cls_token": torch.randn(1, 1, dim, generator=g) * 0.02,
          "encoder.pos_embed": torch.from_numpy(prithvi_pos_embed(dim, t, side, side)),
          "encoder.patch_embed.proj.weight": xavier(dim, fan_in).reshape(dim, chans, 1, p, p),
          "encoder.patch_embed.proj.bias": (torch.rand(dim, generator=g) * 2 - 1) * fan_in ** -0.5,
          **blocks("encoder.blocks", dim, cfg["depth"]),
          "encoder.norm.weight": torch.ones(dim), "encoder.norm.bias": torch.zeros(dim),
          "decoder.mask_token": torch.randn(1, 1, dec, generator=g) * 0.02,
          "decoder.decoder_pos_embed": torch.from_numpy(prithvi_pos_embed(dec, t, side, side)),
          "decoder.decoder_embed.weight": xavier(dec, dim), "decoder.decoder_embed.bias": torch.zeros(dec),
          **blocks("decoder.decoder_blocks", dec, cfg["decoder_depth"]),
          "decoder.decoder_norm.weight": torch.ones(dec), "decoder.decoder_norm.bias": torch.zeros(dec),
          "decoder.decoder_pred.weight": xavier(p * p * chans, dec),
          "decoder.decoder_pred.bias": torch.zeros(p * p * chans)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "Prithvi_EO_V2_300M.pt")
    (folder / "config.json").write_text(json.dumps({"architecture": "prithvi_eo_v2_300", "num_features": dim,
                                                    "pretrained_cfg": cfg}, indent=1))
    return folder


# --------------------------------------------------------------------------------------------------
# Data and regions
# --------------------------------------------------------------------------------------------------


def make_data(out: Path) -> Path:
    """The real Sentinel-2 sample rasters (tests/data/make_geo_data.py) plus six-band files for prithvi."""
    spec = importlib.util.spec_from_file_location("make_geo_data", MAKE_GEO_DATA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(out)
    import rasterio

    for name in ("s2_20220715.tif", "s2_20210301.tif"):
        with rasterio.open(out / "s2" / name) as src:
            real = src.read().astype(np.float32)  # B02 B03 B04 B08
            crs, transform, date = src.crs.to_string(), src.transform, src.tags().get("DATE_ACQUIRED")
        six = np.concatenate([real, real[3:4], real[3:4] * 0.8, real[2:3] * 1.3]).round().astype(np.uint16)
        module.write_cog(out / "s2_6band" / name, six, crs, transform, names=PRITHVI_BANDS, nodata=0, date=date)
    return out


def sample_bounds(data: Path) -> tuple[float, float, float, float, str]:
    import rasterio

    with rasterio.open(data / "s2" / "s2_20220715.tif") as src:
        b = src.bounds
        return b.left, b.bottom, b.right, b.top, src.crs.to_string()


def regions(data: Path, n: int, seed: int, width_px: tuple[int, int] = (200, 280),
            height_px: tuple[int, int] | None = None) -> list[Any]:
    """``n`` boxes (default: squares of 2.0-2.8 km, 200-280 px at 10 m) at seeded places inside the 3 km sample."""
    from omniembed.geo import BBox

    x0, y0, x1, y1, crs = sample_bounds(data)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = float(rng.integers(width_px[0], width_px[1] + 1)) * 10.0
        h = w if height_px is None else float(rng.integers(height_px[0], height_px[1] + 1)) * 10.0
        left = x0 + float(rng.uniform(0, x1 - x0 - w))
        bottom = y0 + float(rng.uniform(0, y1 - y0 - h))
        out.append(BBox(left, bottom, left + w, bottom + h, crs=crs))
    return out


@dataclass
class Case:
    """One model's workload: where its bands are read from, how, and on which regions."""

    model: str
    sensors: dict[str, Any]
    """Per mode, the SensorSpec (collection = a folder of COGs)."""
    temporal: Any
    regions: dict[str, list[Any]]
    notes: list[str] = field(default_factory=list)


def cases(data: Path, models: Sequence[str], n: int, n_tile: int, n_prithvi: int) -> list[Case]:
    from omniembed.geo import SensorSpec, TemporalSpec

    rgb = ("B04", "B03", "B02")
    s2 = str(data / "s2")
    out = []
    for model in models:
        if model == "remoteclip":
            sensor = SensorSpec(s2, bands=rgb)
            out.append(Case(model, {"resize": sensor, "tile": sensor}, TemporalSpec.year(2022),
                            {"resize": regions(data, n, 11), "tile": regions(data, n_tile, 12)}))
        elif model == "prithvi":
            sensor = SensorSpec(str(data / "s2_6band"), bands=PRITHVI_BANDS, composite="frames")
            # tile mode: 2.8 x 1.9 km boxes (280 x 190 px: 18 x 12 cells of 16 px = 2 tiles of 12 x 12 cores)
            out.append(Case(model, {"resize": sensor, "tile": sensor}, TemporalSpec.range("2021-01-01", "2023-01-01"),
                            {"resize": regions(data, n_prithvi, 21),
                             "tile": regions(data, n_prithvi, 22, (270, 290), (185, 190))},
                            [f"prithvi runs on {n_prithvi} region(s) per mode and output, in tile mode 2.8 x 1.9 km "
                             "(2 tiles), one round, no warm-up: one 224 px tile of 4 frames is 0.54 TFLOP, seconds "
                             "on 2 cores"]))
        elif model == "efficientnet-lite0":
            sensors = {"resize": SensorSpec(s2, bands=rgb), "tile": SensorSpec(s2, bands=rgb, scale_m=5.0)}
            out.append(Case(model, sensors, TemporalSpec.year(2022),
                            {"resize": regions(data, n, 11), "tile": regions(data, n_tile, 12, (200, 240))},
                            ["efficientnet-lite0's tile mode reads 2.0-2.4 km boxes at 5 m (400-480 px: 2x2 tiles "
                             "of 224 px; the sample is 300 px at 10 m)"]))
        else:
            raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return out


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def resolved_default(engine: Any, model: str) -> str:
    """Which of CONFIGS the engine's defaults resolve to for ``model`` on this machine."""
    from omniembed.runtime import resolve_runtime
    from omniembed.runtime.precision import resolve_precision

    spec = engine.spec(model)
    precision, wanted = resolve_precision(engine.settings.precision, spec, engine.settings.runtime, "cpu")
    runtime, _ = resolve_runtime(wanted, "cpu")
    for name, cfg in CONFIGS.items():
        if cfg == {"runtime": runtime, "precision": precision}:
            return name
    raise RuntimeError(f"the default for {model} ({runtime} {precision}) is not one of the measured configs")


def embed(engine: Any, case: Case, mode: str, output: str, items: Sequence[Any], **kw: Any) -> list[Any]:
    from omniembed.geo import OutputSpec, get_embeddings_batch

    return get_embeddings_batch(case.model, spatials=list(items), temporal=case.temporal, sensor=case.sensors[mode],
                                output=OutputSpec.grid() if output == "grid" else OutputSpec.pooled(),
                                backend="local", input_prep=mode, engine=engine, **kw)


def vectors(results: Sequence[Any]) -> list[np.ndarray]:
    """Every vector of the results: pooled vectors, and for grids each cell (D) plus the grid's pooled one."""
    out: list[np.ndarray] = []
    for e in results:
        data = np.asarray(getattr(e.data, "values", e.data), dtype=np.float64)
        if data.ndim == 3:
            out.extend(data.reshape(data.shape[0], -1).T)
            out.append(np.asarray(e.pooled, dtype=np.float64))
        else:
            out.append(data)
    return out


def min_cosine(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    x, y = np.stack(a), np.stack(b)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    x, y = x[ok], y[ok]
    cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)
    return float(cos.min())


def count_tiles(raster: Any, prep: str, shapes: Sequence[tuple[int, int]]) -> list[int]:
    """Encoder rows (tiles) per region, from the pipeline's own planner on each region's read size."""
    from omniembed.geo.specs import InputPrepSpec
    from omniembed.geo.tiling import choose_mode, plan_tiles

    spec, counts = InputPrepSpec.coerce(prep), []
    for rows, cols in shapes:
        if choose_mode(spec, rows, cols, raster.input_size) == "resize":
            counts.append(1)
        else:
            counts.append(len(plan_tiles(np.zeros((1, 1, rows, cols), np.float32), raster.input_size, raster.patch,
                                         spec).origins))
    return counts


def read_alone(engine: Any, case: Case, mode: str, items: Sequence[Any],
               repeat: int) -> tuple[float, list[tuple[int, int]]]:
    """Milliseconds per region of the backend read alone (``LocalBackend.read``, nothing else running), best
    of ``repeat``; and each read's (rows, cols)."""
    from omniembed.geo.backends import LocalBackend

    backend, best, shapes = LocalBackend(), float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        shapes = [backend.read(spatial, case.temporal, case.sensors[mode], engine.settings).data.shape[-2:]
                  for spatial in items]
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(items), [(int(r), int(c)) for r, c in shapes]


def encoder_kind(engine: Any, model: str, loaded: Any) -> str:
    """What runs a loaded model: ONNX Runtime, eager torch (fp32 or bf16 autocast) or the compiled package; for
    bf16 that fell back to eager autocast, why (the failure the compile cache remembered)."""
    encoder = next(iter(loaded.encoders.values()))
    kind = type(encoder).__name__
    if kind == "CompiledEncoder":
        return "compiled ahead of time (AOTInductor)"
    if kind == "TorchEncoder" and getattr(encoder, "bf16", False):
        failed = sorted((engine.settings.cache_dir / "aoti").glob(f"{model}-*.failed"))
        why = f": compiling failed ({failed[-1].read_text()[:160]})" if failed else ""
        return f"eager autocast{why}"
    return {"OnnxEncoder": "ONNX Runtime", "TorchEncoder": "eager PyTorch"}.get(kind, kind)


def cell(case: Case, mode: str, tiles: list[int], seconds: float, results: Sequence[Any]) -> dict[str, float]:
    """One timed call's numbers: regions/s and the per-region time split from the embeddings' meta."""
    n = len(results)
    prepare = sum(e.meta.timings.prepare_ms for e in results)
    encode = sum(t * e.meta.timings.encode_ms / e.meta.timings.batch_size for t, e in zip(tiles, results, strict=True))
    return {"regions": n, "tiles": sum(tiles), "seconds": seconds, "regions_per_s": n / seconds,
            "prepare_ms_per_region": prepare / n, "encode_ms_per_region": encode / n,
            "wall_ms_per_region": 1000 * seconds / n}


def run_model(case: Case, settings_kw: dict[str, Any], repeat: int) -> dict[str, Any]:
    """One model: every config loaded first (exports and compiles outside the timings), then ``repeat`` rounds
    in which each (mode, output) runs in every config one after the other (the config order rotates), so a
    change in the machine's load affects all configs alike; the best time of each counts."""
    import omniembed
    from omniembed.geo.models import image_raster

    engine = omniembed.Engine(omniembed.Settings(**settings_kw, max_loaded_models=len(CONFIGS)))
    default = resolved_default(engine, case.model)
    read = {mode: read_alone(engine, case, mode, case.regions[mode], repeat) for mode in MODES}
    reads = {mode: ms for mode, (ms, _) in read.items()}
    load_s: dict[str, float] = {}
    ran: dict[str, str] = {}
    for config in CONFIGS:
        started = time.perf_counter()
        loaded = engine.load(case.model, **CONFIGS[config])
        load_s[config] = time.perf_counter() - started
        ran[config] = encoder_kind(engine, case.model, loaded)
        log(f"{case.model} {config}: loaded in {load_s[config]:.0f} s ({ran[config]})")
    raster = loaded.raster if loaded.raster is not None else image_raster(engine.spec(case.model))
    tiles = {mode: count_tiles(raster, mode, read[mode][1]) for mode in MODES}
    del loaded
    names = list(CONFIGS)
    best: dict[tuple[str, str, str], dict[str, float]] = {}
    keep: dict[tuple[str, str, str], list[np.ndarray]] = {}
    for config in names if case.model != "prithvi" else ():  # warm-up (prithvi: seconds per tile, none)
        embed(engine, case, "resize", "pooled", case.regions["resize"][:1], **CONFIGS[config])
    rounds = 1 if case.model == "prithvi" else repeat
    for k in range(rounds):
        for mode in MODES:
            items = case.regions[mode]
            for output in OUTPUTS:
                for config in names[k % len(names):] + names[: k % len(names)]:
                    kw = CONFIGS[config]
                    started = time.perf_counter()
                    results = embed(engine, case, mode, output, items, **kw)
                    seconds = time.perf_counter() - started
                    meta = results[0].meta
                    assert (meta.runtime, meta.precision) == (kw["runtime"], kw["precision"]), (config, meta)
                    key = (config, mode, output)
                    if key not in best or seconds < best[key]["seconds"]:
                        best[key] = cell(case, mode, tiles[mode], seconds, results)
                    keep[key] = vectors(results)
                    log(f"  {case.model} round {k + 1} {mode} {output} {config}: {len(items) / seconds:.2f} regions/s "
                        f"({sum(tiles[mode])} tiles, {seconds:.2f} s)")
    e = embed(engine, case, "resize", "pooled", case.regions["resize"][:1])[0]  # the defaults: unset
    checked = {"runtime": e.meta.runtime, "precision": e.meta.precision}
    assert checked == CONFIGS[default], (case.model, checked, CONFIGS[default])
    engine.unload()
    configs = {c: {m: {o: best[(c, m, o)] for o in OUTPUTS} for m in MODES} for c in names}
    ref = "eager fp32"
    cos = {config: min(min_cosine(keep[(config, m, o)], keep[(ref, m, o)]) for m in MODES for o in OUTPUTS)
           for config in names if config != ref}
    share = {name: {m: reads[m] / (reads[m] + configs[name][m]["pooled"]["encode_ms_per_region"]) for m in MODES}
             for name in ("eager fp32", default)}
    return {"default": default, "default_meta": checked, "gflop_per_tile": GFLOP_PER_TILE[case.model],
            "configs": configs, "min_cos_to_eager_fp32": cos,
            "vectors_compared": sum(len(keep[(ref, m, o)]) for m in MODES for o in OUTPUTS),
            "read_alone_ms_per_region": reads, "tiles": tiles, "load_s": load_s, "encoders": ran,
            "read_share_eager": share["eager fp32"], "read_share_default": share[default], "notes": case.notes}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def totals(result: dict[str, Any], config: str) -> tuple[int, float]:
    """Regions and seconds over every (mode, output) of one config: the same regions for each config."""
    cells = [result["configs"][config][m][o] for m in MODES for o in OUTPUTS]
    return sum(int(c["regions"]) for c in cells), sum(float(c["seconds"]) for c in cells)


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Overall regions/s per config and the ratios to eager fp32 (same regions, all modes and outputs)."""
    out: dict[str, float] = {}
    n, eager = totals(result, "eager fp32")
    for config in CONFIGS:
        _, seconds = totals(result, config)
        out[f"{config} regions_per_s"] = n / seconds
        out[f"{config} / eager"] = eager / seconds
        cells = [result["configs"][config][m][o] for m in MODES for o in OUTPUTS]
        encode_s = sum(c["encode_ms_per_region"] * c["regions"] for c in cells) / 1000
        out[f"{config} encoder_gflops"] = result["gflop_per_tile"] * sum(c["tiles"] for c in cells) / encode_s
    out["default / eager"] = out[f"{result['default']} / eager"]
    out["default regions_per_s"] = out[f"{result['default']} regions_per_s"]
    out["default encoder_gflops"] = out[f"{result['default']} encoder_gflops"]
    return out


def markdown(results: dict[str, dict[str, Any]], threads: int, repeat: int) -> list[str]:
    names = list(CONFIGS)
    lines = [f"# Earth observation: regions/s on the real Sentinel-2 sample ({threads} threads, best of {repeat})", "",
             "Each cell: regions per second, reading the COGs through the `local` backend, tiling, encoding, "
             "stitching and pooling included. `default` = `runtime`/`precision` unset, resolved on this machine "
             "(its meta checked): " + "; ".join(f"{m} -> {r['default']}" for m, r in results.items()) + ".", "",
             "| model | mode | output | regions (tiles) | " + " | ".join(names) + " | default / eager | bf16 / eager |",
             "|---|---|---|---:|" + "---:|" * len(names) + "---:|---:|"]
    for model, r in results.items():
        for mode in MODES:
            for output in OUTPUTS:
                cells = {c: r["configs"][c][mode][output] for c in names}
                eager = cells["eager fp32"]["regions_per_s"]
                rates = " | ".join(f"{cells[c]['regions_per_s']:.2f}" for c in names)
                lines.append(f"| {model} | {mode} | {output} | {cells[names[0]]['regions']} "
                             f"({cells[names[0]]['tiles']}) | {rates} | "
                             f"{cells[r['default']]['regions_per_s'] / eager:.2f}x | "
                             f"{cells['bf16']['regions_per_s'] / eager:.2f}x |")
        s = r["summary"]
        lines.append(f"| **{model}** | all | all | same regions | "
                     + " | ".join(f"**{s[f'{c} regions_per_s']:.2f}**" for c in names)
                     + f" | **{s['default / eager']:.2f}x** | **{s['bf16 / eager']:.2f}x** |")
    lines += ["", "bf16 ran as: " + "; ".join(f"{m}: {r['encoders']['bf16']}" for m, r in results.items()) + "."]
    lines += ["", "Accuracy on the real composites: minimum cosine to eager fp32 over every region's pooled vector, "
              "every grid cell and every grid's pooled vector (both modes).", "",
              "| model | vectors compared | onnx fp32 | bf16 |", "|---|---:|---:|---:|"]
    for model, r in results.items():
        cos = r["min_cos_to_eager_fp32"]
        lines.append(f"| {model} | {r['vectors_compared']} | {cos['onnx fp32']:.6f} | {cos['bf16']:.6f} |")
    lines += ["", "Where the time goes, per region (pooled output; ms). *read alone*: `LocalBackend.read` on the same "
              "regions with nothing else running; *prepare*: `meta.timings.prepare_ms` in the pipeline (read, "
              "normalise, tile; a call prepares its regions in chunks of 16, each next chunk in a second thread "
              "while the current one is encoded); *encode*: `meta.timings.encode_ms` per tile x tiles; *wall*: "
              "the call's time per region. *read share* = read alone / (read alone + encode).", "",
              "| model | mode | read alone | prepare (eager / default) | encode eager fp32 | encode default | "
              "wall eager | wall default | read share eager | read share default | encoder GFLOP/s eager / default |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, r in results.items():
        for mode in MODES:
            e, d = r["configs"]["eager fp32"][mode]["pooled"], r["configs"][r["default"]][mode]["pooled"]
            read = r["read_alone_ms_per_region"][mode]
            lines.append(
                f"| {model} | {mode} | {read:.1f} | {e['prepare_ms_per_region']:.1f} / {d['prepare_ms_per_region']:.1f}"
                f" | {e['encode_ms_per_region']:.1f} | {d['encode_ms_per_region']:.1f} | {e['wall_ms_per_region']:.1f}"
                f" | {d['wall_ms_per_region']:.1f} | {100 * read / (read + e['encode_ms_per_region']):.1f}% | "
                f"{100 * read / (read + d['encode_ms_per_region']):.1f}% | "
                f"{r['gflop_per_tile'] * e['tiles'] / e['regions'] / e['encode_ms_per_region'] * 1000:.0f} / "
                f"{r['gflop_per_tile'] * d['tiles'] / d['regions'] / d['encode_ms_per_region'] * 1000:.0f} |")
    spans = {m: [100 * r["read_share_default"][mode] for mode in MODES] for m, r in results.items()}
    bound = [m for m, v in spans.items() if max(v) < 20]
    shared = [m for m, v in spans.items() if max(v) >= 20]
    lines += ["", "rs-embed reports that fetching the imagery takes 75-90% of its time per region; there the pixels "
              "come over the network from Google Earth Engine. Here they come from local COGs, and reading takes "
              + ", ".join(f"{m} {min(v):.1f}-{max(v):.1f}%" for m, v in spans.items())
              + " of read + encode on the default path."
              + (f" For {' and '.join(bound)} the encoder bounds the rate." if bound else "")
              + (f" For {' and '.join(shared)} the encoder is cheap enough that reading and preparing the composite "
                 "is a large share, and streaming (the next chunk read while this one is encoded) matters."
                 if shared else "")
              + " With a remote backend (GEE, STAC over HTTP) the read share grows toward rs-embed's; the same "
              "streaming then hides up to one chunk's encoding time of it.",
              "", "One-off preparation before timing (s): " + "; ".join(
                  f"{m}: " + ", ".join(f"{c} {t:.0f}" for c, t in r["load_s"].items()) for m, r in results.items())]
    notes = [n for r in results.values() for n in r["notes"]]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return lines


def render(path: Path) -> None:
    """Print the Markdown of a run saved with ``--json`` (nothing is measured)."""
    saved = json.loads(path.read_text())
    print("\n".join(markdown(saved["models"], saved["threads"], saved["repeat"])))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--regions", type=int, default=24, help="regions in resize mode (remoteclip, efficientnet)")
    parser.add_argument("--tile-regions", type=int, default=6, help="regions in tile mode (remoteclip, efficientnet)")
    parser.add_argument("--prithvi-regions", type=int, default=1, help="prithvi regions per mode (one round)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep ONNX exports and compiled packages here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="6 / 3 / 1 regions, one repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    parser.add_argument("--render", type=Path, default=None, help="only print the Markdown of a saved --json run")
    args = parser.parse_args(argv)
    if args.render is not None:
        render(args.render)
        return
    if args.quick:
        args.regions, args.tile_regions, args.prithvi_regions, args.repeat = 6, 3, 1, 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="omniembed-geo-bench-") as tmp:
        root = Path(tmp)
        data = make_data(root / "data")
        model_dir = root / "models"
        if "remoteclip" in models:
            write_remoteclip(model_dir / "remoteclip")
        if "prithvi" in models:
            write_prithvi(model_dir / "prithvi")
        settings = {"cache_dir": args.cache_dir or root / "cache", "model_dir": model_dir, "hub_offline": True,
                    "num_threads": args.threads}
        for case in cases(data, models, args.regions, args.tile_regions, args.prithvi_regions):
            log(f"== {case.model}")
            results[case.model] = run_model(case, settings, args.repeat)
            results[case.model]["summary"] = summarize(results[case.model])
    print("\n".join(markdown(results, args.threads, args.repeat)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nload average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; peak RSS of this process "
          f"{peak_mb:.0f} MiB")
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "repeat": args.repeat, "models": results,
                                         "peak_rss_mb": peak_mb}, indent=2))


if __name__ == "__main__":
    main()
