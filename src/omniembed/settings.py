"""Settings, read from ``OMNIEMBED_*`` environment variables (and a ``.env`` file) when built.

Nothing here runs at import: the CLI, the HTTP app or the first API call builds ``Settings()``.
Precedence, highest first: explicit keyword arguments, environment variables, ``.env``, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

Device = Literal["auto", "cpu", "cuda"]
RuntimeName = Literal["auto", "torch", "onnx"]


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return (Path(base) if base else Path.home() / fallback) / "omniembed"


def _hub_offline_default() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


class Settings(BaseSettings):
    """All of omniembed's knobs. Each field is also ``OMNIEMBED_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="OMNIEMBED_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"),
        description="Where exported ONNX graphs and other derived files are cached.",
    )
    data_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"),
        description="Where durable state (job store, exports) lives.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="A folder with one sub-folder of weights per model, named by its canonical name "
        "(e.g. MODEL_DIR/clip-vit-b32/). Looked at before the Hugging Face cache and the hub.",
    )
    device: Device = Field(default="auto", description="auto | cpu | cuda")
    runtime: RuntimeName = Field(
        default="auto", description="auto | torch | onnx (auto: ONNX Runtime on CPU, torch on CUDA)"
    )
    hub_offline: bool = Field(
        default_factory=_hub_offline_default,
        description="Never contact the Hugging Face hub; only local folders and the HF cache.",
    )
    max_loaded_models: int = Field(default=4, ge=1, description="Loaded models kept in memory (LRU).")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Items per encoder call.")
    max_text_chars: int = Field(
        default=1_000_000, ge=1, description="Longest text accepted, in characters (input_too_large)."
    )
    num_threads: int = Field(default=0, ge=0, description="Compute threads; 0 = one per core.")

    # Inputs: URL fetching (one guarded fetcher for every modality) and per-item limits.
    fetch_timeout_sec: float = Field(default=10.0, gt=0, description="Timeout and overall deadline of one fetch.")
    fetch_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Largest download accepted.")
    fetch_max_redirects: int = Field(default=3, ge=0, description="Redirects followed, each re-checked.")
    allow_private_urls: bool = Field(
        default=False, description="Allow URLs on private, loopback and link-local addresses (SSRF guard off)."
    )
    max_image_pixels: int = Field(default=64_000_000, ge=1, description="Largest image (width x height).")
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1, description="Largest encoded image file.")
    max_audio_seconds: float = Field(default=3600.0, gt=0, description="Longest audio clip accepted.")
    max_audio_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="Largest encoded audio file.")

    def threads(self) -> int:
        return self.num_threads or max(1, len(os.sched_getaffinity(0)))

    @property
    def onnx_cache_dir(self) -> Path:
        return self.cache_dir / "onnx"
