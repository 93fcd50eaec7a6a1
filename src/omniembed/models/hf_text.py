"""Text encoders in Hugging Face / sentence-transformers layout (BERT, MiniLM, XLM-R, E5 ...).

A folder holds ``config.json`` + weights + tokenizer; sentence-transformers folders add
``modules.json`` (Transformer -> Pooling -> optional Normalize), ``1_Pooling/config.json`` and
``sentence_bert_config.json`` (``max_seq_length``). Pooling, normalisation and the token limit are read
from those files, so a model behaves as its authors defined it. Only the JSON files are read to build
a spec; torch is imported when the model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.embedding import Modality
from omniembed.errors import ParameterInvalid
from omniembed.registry import ModelSpec, WeightsSource

__all__ = ["StConfig", "load", "read_st_config", "spec_from_dir"]

LOADER = "omniembed.models.hf_text:load"
_ST = "sentence_transformers.models."
_SUPPORTED = {_ST + "Transformer", _ST + "Pooling", _ST + "Normalize"}
_POOL_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
)


class StConfig:
    """What a sentence-transformers folder says about its model."""

    def __init__(self, transformer_dir: Path, pooling: str, normalize: bool, max_tokens: int, dim: int) -> None:
        self.transformer_dir = transformer_dir
        self.pooling = pooling
        self.normalize = normalize
        self.max_tokens = max_tokens
        self.dim = dim


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_st_config(folder: Path) -> StConfig:
    """Pooling, normalisation, token limit and dimension as the folder's own files define them."""
    modules: list[dict[str, Any]] = _json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    unsupported = [m["type"] for m in modules if m.get("type") not in _SUPPORTED]
    if unsupported:
        raise ParameterInvalid(
            f"the model in {folder} uses sentence-transformers modules omniembed does not run: "
            f"{', '.join(unsupported)} (supported: Transformer, Pooling, Normalize)",
            param="model",
        )
    transformer_dir, pooling, normalize = folder, "mean", False
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            cfg = _json(path / "config.json")
            modes = [mode for key, mode in _POOL_KEYS if cfg.get(key)]
            if len(modes) != 1 or cfg.get("pooling_mode_mean_sqrt_len_tokens"):
                raise ParameterInvalid(f"unsupported pooling configuration in {path}: {cfg}", param="model")
            pooling = modes[0]
        elif kind == "Normalize":
            normalize = True
    config = _json(transformer_dir / "config.json")
    max_tokens = int(config.get("max_position_embeddings", 512))
    for candidate in (transformer_dir / "sentence_bert_config.json", folder / "sentence_bert_config.json"):
        if candidate.is_file():
            max_tokens = int(_json(candidate).get("max_seq_length") or max_tokens)
            break
    # RoBERTa-style position ids start after the padding index: 514 positions hold 512 tokens.
    if config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
        max_tokens = min(max_tokens, int(config.get("max_position_embeddings", 514)) - 2)
    if "hidden_size" not in config:
        kind = config.get("model_type", "unknown")
        raise ParameterInvalid(
            f"{transformer_dir} holds a {kind!r} model, which omniembed does not run as a text encoder",
            param="model",
        )
    return StConfig(transformer_dir, pooling, normalize, max_tokens, int(config["hidden_size"]))


FOLDER_MODEL_TYPES = ("*",)
"""Every folder given directly that no other model family claims is a text encoder."""


def spec_from_dir(folder: Path, name: str | None = None) -> ModelSpec:
    """A spec for a text encoder in a local folder (what ``embed("/path/to/model", ...)`` uses)."""
    folder = folder.expanduser().resolve()
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise ParameterInvalid(f"{folder} holds no config.json or modules.json: not a model folder", param="model")
    st = read_st_config(folder)
    return ModelSpec(
        name=name or str(folder),
        loader=LOADER,
        modalities=(Modality.TEXT,),
        dim=st.dim,
        pooling=st.pooling,
        normalize=st.normalize,
        weights=WeightsSource(local_path=folder),
        license="see the model's own files",
        description=f"Hugging Face text encoder from {folder}",
        max_tokens=st.max_tokens,
    )


def _graph(spec: ModelSpec, folder: Path, st: StConfig, version: str, input_names: tuple[str, ...]) -> Any:
    from omniembed.runtime import GraphSpec

    def build() -> Any:
        import torch
        from transformers import AutoModel

        class HiddenStates(torch.nn.Module):
            """Positional inputs in ``input_names`` order -> last hidden state (B, S, D)."""

            def __init__(self) -> None:
                super().__init__()
                self.model = AutoModel.from_pretrained(st.transformer_dir).eval()

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                out = self.model(**dict(zip(input_names, tensors, strict=True)))
                hidden: torch.Tensor = out.last_hidden_state
                return hidden

        return HiddenStates().eval()

    def example() -> dict[str, np.ndarray]:
        ids = np.array([[101, 2023, 2003, 1037, 3231, 102, 0], [101, 7592, 102, 0, 0, 0, 0]], np.int64)
        ids = np.where(ids > 0, 5, 0)  # any in-vocabulary ids; the export only needs shapes and types
        mask = (np.arange(7) < np.array([[6], [3]])).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return {n: feeds[n] for n in input_names}

    safe = spec.name.replace("/", "_").strip("_") or "model"
    axes = {n: {0: "batch", 1: "seq"} for n in input_names}
    return GraphSpec(f"{safe}-{version}-g1", build, input_names, "last_hidden_state", axes, example)


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    """Load a text encoder folder for ``runtime`` on ``device``."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from omniembed.contract import LoadedModel
    from omniembed.inputs.text import TokenizerPreparer
    from omniembed.runtime import build_encoder
    from omniembed.weights import fingerprint

    hf_logging.disable_progress_bar()
    st = read_st_config(folder)
    tokenizer = AutoTokenizer.from_pretrained(st.transformer_dir)
    input_names = tuple(
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names
    )
    max_tokens = min(spec.max_tokens or st.max_tokens, st.max_tokens)
    version = fingerprint(folder)
    encoder = build_encoder(_graph(spec, folder, st, version, input_names), runtime, device, settings)
    preparer = TokenizerPreparer(tokenizer, max_tokens, settings.max_text_chars, input_names, settings.max_batch_tokens)
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={Modality.TEXT: preparer},
        encoders={Modality.TEXT: encoder},
        runtime=runtime,
        device=device,
    )


spec_for_folder = spec_from_dir
