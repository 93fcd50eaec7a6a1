"""How every model is run: prepare -> batch -> encode -> pool -> normalise.

Model families only say what a model is (a ``LoadedModel``: per modality, a ``Preparer`` and an
``Encoder``). This module does the rest once for all of them: items are prepared (decoded, validated,
tokenised), sorted by length so batches carry little padding, encoded in batches, pooled, normalised,
and returned in input order. Errors about one item carry its index (a field, never message text); with
``errors="return"`` they are returned in that item's place and the other items are still embedded.

One bad item never fails the others. A preparer that raises an unexpected exception for a list is run
again on halves of it until the culprit is alone; an encoder call that fails is retried on halves of its
rows likewise. The culprit gets a coded error (``InternalError`` with a logged incident id when nothing
more specific is known); every other item is embedded as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality, Segment, Timings
from omniembed.errors import InternalError, OmniEmbedError, ParameterInvalid
from omniembed.inputs.raster import RasterInput
from omniembed.registry import ModelSpec
from omniembed.runtime import Encoder

__all__ = ["POOLINGS", "LoadedModel", "Options", "Prepared", "Preparer", "normalize", "pool", "run"]

POOLINGS = ("mean", "cls", "max", "mean_patch")
BATCH_TOKENS = 512
"""Padded tokens per encoder call for preparers that count tokens, unless the preparer (the settings) or
the encoder (``batch_tokens``: its own measured best) says otherwise."""
CALL_TOKENS = 32
"""What one more encoder call costs, in tokens of work: minilm on the benchmark machine takes ~1-3 ms more
per call at batch 1 than per text at batch 32, i.e. 7-44 tokens' worth (ONNX fp32 / compiled bf16)."""
ErrorMode = Literal["raise", "return"]
log = logging.getLogger(__name__)


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
    """Segmented (audio) inputs: where to start, in seconds."""
    segment_sec: float | None = None
    """Segmented inputs: segment length in seconds (None: the model's default)."""
    overlap_sec: float = 0.0
    """Segmented inputs: overlap between consecutive segments, in seconds."""
    end_offset_sec: float | None = None
    """Video: where to stop, in seconds (None: the end)."""
    allow_paths: bool = True
    """Whether string inputs may name local files (the HTTP server turns this off)."""


@dataclass(frozen=True)
class Prepared:
    """One encoder row ready for batching: per-row arrays, a length to sort by, and what it was.

    A preparer returns one ``Prepared`` per item, or a list of them for a segmented item (each with
    its ``segment``); the pipeline then returns segments x D data plus a pooled vector for the item.
    """

    features: Mapping[str, np.ndarray]
    length: int
    info: InputInfo
    segment: Segment | None = None
    item: Any = None
    """What the preparer's ``finish`` needs to make the item's embedding from its rows' outputs (a
    region's tiling plan and raster), shared by the item's rows; None for preparers without ``finish``."""


PrepareResult = Prepared | list[Prepared] | OmniEmbedError


class Preparer(Protocol):
    """Turns raw items of one modality into ``Prepared`` items and batches into encoder feeds.

    Optional, looked up with ``getattr``: ``streaming`` (prepare the next chunk while one is encoded),
    ``counts_tokens`` (lengths are tokens: batches are cut by padded tokens), ``max_batch_rows`` (rows
    per encoder call at most, e.g. 1 where rows differ in shape), and ``finish(rows, outputs, meta)``,
    which makes an item's ``Embedding`` from its rows' raw encoder outputs (no pooling or normalising
    by the pipeline; a region's tiles stitched into a grid)."""

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
    raster: RasterInput | None = None
    """For geo models: what the model takes from a region (its encoder is ``encoders[Modality.GEO]``)."""


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


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _check_pooling(model: LoadedModel, options: Options) -> str:
    mode = options.pooling or model.spec.pooling
    if options.pooling is not None and options.pooling not in POOLINGS:
        raise ParameterInvalid(
            f"pooling must be one of {', '.join(POOLINGS)}, not {options.pooling!r}", param="pooling"
        )
    return mode


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
) -> list[Embedding | OmniEmbedError]:
    """Embed ``items`` of one modality with ``model``; results in input order. ``preparer``/``encoder``
    replace the model's own for this call (a geo region's preparer carries the call's backend and specs)."""
    preparer = preparer or model.preparers.get(modality)
    encoder = encoder or model.encoders.get(modality)
    if preparer is None or encoder is None:
        takes = ", ".join(str(m) for m in model.preparers)
        raise ParameterInvalid(
            f"model {model.spec.name!r} does not embed {modality} (it takes: {takes})", param=str(modality)
        )
    post = (_check_pooling(model, options), model.spec.normalize if options.normalize is None else options.normalize)
    if not getattr(preparer, "streaming", False) or len(items) <= options.batch_size:
        started = time.perf_counter()
        prepared = _prepare_isolated(preparer, items, options)
        prepare_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        return _encode(model, modality, preparer, encoder, prepared, prepare_ms, options, post, errors, progress)
    return _stream(model, modality, preparer, encoder, items, options, post, errors, progress)


def _prepare_isolated(
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
    return _prepare_isolated(preparer, items[:half], options, offset) + _prepare_isolated(
        preparer, items[half:], options, offset + half
    )


def _stream(
    model: LoadedModel,
    modality: Modality,
    preparer: Preparer,
    encoder: Encoder,
    items: Sequence[Any],
    options: Options,
    post: tuple[str, bool],
    errors: ErrorMode,
    progress: Callable[[int], None] | None,
) -> list[Embedding | OmniEmbedError]:
    """Prepare the next chunk (decode, resize: off the critical path) while the current one is encoded;
    only a few chunks of decoded inputs are in memory at once."""
    size = options.batch_size * 2
    chunks = [(start, items[start : start + size]) for start in range(0, len(items), size)]

    def prepare(offset: int, chunk: Sequence[Any]) -> tuple[list[PrepareResult], float]:
        started = time.perf_counter()
        prepared = _prepare_isolated(preparer, chunk, options, offset)
        return prepared, (time.perf_counter() - started) * 1000 / max(1, len(chunk))

    results: list[Embedding | OmniEmbedError] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-prepare") as pool:
        pending = pool.submit(prepare, *chunks[0])
        for k in range(len(chunks)):
            prepared, prepare_ms = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(prepare, *chunks[k + 1])
            results.extend(
                _encode(model, modality, preparer, encoder, prepared, prepare_ms, options, post, errors, progress)
            )
    return results


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
"""Rows (ids into the call's rows), the encoder output for them, their attention mask (text), the failure
instead of an output, and the encode time (ms)."""


def _encode_isolated(
    preparer: Preparer, encoder: Encoder, rows: list[tuple[int, Prepared]], chunk: list[int], named: bool = False
) -> list[EncodedPart]:
    """Encode ``chunk`` in one call; if that call fails, encode each half on its own (recursively), so a row
    that breaks the encoder fails alone and every other row is still encoded. A failing row is returned
    with its exception. An ``OmniEmbedError`` from the encoder (runtime, device) concerns the whole call."""
    if not chunk:
        return []
    started = time.perf_counter()
    try:
        feeds = preparer.collate([rows[r][1] for r in chunk])
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


def _encode(
    model: LoadedModel,
    modality: Modality,
    preparer: Preparer,
    encoder: Encoder,
    prepared: list[PrepareResult],
    prepare_ms: float,
    options: Options,
    post: tuple[str, bool],
    errors: ErrorMode,
    progress: Callable[[int], None] | None,
) -> list[Embedding | OmniEmbedError]:
    """Batch prepared items by length, encode, pool, normalise; results in the order of ``prepared``.
    ``post`` is the pooling mode and whether to normalise, resolved once by ``run``."""
    pooling, do_normalize = post
    results: list[Embedding | OmniEmbedError | None] = [None] * len(prepared)
    rows: list[tuple[int, Prepared]] = []  # (item index, encoder row)
    for i, item in enumerate(prepared):
        if isinstance(item, OmniEmbedError):
            if errors == "raise":
                raise item
            results[i] = item
        else:
            rows.extend((i, piece) for piece in (item if isinstance(item, list) else [item]))
    if progress and len(rows) < len(prepared):
        progress(sum(1 for r in results if r is not None))

    contract = preparer.contract(options)
    vectors: dict[int, Any] = {}  # a row's vector; with finish, its raw output (by name for several outputs)
    timings: dict[int, Timings] = {}
    remaining: dict[int, int] = {}
    for i, _ in rows:
        remaining[i] = remaining.get(i, 0) + 1
    order = sorted(range(len(rows)), key=lambda r: rows[r][1].length)
    tokens = None
    if getattr(preparer, "counts_tokens", False):
        tokens = getattr(preparer, "max_batch_tokens", None) or getattr(encoder, "batch_tokens", BATCH_TOKENS)
    finish = getattr(preparer, "finish", None)
    # A preparer that finishes items itself gets every output of a graph that has several, by name.
    named = finish is not None and len(getattr(encoder, "output_names", ())) > 1
    per_call = min(options.batch_size, getattr(preparer, "max_batch_rows", None) or options.batch_size)
    failed: set[int] = set()
    for batch in _batches(order, [rows[r][1].length for r in order], per_call, tokens):
        batch = [r for r in batch if rows[r][0] not in failed]  # an item's other rows fail with it
        for chunk, output, mask, failure, encode_ms in _encode_isolated(preparer, encoder, rows, batch, named):
            if failure is not None:
                i = rows[chunk[0]][0]
                error = (
                    failure.at_index(i)
                    if isinstance(failure, OmniEmbedError)
                    else InternalError.from_exception(failure, "encoding an input", logger=log, index=i)
                )
                if errors == "raise":
                    raise error
                results[i] = error
                failed.add(i)
                if progress and remaining[i] > 0:
                    progress(1)
                remaining[i] = 0
                continue
            t1 = time.perf_counter()
            if finish is not None:  # the preparer makes the embeddings from the raw outputs
                pooled: Any = output if named else np.asarray(output, dtype=np.float32)
            else:
                if output.ndim == 2 and options.pooling is not None and options.pooling != model.spec.pooling:
                    raise ParameterInvalid(
                        f"model {model.spec.name!r} outputs pooled vectors ({model.spec.pooling}); pooling cannot "
                        f"be changed to {options.pooling!r}. Omit pooling.",
                        param="pooling",
                    )
                pooled = pool(output, mask, pooling)
                if do_normalize:
                    pooled = normalize(pooled)
                pooled = np.ascontiguousarray(pooled, dtype=np.float32)
            batch_timing = Timings(prepare_ms, encode_ms, (time.perf_counter() - t1) * 1000, len(chunk))
            done = 0
            for k, r in enumerate(chunk):
                i = rows[r][0]
                if i in failed:
                    continue
                vectors[r] = {n: v[k] for n, v in pooled.items()} if named else pooled[k]
                timings[i] = batch_timing
                remaining[i] -= 1
                done += remaining[i] == 0
            if progress and done:
                progress(done)

    by_item: dict[int, list[int]] = {}
    for r, (i, _) in enumerate(rows):
        if i not in failed:
            by_item.setdefault(i, []).append(r)
    for i, row_ids in by_item.items():
        pieces = [rows[r][1] for r in row_ids]
        if finish is not None:
            outputs = [vectors[r] for r in row_ids]
            meta = EmbeddingMeta(
                model=model.spec.name, model_version=model.version, modality=modality, dim=model.spec.dim,
                pooling=pooling, normalized=False, preprocessing=contract, input=pieces[0].info,
                runtime=model.runtime, device=model.device, precision=model.precision, timings=timings[i],
            )
            try:
                results[i] = finish(pieces, outputs, meta)
            except OmniEmbedError as exc:
                if errors == "raise":
                    raise exc.at_index(i) from None
                results[i] = exc.at_index(i)
            except Exception as exc:  # a defect in finishing one item fails that item only
                error = InternalError.from_exception(exc, "finishing an embedding", logger=log, index=i)
                if errors == "raise":
                    raise error from exc
                results[i] = error
            continue
        data = np.stack([vectors[r] for r in row_ids])
        segmented = isinstance(prepared[i], list)
        whole = None
        if segmented:
            whole = data.mean(axis=0)
            whole = normalize(whole[None])[0] if do_normalize else whole
        meta = EmbeddingMeta(
            model=model.spec.name,
            model_version=model.version,
            modality=modality,
            dim=int(data.shape[1]),
            pooling=pooling,
            normalized=do_normalize,
            preprocessing=contract,
            input=pieces[0].info,
            runtime=model.runtime,
            device=model.device,
            precision=model.precision,
            timings=timings[i],
            segments=tuple(p.segment for p in pieces if p.segment is not None) if segmented else (),
        )
        results[i] = Embedding(data if segmented else data[0].copy(), meta, pooled=whole)
    return [r for r in results if r is not None]
