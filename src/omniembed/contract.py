"""The preparer contract: what a model family hands the pipeline, and what a preparer gives it per item.

A model family says what a model is with a ``LoadedModel``: per modality, a ``Preparer`` (raw items to
encoder rows) and an ``Encoder``. ``Options`` are one call's options. A preparer turns each item into
``Prepared`` rows: one row, a list of rows (an audio clip's segments, a region's tiles), or an iterator
that makes the rows as the pipeline reads them (a video's frames), so a long item streams through the
encoder without being prepared whole. ``omniembed.pipeline.run`` does the rest for every modality.

This module sits below ``inputs/`` and ``pipeline.py``: it imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from omniembed.embedding import InputInfo, Modality, Segment
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.registry import ModelSpec
from omniembed.runtime.base import Encoder

__all__ = ["DEFAULT_BATCH_SIZE", "POOLINGS", "TRUNCATE_MODES", "LoadedModel", "Options", "PrepareResult", "Prepared",
           "Preparer", "normalize"]

TRUNCATE_MODES = ("end", "start", "none")
POOLINGS = ("mean", "cls", "max", "mean_patch")
"""How token or patch outputs may be pooled (``Options.pooling``; the pipeline's ``pool``)."""
"""How a text over the model's limit is cut, as TwelveLabs names them: keep the start (``end``), keep the end
(``start``), or refuse it (``none``)."""
DEFAULT_BATCH_SIZE = 32
"""Rows per encoder call where neither the call nor the settings say (the pipeline run on its own)."""


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (a zero row stays zero): the pipeline's normalisation, and a preparer's ``finish``
    where it combines rows (a video's clips)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _finite(value: Any) -> bool:
    """A real number (bool is not one) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Options:
    """One call's options, checked when made: an invalid value raises ``ParameterInvalid`` naming it.

    Every face builds one and hands it to ``Engine.run`` (``embed_batch``'s keywords are these fields); the
    engine resolves ``runtime``/``device``/``precision`` and fills ``batch_size`` and a video's
    ``segment_sec`` from the settings; the preparer and the post-processing read the rest.
    """

    truncate: str = "end"
    """Texts: ``end`` (keep the start), ``start`` (keep the end) or ``none`` (too long is an error)."""
    normalize: bool | None = None
    """None: as the model defines."""
    pooling: str | None = None
    """None: the model's default pooling."""
    batch_size: int | None = None
    """Rows per encoder call; None: ``Settings.batch_size`` (``DEFAULT_BATCH_SIZE`` outside an engine)."""
    start_offset_sec: float = 0.0
    """Segmented inputs (audio, video): where to start, in seconds."""
    segment_sec: float | None = None
    """Segmented inputs: segment (video: clip) length in seconds (None: the model's or settings' default)."""
    overlap_sec: float = 0.0
    """Audio: overlap between consecutive segments, in seconds (video clips do not overlap)."""
    end_offset_sec: float | None = None
    """Video: where to stop, in seconds (None: the end)."""
    embedding_option: str = "visual"
    """Video: ``visual`` (frames under an image model) or ``audio`` (the sound track under an audio model)."""
    allow_paths: bool = True
    """Whether string inputs may name local files (the HTTP server turns this off)."""
    runtime: str | None = None
    """``auto``, ``torch`` or ``onnx``; None: the settings'."""
    device: str | None = None
    """``auto``, ``cpu`` or ``cuda``; None: the settings'."""
    precision: str | None = None
    """``auto``, ``fp32``, ``bf16`` or ``int8``; None: the settings'."""

    def __post_init__(self) -> None:
        truncate = "end" if self.truncate is None else self.truncate
        if not isinstance(truncate, str) or truncate.lower() not in TRUNCATE_MODES:
            raise ParameterInvalid(f"the truncate parameter is invalid ({truncate!r}). You should use one of the "
                                   "following values: none, start, end.", param="truncate")
        object.__setattr__(self, "truncate", truncate.lower())
        if self.pooling is not None and (not isinstance(self.pooling, str) or self.pooling not in POOLINGS):
            raise ParameterInvalid(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}",
                                   param="pooling")
        if self.normalize is not None and not isinstance(self.normalize, bool):
            raise ParameterInvalid(f"normalize must be true or false, not {self.normalize!r}", param="normalize")
        size = self.batch_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ParameterInvalid(f"batch_size must be a positive integer, not {size!r}", param="batch_size")
        for param in ("start_offset_sec", "overlap_sec"):
            value = getattr(self, param)
            if not _finite(value) or value < 0:
                raise ParameterInvalid(f"{param} must be a number >= 0, not {value!r}", param=param)
            object.__setattr__(self, param, float(value))
        segment = self.segment_sec
        if segment is not None:
            if not _finite(segment) or segment <= 0:
                raise ParameterInvalid(f"segment_sec must be a number > 0, not {segment!r}", param="segment_sec")
            if self.overlap_sec >= segment:
                raise ParameterInvalid("overlap_sec must be shorter than segment_sec", param="overlap_sec")
            object.__setattr__(self, "segment_sec", float(segment))
        end = self.end_offset_sec
        if end is not None:
            if not _finite(end) or end <= self.start_offset_sec:
                raise ParameterInvalid(f"end_offset_sec must be a number > start_offset_sec "
                                       f"({self.start_offset_sec!r}), not {end!r}", param="end_offset_sec")
            object.__setattr__(self, "end_offset_sec", float(end))

    @classmethod
    def of(cls, **kwargs: Any) -> Options:
        """Options from keywords, with an unknown keyword refused by name (not a ``TypeError``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ParameterInvalid(f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(known))}",
                                   param=unknown[0])
        return cls(**kwargs)

    def check_for(self, modality: Modality) -> None:
        """Refuse the options that do not apply to ``modality`` (a video's clips, audio's overlap)."""
        if modality is Modality.VIDEO and self.overlap_sec:
            raise ParameterInvalid("video clips do not overlap: omit overlap_sec", param="overlap_sec")
        if modality is not Modality.VIDEO and (self.end_offset_sec is not None or self.embedding_option != "visual"):
            param = "end_offset_sec" if self.end_offset_sec is not None else "embedding_option"
            raise ParameterInvalid(f"{param} applies to videos (videos=...), not to {modality}s", param=param)


@dataclass(frozen=True)
class Prepared:
    """One encoder row ready for batching: per-row arrays, a length to sort by, and what it was.

    A preparer returns one ``Prepared`` per item, or a list (or an iterator) of them for a segmented item
    (each with its ``segment``); the pipeline then returns segments x D data plus a pooled vector for the
    item, unless the preparer's ``finish`` makes the item's embedding from its rows.
    """

    features: Mapping[str, np.ndarray]
    length: int
    info: InputInfo
    segment: Segment | None = None
    item: Any = None
    """What the preparer's ``finish`` needs to make the item's embedding from its rows' outputs (a
    region's tiling plan and raster, a video's clips), shared by the item's rows; None for preparers
    without ``finish``."""


PrepareResult = Prepared | list[Prepared] | Iterator[Prepared] | OmniEmbedError
"""Per item: its one row, its rows, an iterator making its rows lazily (an error raised while iterating
fails that item only), or its error (with the item's index)."""


class Preparer(Protocol):
    """Turns raw items of one modality into ``Prepared`` rows and batches of rows into encoder feeds.

    Optional, looked up with ``getattr``:

    - ``streaming``: prepare ahead on a background thread while the encoder runs (the next chunk of
      items, or the next rows of lazily made items);
    - ``counts_tokens``: lengths are tokens, so batches are cut by padded tokens;
    - ``max_batch_rows``: rows per encoder call at most (e.g. 1 where rows differ in shape);
    - ``finish(rows, outputs, meta)``: makes an item's ``Embedding`` once its last row is encoded, from
      its rows (in order, their features already dropped) and their raw encoder outputs (by name where
      the graph has several); the pipeline neither pools nor normalises them (a region's tiles stitched
      into a grid);
    - ``pooled_rows``: with ``finish``, the outputs are each row's embedding instead (pooled and
      normalised as the call says: the model's own embedding of that row), and ``meta.normalized`` says
      whether they are unit length (a video's frames, averaged per clip).
    """

    def contract(self, options: Options) -> str:
        """Human-readable preprocessing contract, recorded in each embedding's meta."""
        ...

    def prepare(self, items: Sequence[Any], options: Options) -> list[PrepareResult]: ...

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]: ...


@dataclass
class LoadedModel:
    """A model ready to run: its spec, weights version, and per modality a preparer and an encoder."""

    spec: ModelSpec
    version: str
    preparers: dict[Modality, Preparer]
    encoders: dict[Modality, Encoder]
    runtime: str
    device: str
    precision: str = "fp32"
    raster: Any = None
    """For geo models: what the model takes from a region, an ``omniembed.inputs.raster.RasterInput`` (its
    encoder is ``encoders[Modality.GEO]``); typed loosely so that this module imports no input module."""
