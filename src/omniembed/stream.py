"""A call's items as one stream of encoder rows, cut into pieces for the pipeline.

Items are prepared in chunks (all at once for a preparer that does not stream; ``2 x batch_size`` at a
time for one that does) by ``prepare_isolated``: an unexpected exception fails only the item that caused
it. An item prepared as an iterator (a video's frames) makes its rows as they are read; an error raised
while reading fails that item only. The rows of every item flow, in item order, into ``Piece``s: one per
chunk of items prepared whole, and one per encoder batch of rows made lazily, so that the pipeline cuts
encoder batches across items and inside a long one. For a streaming preparer the next piece is made on
a background thread while the current one is encoded: at most one piece ahead, however long the items.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from omniembed.contract import DEFAULT_BATCH_SIZE, Options, Prepared, Preparer, PrepareResult
from omniembed.errors import InternalError, OmniEmbedError

__all__ = ["Piece", "pieces", "prepare_isolated"]

log = logging.getLogger(__name__)


@dataclass
class Piece:
    """What the stream made since the previous piece, in item order."""

    rows: list[tuple[int, Prepared]] = field(default_factory=list)
    """(item index, row); each item's rows in their order."""
    ended: list[tuple[int, bool]] = field(default_factory=list)
    """Items whose rows are now all made, each with whether it is segmented (rows + a pooled vector)."""
    failed: list[OmniEmbedError] = field(default_factory=list)
    """Items that failed, each error carrying the item's index."""
    prepare_ms: dict[int, float] = field(default_factory=dict)
    """Per item, the time spent preparing its rows for this piece."""
    last: bool = False
    """Nothing follows this piece."""


def prepare_isolated(
    preparer: Preparer, items: Sequence[Any], options: Options, offset: int = 0
) -> list[PrepareResult]:
    """``preparer.prepare(items)``, but an unexpected exception fails only the item that caused it: the list
    is prepared again in halves until the culprit is alone. Errors carry indices counted from ``offset``."""
    try:
        prepared = preparer.prepare(items, options)
        if len(prepared) != len(items):
            raise RuntimeError(f"the preparer returned {len(prepared)} results for {len(items)} items")
    except OmniEmbedError as exc:
        if exc.index is None:
            raise  # about the whole call (an option, the model): not one item's problem
        if len(items) == 1:
            return [exc.at_index(offset)]
        return _split_prepare(preparer, items, options, offset)
    except Exception as exc:  # one item's defect must not fail the others
        if len(items) == 1:
            return [InternalError.from_exception(exc, "preparing an input", logger=log, index=offset)]
        return _split_prepare(preparer, items, options, offset)
    return [p.shifted(offset) if isinstance(p, OmniEmbedError) else p for p in prepared]


def _split_prepare(preparer: Preparer, items: Sequence[Any], options: Options, offset: int) -> list[PrepareResult]:
    half = len(items) // 2
    return prepare_isolated(preparer, items[:half], options, offset) + prepare_isolated(
        preparer, items[half:], options, offset + half
    )


def _lazy(i: int, made: Iterable[Prepared], piece: Piece, size: int) -> Generator[Piece, None, Piece]:
    """Read item ``i``'s rows into ``piece``, handing on every piece that reaches ``size`` rows; returns the
    piece being filled when the item ends or fails."""
    rows = iter(made)
    try:
        while True:
            started = time.perf_counter()
            try:
                row = next(rows, None)
            except OmniEmbedError as exc:
                piece.failed.append(exc.at_index(i))
                return piece
            except Exception as exc:  # a defect in making one item's rows fails that item only
                piece.failed.append(InternalError.from_exception(exc, "preparing an input", logger=log, index=i))
                return piece
            piece.prepare_ms[i] = piece.prepare_ms.get(i, 0.0) + (time.perf_counter() - started) * 1000
            if row is None:
                piece.ended.append((i, True))
                return piece
            piece.rows.append((i, row))
            if len(piece.rows) >= size:
                yield piece
                piece = Piece()
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # a generator left early (the call stopped): release what it holds now
            close()


def _made(
    preparer: Preparer, items: Sequence[Any], options: Options, chunk: int, size: int
) -> Generator[Piece, None, None]:
    """The pieces in order: ``chunk`` items prepared at a time; an item's lazy rows read ``size`` at a time."""
    for start in range(0, max(1, len(items)), chunk):
        part = items[start : start + chunk]
        started = time.perf_counter()
        prepared = prepare_isolated(preparer, part, options, start) if part else []
        share = (time.perf_counter() - started) * 1000 / max(1, len(part))
        piece = Piece()
        for i, result in enumerate(prepared, start):
            piece.prepare_ms[i] = share
            if isinstance(result, OmniEmbedError):
                piece.failed.append(result)
            elif isinstance(result, Prepared):
                piece.rows.append((i, result))
                piece.ended.append((i, False))
            elif isinstance(result, list):
                piece.rows.extend((i, row) for row in result)
                piece.ended.append((i, True))
            else:
                piece = yield from _lazy(i, result, piece, size)
        piece.last = start + chunk >= len(items)
        yield piece


def pieces(
    preparer: Preparer, items: Sequence[Any], options: Options, batch_rows: int
) -> Generator[Piece, None, None]:
    """The stream of ``items``' rows (see the module docstring); ``batch_rows`` is the rows of one encoder
    call. The first piece is made on the calling thread; after it, a streaming preparer makes the next piece
    on a background thread while the caller encodes the current one. Closing the iterator (as the caller
    does when it stops early) waits for the piece in the making and closes the items' row iterators."""
    streaming = bool(getattr(preparer, "streaming", False))
    chunk = 2 * (options.batch_size or DEFAULT_BATCH_SIZE) if streaming else max(1, len(items))
    made = _made(preparer, items, options, chunk, batch_rows)
    try:
        piece = next(made)
        if piece.last or not streaming:
            yield piece
            yield from made  # nothing follows the last piece
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-prepare") as ahead:
            while True:
                following = None if piece.last else ahead.submit(next, made)  # made while `piece` is encoded
                yield piece
                if following is None:
                    return
                piece = following.result()
    finally:
        made.close()
