"""Settings, read from ``OMNIEMBED_*`` environment variables (and a ``.env`` file) when built.

Nothing here runs at import: the CLI, the HTTP app or the first API call builds ``Settings()``.
Precedence, highest first: explicit keyword arguments, environment variables, ``.env``, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

Device = Literal["auto", "cpu", "cuda"]
Names = Annotated[list[str], NoDecode]  # from the environment: comma-separated (or a JSON list)
RuntimeName = Literal["auto", "torch", "onnx"]


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return (Path(base) if base else Path.home() / fallback) / "omniembed"


# What `omniembed serve` loads when neither --models nor OMNIEMBED_SERVE_MODELS names any: a model of each
# modality whose weights ship in Python packages, so that it runs offline.
DEFAULT_SERVE_MODELS = ("minilm", "efficientnet-lite0", "sfx-cnn", "speaker-ge2e")


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
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description="auto: a model's verified reduced precision (bf16) where the CPU has AVX512-BF16/AMX, else fp32",
    )
    compile: bool = Field(
        default=True,
        description="bf16 on CPU: compile each model ahead of time (AOTInductor, ~20-30 s once, cached in "
        "cache_dir/aoti; needs a C++ compiler), ~1.4x eager autocast for minilm. false: eager autocast.",
    )
    hub_offline: bool = Field(
        default_factory=_hub_offline_default,
        description="Never contact the Hugging Face hub; only local folders and the HF cache.",
    )
    max_loaded_models: int = Field(default=4, ge=1, description="Loaded models kept in memory (LRU).")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Items per encoder call.")
    max_batch_tokens: int | None = Field(
        default=None,
        ge=16,
        description="Text: an encoder call holds at most this many padded tokens (rows x longest row), so "
        "batches stay in cache. Unset: the runtime's own best, measured for minilm on the benchmark machine "
        "(1024 for compiled bf16, 512 otherwise).",
    )
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
    max_video_seconds: float = Field(
        default=7200.0, gt=0, description="Longest video accepted (declared duration, then every frame's time)."
    )
    max_video_pixels: int = Field(
        default=4096 * 4096, ge=1, description="Largest video frame (width x height), checked from the header."
    )
    max_video_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="Largest encoded video file (URLs: also fetch_max_bytes)."
    )
    video_fps: float = Field(default=1.0, gt=0, le=120, description="Video frames sampled per second.")
    max_segments: int = Field(
        default=10_000, ge=1, description="Most segments (audio) or clips (video) that one input is cut into."
    )
    video_clip_sec: float = Field(default=6.0, gt=0, description="Default video clip length, in seconds.")

    # Earth observation: named raster sources, e.g. OMNIEMBED_GEO_SOURCES='{"s2": "/data/s2"}'.
    geo_sources: dict[str, str] = Field(
        default_factory=dict, description="Named sources: a name (backend='local:NAME' or a sensor collection) "
        "for a folder, a file or a STAC catalog URL."
    )
    geo_min_coverage: float = Field(
        default=0.5, ge=0.0, le=1.0, description="get_embedding / get_embeddings_batch warn (once per call) when "
        "a region's read holds data for less than this fraction of its pixels (a region partly outside the "
        "source's rasters); meta['coverage'] gives each region's fraction. 0: never warn."
    )
    gee_project: str | None = Field(
        default=None, description="Google Cloud project that Earth Engine requests (backend='gee') run under. "
        "Unset: EE_PROJECT, then GOOGLE_CLOUD_PROJECT, then the project of the Earth Engine credentials."
    )

    # HTTP service (omniembed serve).
    host: str = Field(default="127.0.0.1", description="Address the server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the server binds (0: any free port).")
    serve_models: Names = Field(
        default_factory=list, description="Models loaded at start-up (/ready waits); each must load, or `omniembed "
        "serve` exits (see allow_missing_models). Unset, `omniembed serve` loads DEFAULT_SERVE_MODELS, skipping "
        "(with a warning) any whose weights are not installed; empty (OMNIEMBED_SERVE_MODELS=''): none, each "
        "model loads at its first request."
    )
    allow_missing_models: bool = Field(
        default=False, description="Serve the other start-up models when one cannot be loaded (an unknown name, "
        "missing weights) instead of exiting; /ready then answers 200 'degraded' and names each failed model."
    )
    default_text_model: str = Field(default="minilm", description="Text model for protocol-level model names.")
    default_image_model: str = Field(default="efficientnet-lite0", description="Image model, likewise.")
    default_audio_model: str = Field(default="sfx-cnn", description="Audio model, likewise.")
    joint_model: str = Field(
        default="auto", description="The joint text-image model that TwelveLabs' Marengo names map text, images "
        "and video to (one space, so a text finds images and clips): a model name or folder; auto: a CLIP-family "
        "model whose weights are on this machine; none: the per-modality default models (separate spaces)."
    )
    api_keys: Names = Field(default_factory=list, description="Accepted API keys; empty: no authentication.")
    cors_origins: Names = Field(default_factory=list, description="Allowed CORS origins; empty: CORS off.")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Largest HTTP request body.")
    max_json_depth: int = Field(
        default=32, ge=2, description="JSON request bodies over 256 KiB: deepest nesting of arrays and objects (413)."
    )
    max_json_items: int = Field(
        default=8192, ge=1, description="JSON request bodies over 256 KiB: most elements of one array (or members "
        "of one object); never below max_items_per_request. 8192: OpenAI's token limit of one input."
    )
    max_json_values: int = Field(
        default=500_000, ge=1, description="JSON request bodies over 256 KiB: most values (numbers, strings, lists, "
        "objects) in one body, counted while parsing, before the app reads it (413). Above OpenAI's 300,000 "
        "tokens per request."
    )
    max_items_per_request: int = Field(
        default=2048, ge=1, description="Most inputs in one request (more: 413). At most queue_size."
    )
    queue_size: int = Field(
        default=4096, ge=1, description="Waiting items per model queue before 429 (retry later)."
    )
    queue_idle_sec: float = Field(
        default=60.0, gt=0, description="A per-(model, options) queue idle this long is removed with its worker."
    )
    max_batch_wait_ms: float = Field(default=2.0, ge=0, description="How long a batch waits to fill up.")
    request_timeout_sec: float = Field(default=60.0, gt=0, description="Per-request embedding deadline.")
    jobs_db_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the job store; default: SQLite in DATA_DIR/jobs.sqlite3."
    )
    job_concurrency: int = Field(default=32, ge=1, description="Jobs run at once (they share model batches).")
    job_timeout_sec: float | None = Field(
        default=None, gt=0, description="Deadline of a durable job's embedding (it fails as request_timeout); "
        "unset: none. Jobs wait their turn behind requests and each other; request_timeout_sec is not theirs."
    )
    job_result_ttl_sec: float = Field(default=86400.0, gt=0, description="How long finished jobs stay readable.")
    job_lease_sec: float = Field(
        default=30.0, ge=0.3, description="A running job's lease: its server renews it every third of this; a job "
        "whose lease lapses (its server died) is run again by another server. Keep it above any server stall."
    )
    shutdown_grace_sec: float = Field(default=10.0, ge=0, description="Time in-flight jobs get to finish at stop.")

    @field_validator("serve_models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _admissible(self) -> Settings:
        # A request the queue can never hold would get 429 forever: refuse such settings up front.
        if self.max_items_per_request > self.queue_size:
            raise ValueError(
                f"max_items_per_request ({self.max_items_per_request}) must not exceed queue_size "
                f"({self.queue_size}): such requests could never be admitted"
            )
        return self

    def threads(self) -> int:
        return self.num_threads or max(1, len(os.sched_getaffinity(0)))

    @property
    def onnx_cache_dir(self) -> Path:
        return self.cache_dir / "onnx"

    @property
    def jobs_url(self) -> str:
        return self.jobs_db_url or f"sqlite:///{self.data_dir / 'jobs.sqlite3'}"
