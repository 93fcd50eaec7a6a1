"""How every model is run: prepare -> batch -> encode -> pool -> normalise (or finish).

Model families only say what a model is (a ``LoadedModel``: per modality, a ``Preparer`` and an
``Encoder``; see ``omniembed.contract``). This module does the rest once for all of them. The items' rows
come from ``omniembed.stream``: prepared in chunks, or made one by one as a long video's frames are, and
for a streaming preparer made ahead on a background thread while the encoder runs. Rows are sorted by
length so batches carry little padding and encoded in batches that cross items (and cut through a long
one), then pooled and normalised. Once an item's last row is encoded the item is assembled (rows plus a
pooled vector for a segmented item) or handed to its preparer's ``finish`` (a region's tiles stitched
into a grid, a video's frames averaged per clip). Results come back in input order. Errors about one item
carry its index (a field, never message text); with ``errors="return"`` they are returned in that item's
place and the other items are still embedded.

One bad item never fails the others. A preparer that raises an unexpected exception for a list is run
again on halves of it until the culprit is alone; an item whose rows fail while they are being made fails
alone; an encoder call that fails is retried on halves of its rows likewise. The culprit gets a coded
error (``InternalError`` with a logged incident id when nothing more specific is known); every other item
is embedded as usual. No result holds a non-finite vector: every item's vectors are checked as it is
finished, and one with NaN or infinity becomes that item's ``EmbeddingNotFinite`` (a grid's cells may be
NaN where a region has no data; its pooled vector is checked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from omniembed.contract import DEFAULT_BATCH_SIZE, POOLINGS, LoadedModel, Options, Prepared, Preparer, normalize
from omniembed.embedding import Embedding, EmbeddingMeta, Modality, Timings
from omniembed.errors import EmbeddingNotFinite, InternalError, OmniEmbedError, ParameterInvalid
from omniembed.runtime import Encoder
from omniembed.stream import Piece, pieces

__all__ = ["POOLINGS", "normalize", "pool", "run"]

BATCH_TOKENS = 512
"""Padded tokens per encoder call for preparers that count tokens, unless the preparer (the settings) or
the encoder (``batch_tokens``: its own measured best) says otherwise."""
CALL_TOKENS = 32
"""What one more encoder call costs, in tokens of work: minilm on the benchmark machine takes ~1-3 ms more
per call at batch 1 than per text at batch 32, i.e. 7-44 tokens' worth (ONNX fp32 / compiled bf16)."""
ErrorMode = Literal["raise", "return"]
Result = Embedding | OmniEmbedError
_NONE: MappingProxyType[str, np.ndarray] = MappingProxyType({})
"""The features of a row once encoded."""
log = logging.getLogger(__name__)


def pool(output: np.ndarray, mask: np.ndarray | None, mode: str) -> np.ndarray:
    """Pool token/patch outputs ``(B, S, D)`` to ``(B, D)``; ``mask`` (B, S) marks real positions."""
    if output.ndim == 2:
        return output
    if mode == "cls":
        return output[:, 0]
    if mode == "mean_patch":  # ViT-style: mean over patch tokens, leaving out the class token
        return output[:, 1:].mean(axis=1)
    weights = np.ones(output.shape[:2], np.float32) if mask is None else mask.astype(np.float32)
    if mode == "mean":
        summed = np.einsum("bsd,bs->bd", output, weights)
        return summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    if mode == "max":
        masked = np.where(weights[..., None] > 0, output, np.float32(-1e9))
        return masked.max(axis=1)
    raise ParameterInvalid(f"pooling must be one of {', '.join(POOLINGS)}, not {mode!r}", param="pooling")




def run(
    model: LoadedModel,
    modality: Modality,
    items: Sequence[Any],
    options: Options,
    *,
    errors: ErrorMode = "raise",
    progress: Callable[[int], None] | None = None,
    preparer: Preparer | None = None,
    encoder: Encoder | None = None,
) -> list[Result]:
    """Embed ``items`` of one modality with ``model``; results in input order. ``preparer``/``encoder``
    replace the model's own for this call (a geo region's preparer carries the call's backend and specs; a
    video's preparer puts the model's image or audio preparer to work). ``progress`` is called with the
    number of items done (embedded or failed) as they finish."""
    preparer = preparer or model.preparers.get(modality)
    encoder = encoder or model.encoders.get(modality)
    if preparer is None or encoder is None:
        takes = ", ".join(str(m) for m in model.preparers)
        raise ParameterInvalid(
            f"model {model.spec.name!r} does not embed {modality} (it takes: {takes})", param=str(modality)
        )
    if options.batch_size is None:
        options = replace(options, batch_size=DEFAULT_BATCH_SIZE)
    call = _Call(model, modality, preparer, encoder, options, errors, progress, len(items))
    stream = pieces(preparer, items, options, call.per_call)
    try:
        for piece in stream:
            call.take(piece)
    finally:
        stream.close()  # stopped early (an error raised): the rows made ahead are dropped, their sources closed
    return call.results()


def _batches(order: list[int], lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Cut length-sorted rows into encoder batches of at most ``batch_size`` rows.

    Without ``max_tokens`` (images, audio: equal-sized rows) the cut is every ``batch_size`` rows. With it
    (text), a batch holds at most ``max_tokens`` padded positions (rows x its longest row; a longer row
    goes alone), and the cuts are chosen to minimise the padded positions computed plus ``CALL_TOKENS``
    per encoder call (dynamic programming over the sorted lengths, O(rows x batch_size)). That matters for
    small random mixes such as the server's: 64 random corpus texts cut greedily at 1024 tokens compute
    1.31x their real tokens; cut this way, ~1.1x. Small token batches also keep activations in cache:
    minilm at batch 128 ran ~35% slower than at 8-16 when every batch was the batch size.
    """
    if not max_tokens:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    n = len(order)
    cost = [0.0] + [float("inf")] * n  # cost[j]: cheapest way to encode the first j rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[j - 1]  # sorted: the batch's last row is its longest
        for i in range(j - 1, max(j - batch_size, 0) - 1, -1):
            rows = j - i
            if rows > 1 and rows * longest > max_tokens:
                break  # more rows only pad more
            total = cost[i] + rows * longest + CALL_TOKENS
            if total < cost[j]:
                cost[j], cut[j] = total, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


EncodedPart = tuple[list[int], Any, np.ndarray | None, BaseException | None, float]
"""Rows (positions in the batch), the encoder output for them, their attention mask (text), the failure
instead of an output, and the encode time (ms)."""


def _encode_isolated(
    preparer: Preparer, encoder: Encoder, rows: list[Prepared], chunk: list[int], named: bool = False
) -> list[EncodedPart]:
    """Encode ``chunk`` in one call; if that call fails, encode each half on its own (recursively), so a row
    that breaks the encoder fails alone and every other row is still encoded. A failing row is returned
    with its exception. An ``OmniEmbedError`` from the encoder (runtime, device) concerns the whole call."""
    if not chunk:
        return []
    started = time.perf_counter()
    try:
        feeds = preparer.collate([rows[r] for r in chunk])
        output = encoder.outputs(feeds) if named else encoder(feeds)  # type: ignore[attr-defined]
    except OmniEmbedError:
        raise
    except Exception as exc:  # isolate the culprit row
        if len(chunk) == 1:
            return [(chunk, None, None, exc, 0.0)]
        half = len(chunk) // 2
        return _encode_isolated(preparer, encoder, rows, chunk[:half], named) + _encode_isolated(
            preparer, encoder, rows, chunk[half:], named
        )
    return [(chunk, output, feeds.get("attention_mask"), None, (time.perf_counter() - started) * 1000)]


@dataclass
class _Item:
    """One item between its first row and its result."""

    done: list[tuple[Prepared, Any] | None] = field(default_factory=list)
    """Per row, in the item's order: the row (its features dropped) and its output, once encoded."""
    waiting: int = 0
    """Rows made and not yet encoded."""
    ended: bool = False
    """All of the item's rows are made."""
    segmented: bool = False
    prepare_ms: float = 0.0
    encode_ms: float = 0.0
    """The encoder calls its rows ran in, their time summed (one call for most items) ..."""
    post_ms: float = 0.0
    batch_size: int = 1
    """... and the last one's rows."""


def _finite(result: Embedding) -> bool:
    """Whether every vector of ``result`` is finite: a vector or segments x D, and the pooled vector. A grid
    (3-d and more, or a labelled array) may be NaN where there is no data; its pooled vector is checked."""
    vectors = [result.pooled] if result.pooled is not None else []
    if isinstance(result.data, np.ndarray) and result.data.ndim <= 2:
        vectors.append(result.data)
    return all(bool(np.isfinite(v).all()) for v in vectors)


class _Call:
    """One ``run``: takes the stream's pieces, encodes full batches as rows arrive, and finishes each item
    once its last row is encoded."""

    def __init__(self, model: LoadedModel, modality: Modality, preparer: Preparer, encoder: Encoder,
                 options: Options, errors: ErrorMode, progress: Callable[[int], None] | None, n: int) -> None:
        self.model, self.modality, self.preparer, self.encoder = model, modality, preparer, encoder
        self.options, self.errors, self.progress = options, errors, progress
        self.pooling = options.pooling or model.spec.pooling  # Options checked a given one when made
        self.do_normalize = model.spec.normalize if options.normalize is None else options.normalize
        self.finish = getattr(preparer, "finish", None)
        # a preparer that finishes items itself gets the raw outputs (every output by name, for a graph that
        # has several), unless it asks for the rows' embeddings
        self.pooled_rows = self.finish is None or bool(getattr(preparer, "pooled_rows", False))
        self.named = not self.pooled_rows and len(getattr(encoder, "output_names", ())) > 1
        self.tokens: int | None = None
        if getattr(preparer, "counts_tokens", False):
            self.tokens = getattr(preparer, "max_batch_tokens", None) or getattr(encoder, "batch_tokens", BATCH_TOKENS)
        size = options.batch_size or DEFAULT_BATCH_SIZE
        self.per_call = min(size, getattr(preparer, "max_batch_rows", None) or size)
        self.contract = preparer.contract(options)
        self.out: list[Result | None] = [None] * n
        self.live: dict[int, _Item] = {}
        self.pending: list[tuple[int, int, Prepared]] = []  # (item, the row's place in the item, row)
        self.settled = 0  # items done since progress was last told

    def take(self, piece: Piece) -> None:
        for error in piece.failed:
            assert error.index is not None
            self._fail(error.index, error)
        for i, row in piece.rows:
            if self.out[i] is None:
                item = self.live.setdefault(i, _Item())
                self.pending.append((i, len(item.done), row))
                item.done.append(None)
                item.waiting += 1
        for i, ms in piece.prepare_ms.items():
            if self.out[i] is None:
                self.live.setdefault(i, _Item()).prepare_ms += ms
        for i, segmented in piece.ended:
            if self.out[i] is None:
                item = self.live.setdefault(i, _Item())
                item.ended, item.segmented = True, segmented
        self._encode_pending(everything=piece.last or self.tokens is not None)
        for i in [i for i, item in self.live.items() if item.ended and item.waiting == 0]:
            self._finish(i, self.live.pop(i))
        if self.progress and self.settled:
            self.progress(self.settled)
        self.settled = 0

    def results(self) -> list[Result]:
        missing = [i for i, r in enumerate(self.out) if r is None]
        assert not missing, f"the pipeline lost items {missing}"
        return [r for r in self.out if r is not None]

    def _fail(self, i: int, error: OmniEmbedError) -> None:
        if self.errors == "raise":
            raise error
        self.out[i] = error
        self.live.pop(i, None)
        self.settled += 1

    def _encode_pending(self, everything: bool) -> None:
        """Encode the pending rows in full batches, sorted by length; the rest too if ``everything``
        (the stream's end, or token batches), else it waits for more rows."""
        rows = [p for p in self.pending if self.out[p[0]] is None]  # a failed item's rows are dropped
        self.pending = []
        order = sorted(range(len(rows)), key=lambda r: rows[r][2].length)
        batches = _batches(order, [rows[r][2].length for r in order], self.per_call, self.tokens)
        if batches and not everything and len(batches[-1]) < self.per_call:
            self.pending = [rows[r] for r in batches.pop()]
        for batch in batches:
            self._encode([rows[r] for r in batch])

    def _encode(self, batch: list[tuple[int, int, Prepared]]) -> None:
        batch = [b for b in batch if self.out[b[0]] is None]  # an item's other rows fail with it
        for chunk, output, mask, failure, encode_ms in _encode_isolated(
            self.preparer, self.encoder, [row for _, _, row in batch], list(range(len(batch))), self.named
        ):
            if failure is not None:
                i = batch[chunk[0]][0]
                if isinstance(failure, OmniEmbedError):
                    self._fail(i, failure.at_index(i))
                else:
                    self._fail(i, InternalError.from_exception(failure, "encoding an input", logger=log, index=i))
                continue
            started = time.perf_counter()
            vectors = self._post(output, mask)
            post_ms = (time.perf_counter() - started) * 1000
            seen: set[int] = set()
            for k, r in enumerate(chunk):
                i, place, row = batch[r]
                item = self.live.get(i)
                if item is None:  # failed in an earlier part of this batch
                    continue
                vector = {name: v[k] for name, v in vectors.items()} if self.named else vectors[k]
                # the row without its features: a long item's inputs are let go as they are encoded
                item.done[place] = (Prepared(_NONE, row.length, row.info, row.segment, row.item), vector)
                item.waiting -= 1
                if i not in seen:
                    seen.add(i)
                    item.encode_ms += encode_ms
                    item.post_ms += post_ms
                    item.batch_size = len(chunk)

    def _post(self, output: Any, mask: np.ndarray | None) -> Any:
        """A batch's outputs as the rows' embeddings (pooled, normalised as the call says), or raw."""
        if not self.pooled_rows:
            return output if self.named else np.asarray(output, dtype=np.float32)
        options, spec = self.options, self.model.spec
        if output.ndim == 2 and options.pooling is not None and options.pooling != spec.pooling:
            raise ParameterInvalid(
                f"model {spec.name!r} outputs pooled vectors ({spec.pooling}); pooling cannot be changed to "
                f"{options.pooling!r}. Omit pooling.",
                param="pooling",
            )
        pooled = pool(output, mask, self.pooling)
        if self.do_normalize:
            pooled = normalize(pooled)
        return np.ascontiguousarray(pooled, dtype=np.float32)

    def _finish(self, i: int, item: _Item) -> None:
        """The item's result from its encoded rows: by its preparer's ``finish``, or rows + a pooled vector."""
        try:
            if not item.done:
                raise RuntimeError("the preparer made no rows for the item")
            rows = [d[0] for d in item.done if d is not None]
            outputs = [d[1] for d in item.done if d is not None]
            model = self.model
            segmented = item.segmented and self.finish is None
            meta = EmbeddingMeta(
                model=model.spec.name, model_version=model.version, modality=self.modality,
                dim=model.spec.dim if not self.pooled_rows else int(np.shape(outputs[0])[-1]),
                pooling=self.pooling, normalized=self.pooled_rows and self.do_normalize,
                preprocessing=self.contract, input=rows[0].info, runtime=model.runtime, device=model.device,
                precision=model.precision, timings=Timings(item.prepare_ms, item.encode_ms, item.post_ms,
                                                           item.batch_size),
                segments=tuple(p.segment for p in rows if p.segment is not None) if segmented else (),
            )
            result: Result
            if self.finish is not None:
                result = self.finish(rows, outputs, meta)
            elif not segmented:
                result = Embedding(np.array(outputs[0]), meta)
            else:  # segments x D, and their mean as the item's vector, normalised as they are
                data = np.stack(outputs)
                whole = data.mean(axis=0)
                result = Embedding(data, meta, pooled=normalize(whole[None])[0] if meta.normalized else whole)
            if isinstance(result, Embedding) and not _finite(result):
                log.warning("model %s gave NaN or infinite values for item %d (%s input)", model.spec.name, i,
                            self.modality)
                raise EmbeddingNotFinite(
                    f"model {model.spec.name!r} gave NaN or infinite values for this input, so it has no "
                    "embedding; the input may hold values outside what the model handles (check it, or report "
                    "it with the input if it looks ordinary)",
                    model=model.spec.name,
                )
            self.out[i] = result
        except OmniEmbedError as exc:
            self._fail(i, exc.at_index(i))
            return
        except Exception as exc:  # a defect in finishing one item fails that item only
            self._fail(i, InternalError.from_exception(exc, "finishing an embedding", logger=log, index=i))
            return
        self.settled += 1

