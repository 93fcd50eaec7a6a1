"""CLIP (OpenAI ViT-B/32, ViT-L/14) through ``transformers``: text and images in one embedding space.

One loaded model holds both towers: ``Modality.TEXT`` (CLIP's BPE tokenizer, 77 tokens, the end-of-text
token's state through ``text_projection``) and ``Modality.IMAGE`` (the class token's state through
``visual_projection``). Both give projected vectors of the same dimension, unit length by default, so a
text and an image of the same model compare by cosine. Image preprocessing is CLIP's own: the shorter
side to 224 (bicubic), centre crop 224, OpenAI mean/std.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

__all__ = ["SPECS", "load", "spec_for_folder"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_PREPROCESS = (
    ("image_resize", "shortest_edge"),
    ("image_resize_size", 224),
    ("image_interpolation", "bicubic"),
    ("image_crop_size", 224),
    ("image_rescale", 1 / 255),
    ("image_mean", OPENAI_MEAN),
    ("image_std", OPENAI_STD),
)
_LOADER = "omniembed.models.clip:load"


def _spec(name: str, hub_id: str, dim: int, aliases: tuple[str, ...], what: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        loader=_LOADER,
        modalities=(Modality.TEXT, Modality.IMAGE),
        dim=dim,
        pooling="cls",
        normalize=True,
        weights=WeightsSource(hub_id=hub_id),
        license="MIT",
        aliases=aliases,
        description=f"OpenAI CLIP {what}: text and images in one space (projected, unit length)",
        max_tokens=77,
        options=_PREPROCESS,
    )


SPECS = (
    _spec(
        "clip-vit-b32", "openai/clip-vit-base-patch32", 512, ("open_clip_vit_b32", "openai/clip-vit-base-patch32"),
        "ViT-B/32",
    ),
    _spec(
        "clip-vit-l14", "openai/clip-vit-large-patch14", 768,
        ("clip_vit_large_patch14", "openai/clip-vit-large-patch14"), "ViT-L/14",
    ),
)


FOLDER_MODEL_TYPES = ("clip",)
"""Folders given directly whose config.json has this ``model_type`` are built by ``spec_for_folder``."""


def spec_for_folder(folder: Path, name: str | None = None) -> ModelSpec:
    """A spec for a CLIP ``save_pretrained`` folder given directly (reads only config.json)."""
    import dataclasses
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return dataclasses.replace(
        SPECS[0], name=name or str(folder), aliases=(), dim=int(config.get("projection_dim", 512)),
        weights=WeightsSource(local_path=folder), description=f"CLIP model from {folder}", license="see the folder",
    )


def _graphs(spec: ModelSpec, folder: Path, version: str, image_hw: tuple[int, int]) -> tuple[Any, Any]:
    import numpy as np

    from omniembed.runtime import GraphSpec

    @functools.cache
    def model() -> Any:  # one CLIPModel for both towers, loaded only when a graph is built
        from transformers import CLIPModel

        return CLIPModel.from_pretrained(folder).eval()

    def build_image() -> Any:
        import torch

        class ImageTower(torch.nn.Module):
            def __init__(self, clip: Any) -> None:
                super().__init__()
                self.vision, self.proj = clip.vision_model, clip.visual_projection

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = self.proj(self.vision(pixel_values=pixel_values).pooler_output)
                return out

        return ImageTower(model()).eval()

    def build_text() -> Any:
        import torch

        class TextTower(torch.nn.Module):
            def __init__(self, clip: Any) -> None:
                super().__init__()
                self.text, self.proj = clip.text_model, clip.text_projection

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                pooled = self.text(input_ids=input_ids, attention_mask=attention_mask).pooler_output
                out: torch.Tensor = self.proj(pooled)
                return out

        return TextTower(model()).eval()

    def image_example() -> dict[str, np.ndarray]:
        return {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, *image_hw)).astype(np.float32)}

    def text_example() -> dict[str, np.ndarray]:
        ids = np.array([[0, 5, 6, 7, 1, 1], [0, 8, 1, 1, 1, 1]], np.int64)
        return {"input_ids": ids, "attention_mask": (np.arange(6) < np.array([[5], [3]])).astype(np.int64)}

    key = f"{spec.name.replace('/', '_').strip('_')}-{version}"
    image = GraphSpec(f"{key}-image-g1", build_image, ("pixel_values",), "image_embeds",
                      {"pixel_values": {0: "batch"}}, image_example)
    text = GraphSpec(f"{key}-text-g1", build_text, ("input_ids", "attention_mask"), "text_embeds",
                     {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}, text_example)
    return image, text


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    from transformers import AutoTokenizer, CLIPConfig
    from transformers.utils import logging as hf_logging

    from omniembed.contract import LoadedModel
    from omniembed.inputs.image import ImagePreparer, ImagePreprocess
    from omniembed.inputs.text import TokenizerPreparer
    from omniembed.runtime import build_encoder
    from omniembed.weights import fingerprint

    hf_logging.disable_progress_bar()
    config: Any = CLIPConfig.from_pretrained(folder)
    preprocess = ImagePreprocess.from_options(spec.options)
    side = int(config.vision_config.image_size)
    version = fingerprint(folder)  # hashes every weight file: once per load
    image_graph, text_graph = _graphs(spec, folder, version, preprocess.output_hw() or (side, side))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_tokens = min(spec.max_tokens or 77, int(config.text_config.max_position_embeddings))
    names = ("input_ids", "attention_mask")
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={
            Modality.TEXT: TokenizerPreparer(
                tokenizer, max_tokens, settings.max_text_chars, names, settings.max_batch_tokens
            ),
            Modality.IMAGE: ImagePreparer(preprocess, settings),
        },
        encoders={
            Modality.TEXT: build_encoder(text_graph, runtime, device, settings),
            Modality.IMAGE: build_encoder(image_graph, runtime, device, settings),
        },
        runtime=runtime,
        device=device,
    )
