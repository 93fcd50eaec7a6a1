"""RemoteCLIP (``remoteclip``, alias ``remoteclip_s2rgb``): CLIP ViT-B/32 fine-tuned on remote-sensing
image-text pairs, run through ``transformers`` (``CLIPVisionModelWithProjection``).

The official checkpoint (``RemoteCLIP-ViT-B-32.pt``) is an open_clip state dict; ``convert_visual`` maps
its ``visual.*`` keys onto the transformers layout (fused ``in_proj`` split into q/k/v, ``proj``
transposed), every key accounted for, loaded strictly. Input: Sentinel-2 B04/B03/B02 as a true-colour
composite (reflectance 0..0.3 -> 0..1; 8-bit sources /255), CLIP mean/std. Pooled output: CLIP's projected
image embedding (``encode_image``, 512-d), as rs-embed gives it (the mean over tiles in tile mode). Grid output:
the last layer's patch tokens after ``ln_post`` (768-d, one cell per 32 x 32 input pixels).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.models.clip import OPENAI_MEAN, OPENAI_STD
from omniembed.registry import ModelSpec, WeightsSource

LOADER = "omniembed.models.remoteclip:load"
CHECKPOINT = "RemoteCLIP-ViT-B-32.pt"

SPECS = (
    ModelSpec(
        name="remoteclip",
        loader=LOADER,
        modalities=(Modality.GEO,),
        dim=512,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(hub_id="chendelong/RemoteCLIP", marker=CHECKPOINT),
        license="Apache-2.0",
        aliases=("remoteclip_s2rgb", "remoteclip-vit-b-32"),
        description="RemoteCLIP ViT-B/32 on Sentinel-2 true-colour composites (pooled: the 512-d projected image "
        "embedding; grid: 768-d patch tokens)",
        options=(("bands", ("B04", "B03", "B02")), ("scale_m", 10.0), ("input_size", 224)),
        # bf16: min cosine to fp32 0.999991 over every pooled vector, grid cell and grid mean of the real
        # Sentinel-2 composites in bench/geo_throughput.py (ViT-B/32 at real size, random open_clip-layout
        # weights); 1.81x the eager fp32 regions/s there vs ONNX fp32 1.15x (eager autocast; compiled: 0.99999).
        auto_precision="bf16",
    ),
)


def vision_config(sd: dict[str, Any]) -> dict[str, Any]:
    """transformers ``CLIPVisionConfig`` arguments read off an open_clip visual state dict."""
    width, _, patch, _ = sd["visual.conv1.weight"].shape
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    layers = len({m[1] for k in sd if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", k))})
    return {"hidden_size": width, "intermediate_size": sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            "num_hidden_layers": layers, "num_attention_heads": width // 64 if width >= 64 else max(1, width // 8),
            "image_size": grid * patch, "patch_size": patch, "projection_dim": sd["visual.proj"].shape[1],
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}


def convert_visual(sd: dict[str, Any]) -> dict[str, Any]:
    """open_clip ``visual.*`` keys -> transformers ``CLIPVisionModelWithProjection`` keys (text keys dropped)."""
    out: dict[str, Any] = {}
    vm = "vision_model."
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        if not key.startswith("visual."):
            continue
        k = key.removeprefix("visual.")
        if k == "class_embedding":
            out[vm + "embeddings.class_embedding"] = value
        elif k == "positional_embedding":
            out[vm + "embeddings.position_embedding.weight"] = value
        elif k == "conv1.weight":
            out[vm + "embeddings.patch_embedding.weight"] = value
        elif k.startswith("ln_pre."):
            out[vm + "pre_layrnorm." + k.split(".")[-1]] = value
        elif k.startswith("ln_post."):
            out[vm + "post_layernorm." + k.split(".")[-1]] = value
        elif k == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.(.+)[._](weight|bias)$", k):
            layer, name, kind = m.groups()
            prefix = f"{vm}encoder.layers.{layer}."
            if name == "attn.in_proj":  # nn.MultiheadAttention's fused in_proj_weight / in_proj_bias
                for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk.contiguous()
            elif name in names:
                out[f"{prefix}{names[name]}.{kind}"] = value
            else:
                raise KeyError(f"unexpected open_clip key {key}")
        else:
            raise KeyError(f"unexpected open_clip key {key}")
    return out


def read_checkpoint(folder: Path) -> dict[str, Any]:
    import torch

    path = folder / CHECKPOINT if (folder / CHECKPOINT).is_file() else next(iter(sorted(folder.glob("*.pt"))))
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    return {k.removeprefix("module."): v for k, v in raw.items()}


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    import numpy as np
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput, rgb_unit
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    def vision(sd: dict[str, Any]) -> Any:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_config(sd))).eval()
        model.load_state_dict(convert_visual(sd), strict=True)
        return model

    sd = read_checkpoint(folder)
    cfg = vision_config(sd)
    side, patch = int(cfg["image_size"]), int(cfg["patch_size"])
    built = [vision(sd)]  # loaded now, so a bad checkpoint fails here; handed to the first build, then dropped
    del sd
    version = fingerprint(folder, ("*.pt",))

    class PatchGrid(torch.nn.Module):
        """(N, 1, 3, S, S) -> the grid (N, D, S/patch, S/patch): the last layer's patch tokens after ``ln_post``;
        and the pooled vector (N, P): CLIP's projected image embedding (``encode_image``), as rs-embed gives."""

        def __init__(self) -> None:
            super().__init__()
            model = built.pop() if built else vision(read_checkpoint(folder))
            self.vision, self.projection = model.vision_model, model.visual_projection

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.vision(pixel_values=pixel_values[:, 0]).last_hidden_state
            tokens = self.vision.post_layernorm(hidden[:, 1:])
            g = side // patch
            grid = tokens.reshape(tokens.shape[0], g, g, -1).permute(0, 3, 1, 2)
            return grid, self.projection(self.vision.post_layernorm(hidden[:, 0]))

    graph = GraphSpec(
        cache_key=f"{spec.name}-{version}-grid-pooled",
        build=PatchGrid,
        input_names=("pixel_values",),
        output_name="grid",
        dynamic_axes={"pixel_values": {0: "batch"}},
        example=lambda: {"pixel_values": np.random.default_rng(0).random((2, 1, 3, side, side), np.float32)},
        extra_outputs=("pooled",),
    )
    mean = np.asarray(OPENAI_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(OPENAI_STD, dtype=np.float32)[None, :, None, None]

    def normalize(raw: np.ndarray) -> np.ndarray:  # (frames, 3, H, W)
        return ((rgb_unit(raw) - mean) / std).astype(np.float32)

    raster = RasterInput(tuple(spec.option("bands")), side, patch, normalize,
                         "true colour 0..0.3 reflectance -> 0..1, CLIP mean/std", scale_m=10.0)
    encoder = build_encoder(graph, runtime, device, settings)
    if runtime == "onnx":
        built.clear()  # exported or found in the cache: the torch module is not needed in memory
    return LoadedModel(spec, version, {}, {Modality.GEO: encoder}, runtime, device, raster=raster)
