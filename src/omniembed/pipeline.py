"""How every model is run: prepare -> batch -> encode -> pool -> normalise.

Model families only say what a model is (a ``LoadedModel``: per modality, a ``Preparer`` and an
``Encoder``). This module does the rest once for all of them: items are prepared (decoded, validated,
tokenised), sorted by length so batches carry little padding, encoded in batches, pooled, normalised,
and returned in input order. Errors about one item name its index; with ``errors="return"`` they are
returned in that item's place and the other items are still embedded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality, Segment, Timings
from omniembed.errors import OmniEmbedError, ParameterInvalid
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


PrepareResult = Prepared | list[Prepared] | OmniEmbedError


class Preparer(Protocol):
    """Turns raw items of one modality into ``Prepared`` items and batches into encoder feeds."""

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
    extras: dict[str, Any] = field(default_factory=dict)


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
) -> list[Embedding | OmniEmbedError]:
    """Embed ``items`` of one modality with ``model``; results in input order."""
    preparer = model.preparers.get(modality)
    encoder = model.encoders.get(modality)
    if preparer is None or encoder is None:
        takes = ", ".join(str(m) for m in model.preparers)
        raise ParameterInvalid(
            f"model {model.spec.name!r} does not embed {modality} (it takes: {takes})", param=str(modality)
        )
    post = (_check_pooling(model, options), model.spec.normalize if options.normalize is None else options.normalize)
    if not getattr(preparer, "streaming", False) or len(items) <= options.batch_size:
        started = time.perf_counter()
        prepared = preparer.prepare(items, options)
        prepare_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        return _encode(model, modality, preparer, encoder, prepared, prepare_ms, options, post, errors, progress)
    return _stream(model, modality, preparer, encoder, items, options, post, errors, progress)


def _globalize(result: PrepareResult, offset: int) -> PrepareResult:
    """An error from a chunk's preparation, renumbered to its index in the whole call."""
    if isinstance(result, OmniEmbedError) and result.index is not None and offset:
        message = result.message.removeprefix(f"item {result.index}: ")
        return type(result)(message, param=result.param).at_index(result.index + offset)
    return result


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

    def prepare(chunk: Sequence[Any]) -> tuple[list[PrepareResult], float]:
        started = time.perf_counter()
        prepared = preparer.prepare(chunk, options)
        return prepared, (time.perf_counter() - started) * 1000 / max(1, len(chunk))

    results: list[Embedding | OmniEmbedError] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-prepare") as pool:
        pending = pool.submit(prepare, chunks[0][1])
        for k, (offset, _chunk) in enumerate(chunks):
            prepared, prepare_ms = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(prepare, chunks[k + 1][1])
            prepared = [_globalize(p, offset) for p in prepared]
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
    vectors: dict[int, np.ndarray] = {}
    timings: dict[int, Timings] = {}
    remaining: dict[int, int] = {}
    for i, _ in rows:
        remaining[i] = remaining.get(i, 0) + 1
    order = sorted(range(len(rows)), key=lambda r: rows[r][1].length)
    tokens = None
    if getattr(preparer, "counts_tokens", False):
        tokens = getattr(preparer, "max_batch_tokens", None) or getattr(encoder, "batch_tokens", BATCH_TOKENS)
    for chunk in _batches(order, [rows[r][1].length for r in order], options.batch_size, tokens):
        feeds = preparer.collate([rows[r][1] for r in chunk])
        t0 = time.perf_counter()
        output = encoder(feeds)
        t1 = time.perf_counter()
        if output.ndim == 2 and options.pooling is not None and options.pooling != model.spec.pooling:
            raise ParameterInvalid(
                f"model {model.spec.name!r} outputs pooled vectors ({model.spec.pooling}); pooling cannot be "
                f"changed to {options.pooling!r}. Omit pooling.",
                param="pooling",
            )
        pooled = pool(output, feeds.get("attention_mask"), pooling)
        if do_normalize:
            pooled = normalize(pooled)
        pooled = np.ascontiguousarray(pooled, dtype=np.float32)
        batch_timing = Timings(prepare_ms, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000, len(chunk))
        done = 0
        for k, r in enumerate(chunk):
            vectors[r] = pooled[k]
            i = rows[r][0]
            timings[i] = batch_timing
            remaining[i] -= 1
            done += remaining[i] == 0
        if progress and done:
            progress(done)

    by_item: dict[int, list[int]] = {}
    for r, (i, _) in enumerate(rows):
        by_item.setdefault(i, []).append(r)
    for i, row_ids in by_item.items():
        pieces = [rows[r][1] for r in row_ids]
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
