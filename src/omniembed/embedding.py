"""The one result type of every modality: ``Embedding`` = float32 data + typed metadata."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

import numpy as np

__all__ = ["Embedding", "EmbeddingMeta", "InputInfo", "Modality", "Segment", "Timings"]


class Modality(StrEnum):
    """What kind of input a model embeds."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    GEO = "geo"
    VIDEO = "video"


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds, by pipeline stage.

    ``prepare_ms`` is this item's share of preparation (the call's total divided by its items);
    ``encode_ms`` and ``postprocess_ms`` are for the whole batch the item ran in, shared by
    ``batch_size`` items.
    """

    prepare_ms: float = 0.0
    encode_ms: float = 0.0
    postprocess_ms: float = 0.0
    batch_size: int = 1


@dataclass(frozen=True)
class InputInfo:
    """What went into the model for this item."""

    kind: str
    """``"text"``, ``"image"`` ... the input's modality."""
    description: str
    """A short, safe description (a text's first characters, a file name, a URL)."""
    length: int | None = None
    """Model units consumed: tokens for text (with special tokens), samples, pixels."""
    truncated: bool = False
    """True when part of the input was cut to fit the model's limit."""
    padded: bool = False
    """True when the input was shorter than one model window and was padded (e.g. a short audio clip)."""


@dataclass(frozen=True)
class Segment:
    """A time span of a longer input (audio, video) with its own vector (row of ``Embedding.data``)."""

    start_sec: float
    end_sec: float


@dataclass(frozen=True)
class EmbeddingMeta(Mapping[str, Any]):
    """Typed metadata of one embedding, also readable as a mapping (as rs-embed's ``meta`` dict):
    ``meta["model"]``, ``meta.get("dim")``, ``"pooling" in meta``, ``dict(meta)``, ``keys()``/``items()``.
    The keys are the fields below (``extra`` is not a key itself) followed by the keys of ``extra``."""

    model: str
    """Canonical model name in the registry."""
    model_version: str
    """Identifies the exact weights (a content hash or upstream revision)."""
    modality: Modality
    dim: int
    pooling: str
    normalized: bool
    preprocessing: str
    """The preprocessing contract applied, e.g. ``"wordpiece; max_tokens=256; truncate=end"``."""
    input: InputInfo
    runtime: str
    device: str
    precision: str = "fp32"
    timings: Timings = field(default_factory=Timings)
    segments: tuple[Segment, ...] = ()
    """For segmented inputs: one entry per row of ``data``. Empty for a single vector."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """What a face adds for its clients (JSON-ready values), e.g. the geo face's ``backend``, ``temporal``,
    ``output`` in rs-embed's key names. Read through the mapping like the fields."""

    def _field_names(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "extra"]

    def __getitem__(self, key: str) -> Any:
        if key != "extra" and key in self.__dataclass_fields__:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        names = self._field_names()
        yield from names
        yield from (k for k in self.extra if k not in names)

    def __len__(self) -> int:
        names = set(self._field_names())
        return len(names) + sum(1 for k in self.extra if k not in names)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and ((key != "extra" and key in self.__dataclass_fields__) or key in self.extra)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["modality"] = str(self.modality)
        extra = out.pop("extra")
        if extra:
            out["extra"] = extra
        return out


@dataclass(frozen=True, eq=False)
class Embedding:
    """An embedding: ``data`` (float32: a vector, segments x D, or a grid) and its ``meta``."""

    data: np.ndarray
    meta: EmbeddingMeta
    pooled: np.ndarray | None = None
    """For segmented inputs (``data`` is segments x D): one vector for the whole input."""

    def __post_init__(self) -> None:
        if self.data.dtype != np.float32:
            object.__setattr__(self, "data", self.data.astype(np.float32))
        if self.pooled is not None and self.pooled.dtype != np.float32:
            object.__setattr__(self, "pooled", self.pooled.astype(np.float32))

    @property
    def vector(self) -> np.ndarray:
        """One vector for the whole input: ``data`` when it is 1-d, else the pooled vector."""
        if self.data.ndim == 1:
            return self.data
        if self.pooled is not None:
            return self.pooled
        raise ValueError(f"this embedding holds an array of shape {self.data.shape}, not one vector")

    @property
    def dim(self) -> int:
        return self.meta.dim

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def tolist(self) -> list[Any]:
        result: list[Any] = self.data.tolist()
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"embedding": [...], "meta": {...}}`` (+ ``"pooled"`` for segmented inputs)."""
        out: dict[str, Any] = {"embedding": self.tolist(), "meta": self.meta.to_dict()}
        if self.pooled is not None:
            out["pooled"] = self.pooled.tolist()
        return out

    def __repr__(self) -> str:
        return (
            f"Embedding(model={self.meta.model!r}, modality={str(self.meta.modality)!r}, "
            f"shape={self.data.shape}, normalized={self.meta.normalized})"
        )
