"""The preparer contract: what a model family hands the pipeline, and what a preparer gives it per item.

A model family says what a model is with a ``LoadedModel``: per modality, a ``Preparer`` (raw items to
encoder rows) and an ``Encoder``. ``Options`` are one call's options. A preparer turns each item into
``Prepared`` rows: one row, a list of rows (an audio clip's segments, a region's tiles), or an iterator
that makes the rows as the pipeline reads them (a video's frames), so a long item streams through the
encoder without being prepared whole. ``omniembed.pipeline.run`` does the rest for every modality.

This module sits below ``inputs/`` and ``pipeline.py``: it imports neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from omniembed.embedding import InputInfo, Modality, Segment
from omniembed.errors import OmniEmbedError
from omniembed.registry import ModelSpec
from omniembed.runtime.base import Encoder

__all__ = ["LoadedModel", "Options", "PrepareResult", "Prepared", "Preparer"]


@dataclass(frozen=True)
class Options:
    """Per-call options that reach the preparer and the post-processing."""

    truncate: str = "end"
    normalize: bool | None = None
    """None: as the model defines."""
    pooling: str | None = None
    """None: the model's default pooling."""
    batch_size: int = 32
    start_offset_sec: float = 0.0
    """Segmented inputs (audio, video): where to start, in seconds."""
    segment_sec: float | None = None
    """Segmented inputs: segment (video: clip) length in seconds (None: the model's default)."""
    overlap_sec: float = 0.0
    """Segmented inputs: overlap between consecutive segments, in seconds."""
    end_offset_sec: float | None = None
    """Video: where to stop, in seconds (None: the end)."""
    allow_paths: bool = True
    """Whether string inputs may name local files (the HTTP server turns this off)."""


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
