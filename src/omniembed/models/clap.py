"""CLAP (LAION, HTS-AT audio + RoBERTa text) through ``transformers.ClapModel``: text and audio in one space.

A folder in Hugging Face layout (``config.json``, weights, ``preprocessor_config.json``, tokenizer), found
like every model: an explicit path, ``OMNIEMBED_MODEL_DIR/clap``, the Hugging Face cache, then the hub.
Audio goes through the folder's own ``ClapFeatureExtractor`` in windows of its ``max_length_s``
(10 s for LAION's models; a shorter clip is repeat-padded, as the extractor does); each window's
projection is unit length, a segment is the mean of its windows, normalised again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

SPECS = (
    ModelSpec(
        name="clap",
        loader="omniembed.models.clap:load",
        modalities=(Modality.AUDIO, Modality.TEXT),
        dim=512,
        pooling="mean",
        normalize=True,
        weights=WeightsSource(hub_id="laion/clap-htsat-unfused"),
        license="Apache-2.0",
        aliases=("clap-htsat-unfused", "laion/clap-htsat-unfused"),
        description="Audio and text in one space (LAION CLAP, HTS-AT + RoBERTa), 10 s windows, unit length",
        max_tokens=512,
    ),
)


def _shared_model(folder: Path) -> Callable[[], Any]:
    """One ClapModel for both towers, loaded when the first graph is built (not once per tower)."""

    @functools.cache
    def model() -> Any:
        from transformers import ClapModel

        return ClapModel.from_pretrained(folder).eval()

    return model


def _audio_graph(
    name: str, model: Callable[[], Any], version: str, example_features: dict[str, np.ndarray]
) -> Any:
    from omniembed.runtime import GraphSpec

    def build() -> Any:
        import torch

        from omniembed.models._audio import masked_window_mean

        class AudioTower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model()

            def forward(self, windows: torch.Tensor, is_longer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                b, p = mask.shape
                out = self.model.get_audio_features(
                    input_features=windows.reshape(b * p, *windows.shape[2:]),
                    is_longer=is_longer.reshape(b * p, -1).bool(),
                )
                result: torch.Tensor = masked_window_mean(out.pooler_output, mask)
                return result

        return AudioTower().eval()

    def example() -> dict[str, np.ndarray]:
        return {**example_features, "window_mask": np.array([[1, 1], [1, 0]], np.float32)}

    names = ("windows", "is_longer", "window_mask")
    axes = {n: {0: "batch", 1: "windows"} for n in names}
    return GraphSpec(f"{name}-{version}-audio-g2", build, names, "audio_embedding", axes, example)


def _text_graph(name: str, model: Callable[[], Any], version: str) -> Any:
    from omniembed.runtime import GraphSpec

    def build() -> Any:
        import torch

        class TextTower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model()

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
                result: torch.Tensor = out.pooler_output
                return result

        return TextTower().eval()

    def example() -> dict[str, np.ndarray]:
        ids = np.array([[0, 5, 6, 7, 2], [0, 5, 2, 1, 1]], np.int64)
        return {"input_ids": ids, "attention_mask": (np.arange(5) < np.array([[5], [3]])).astype(np.int64)}

    names = ("input_ids", "attention_mask")
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    return GraphSpec(f"{name}-{version}-text-g2", build, names, "text_embedding", axes, example)


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    from transformers import AutoConfig, AutoTokenizer, ClapFeatureExtractor
    from transformers.utils import logging as hf_logging

    from omniembed.contract import LoadedModel
    from omniembed.inputs.audio import AudioPreparer
    from omniembed.inputs.audio_frontend import ChunkFrontEnd
    from omniembed.inputs.text import TokenizerPreparer
    from omniembed.runtime import build_encoder
    from omniembed.weights import fingerprint

    hf_logging.disable_progress_bar()
    extractor = ClapFeatureExtractor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    rate = int(extractor.sampling_rate)

    def featurize(chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
        out = extractor(chunks, sampling_rate=rate, return_tensors="np")
        features = np.asarray(out["input_features"], np.float32)
        return {"windows": features, "is_longer": np.asarray(out["is_longer"], np.float32).reshape(len(chunks), 1)}

    described = f"ClapFeatureExtractor ({extractor.truncation}, {extractor.padding})"
    frontend = ChunkFrontEnd(rate, int(extractor.nb_max_samples), featurize, name=described)
    version = fingerprint(folder)
    example = featurize([np.zeros(rate // 2, np.float32), np.zeros(rate // 4, np.float32)] * 2)
    example = {k: v.reshape(2, 2, *v.shape[1:]) for k, v in example.items()}
    model = _shared_model(folder)
    audio_encoder = build_encoder(_audio_graph(spec.name, model, version, example), runtime, device, settings)
    text_encoder = build_encoder(_text_graph(spec.name, model, version), runtime, device, settings)
    positions = int(getattr(config.text_config, "max_position_embeddings", 514)) - 2
    max_tokens = min(spec.max_tokens or positions, positions, int(getattr(tokenizer, "model_max_length", positions)))
    text = TokenizerPreparer(
        tokenizer, max_tokens, settings.max_text_chars, ("input_ids", "attention_mask"), settings.max_batch_tokens
    )
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={Modality.AUDIO: AudioPreparer(frontend, settings), Modality.TEXT: text},
        encoders={Modality.AUDIO: audio_encoder, Modality.TEXT: text_encoder},
        runtime=runtime,
        device=device,
    )
