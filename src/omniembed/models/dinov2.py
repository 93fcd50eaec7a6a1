"""DINOv2 ViT-S/14 (self-supervised image features) through ``transformers``.

The encoder returns the final layer-normed token states (class token + patch tokens); the pipeline
pools them: ``cls`` (default, the class token) or ``mean_patch`` (mean of the patch tokens).
Preprocessing is DINOv2's reference one: the shorter side to 256 (bicubic), centre crop 224, ImageNet
mean/std; the position embeddings (trained at 518 px) are interpolated to the 16x16 patch grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

__all__ = ["SPECS", "load", "spec_for_folder"]

SPECS = (
    ModelSpec(
        name="dinov2-small",
        loader="omniembed.models.dinov2:load",
        modalities=(Modality.IMAGE,),
        dim=384,
        pooling="cls",
        normalize=False,
        weights=WeightsSource(hub_id="facebook/dinov2-small"),
        license="Apache-2.0",
        aliases=("dino_v2_vits14", "facebook/dinov2-small"),
        description="Meta DINOv2 ViT-S/14 image features (pooling: cls or mean_patch)",
        options=(
            ("image_resize", "shortest_edge"),
            ("image_resize_size", 256),
            ("image_interpolation", "bicubic"),
            ("image_crop_size", 224),
            ("image_rescale", 1 / 255),
            ("image_mean", (0.485, 0.456, 0.406)),
            ("image_std", (0.229, 0.224, 0.225)),
        ),
    ),
)


FOLDER_MODEL_TYPES = ("dinov2",)
"""Folders given directly whose config.json has this ``model_type`` are built by ``spec_for_folder``."""


def spec_for_folder(folder: Path, name: str | None = None) -> ModelSpec:
    """A spec for a DINOv2 ``save_pretrained`` folder given directly (reads only config.json)."""
    import dataclasses
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return dataclasses.replace(
        SPECS[0], name=name or str(folder), aliases=(), dim=int(config.get("hidden_size", 384)),
        weights=WeightsSource(local_path=folder), description=f"DINOv2 model from {folder}", license="see the folder",
    )


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    import numpy as np
    from transformers.utils import logging as hf_logging

    from omniembed.contract import LoadedModel
    from omniembed.inputs.image import ImagePreparer, ImagePreprocess
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    hf_logging.disable_progress_bar()
    preprocess = ImagePreprocess.from_options(spec.options)
    hw = preprocess.output_hw() or (224, 224)
    version = fingerprint(folder)

    def build() -> Any:
        import torch
        from transformers import Dinov2Model

        class Tokens(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = Dinov2Model.from_pretrained(folder).eval()

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                hidden: torch.Tensor = self.model(pixel_values=pixel_values).last_hidden_state
                return hidden

        return Tokens().eval()

    def example() -> dict[str, np.ndarray]:
        return {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, *hw)).astype(np.float32)}

    key = f"{spec.name.replace('/', '_').strip('_')}-{version}-g1"
    graph = GraphSpec(key, build, ("pixel_values",), "last_hidden_state", {"pixel_values": {0: "batch"}}, example)
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={Modality.IMAGE: ImagePreparer(preprocess, settings)},
        encoders={Modality.IMAGE: build_encoder(graph, runtime, device, settings)},
        runtime=runtime,
        device=device,
    )
