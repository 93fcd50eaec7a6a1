"""Dynamic micro-batching: concurrent requests for one model share encoder calls.

Each (model, modality, options) has a bounded asyncio queue and one worker. The worker takes the first
waiting item, then whatever else is queued, waiting at most ``max_batch_wait_ms`` for more, up to four
batch sizes (the pipeline sorts them by length and cuts encoder batches by rows and padded tokens), and
runs them on the single inference thread (one thread: the encoder already uses every core, so parallel
batches would only contend). While a batch runs, new requests queue up and form the next one, so 64
concurrent clients cost about what one batched call costs. A full queue answers ``too_many_requests`` at
once instead of piling up memory; a request larger than a queue can ever hold answers ``input_too_large``
(413, with the limit), since retrying it could never succeed. A queue idle for ``queue_idle_sec`` is
removed with its worker, so option values that clients vary (offsets, truncation) do not pile up queues.
Long media (a TwelveLabs video task) runs on a second thread, ``run_media``, so it never holds the queues up.

Requests from different clients share encoder calls, never errors: the pipeline isolates a bad item, and
each item's error is given back with its index in its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from omniembed.api import Engine
from omniembed.contract import Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import InputTooLarge, InternalError, OmniEmbedError, ParameterInvalid
from omniembed.service.errors import RequestTimeout, TooManyRequests
from omniembed.service.metrics import Metrics

__all__ = ["Batcher"]

GATHER_BATCHES = 4
log = logging.getLogger(__name__)


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future[Embedding | OmniEmbedError]
    position: int
    """The item's index in its own request (an error is given back with this index)."""


class _ModelQueue:
    def __init__(self, batcher: Batcher, model: str, modality: Modality, options: Options) -> None:
        self.key = (model, modality, options)
        self.batcher = batcher
        self.model = model
        self.modality = modality
        self.options = options
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=batcher.engine.settings.queue_size)
        # Gather several encoder batches' worth: the pipeline sorts them by length and cuts them where
        # padding is least, so a larger mix pads less.
        self.gather = max(batcher.engine.settings.batch_size * GATHER_BATCHES, 64)
        self.task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher:{model}:{modality}")

    def room(self) -> int:
        return self.queue.maxsize - self.queue.qsize()

    async def _next_batch(self) -> list[_Pending] | None:
        """The next batch to encode; None when the queue stayed idle for ``queue_idle_sec``."""
        settings = self.batcher.engine.settings
        loop = asyncio.get_running_loop()
        try:
            batch = [await asyncio.wait_for(self.queue.get(), settings.queue_idle_sec)]
        except TimeoutError:
            return None
        deadline = loop.time() + settings.max_batch_wait_ms / 1000
        while len(batch) < self.gather:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # skip requests that timed out meanwhile

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        metrics = self.batcher.metrics
        while True:
            batch = await self._next_batch()
            if batch is None:
                if self.queue.empty():  # no await between this check and the removal: nothing can slip in
                    self.batcher.forget(self)
                    return
                continue
            metrics.queue_depth.labels(self.model).set(self.queue.qsize())
            if not batch:
                continue
            call = functools.partial(self.batcher.engine.run, self.model, self.modality, [p.item for p in batch],
                                     self.options, errors="return")
            results: list[Embedding | OmniEmbedError]
            try:
                results = await loop.run_in_executor(self.batcher.executor, call)
            except OmniEmbedError as exc:  # a whole-call problem (model, weights, options): every item gets it
                results = [exc] * len(batch)
            except Exception as exc:  # a defect: logged with its traceback; the worker lives on
                results = [InternalError.from_exception(exc, f"embedding with {self.model}", logger=log)] * len(batch)
            metrics.batch_size.labels(self.model).observe(len(batch))
            metrics.items.labels(self.model, str(self.modality)).inc(
                sum(isinstance(r, Embedding) for r in results)
            )
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, OmniEmbedError) and result.index is not None:
                    result = result.at_index(pending.position)  # the merged batch's index -> the caller's own
                if not pending.future.done():
                    pending.future.set_result(result)


class Batcher:
    """Queues per model; ``embed`` returns one result (Embedding or error) per item, in order."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-inference")
        # long media (a video or audio task runs for minutes): its own thread, so the queues keep answering
        self.media_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-media")
        self._queues: dict[tuple[Any, ...], _ModelQueue] = {}

    def _queue(self, model: str, modality: Modality, options: Options) -> _ModelQueue:
        spec = self.engine.served_spec(model, modality)  # in memory only: no disk or hub lookups on the event loop
        if modality not in spec.modalities:
            takes = ", ".join(map(str, spec.modalities))
            raise ParameterInvalid(f"model {spec.name!r} does not embed {modality} (it takes: {takes})", param="model")
        key = (spec.name, modality, options)
        if key not in self._queues:
            self._queues[key] = _ModelQueue(self, spec.name, modality, options)
        return self._queues[key]

    async def embed(
        self, model: str, modality: Modality, items: Sequence[Any], timeout: float | None = None, **options: Any
    ) -> list[Embedding | OmniEmbedError]:
        """Embed ``items`` with the others queued for the same model, modality and options (``Options``
        keywords; None means the default; local paths are never read for a network client)."""
        given = Options.of(**{k: v for k, v in options.items() if v is not None}, allow_paths=False)
        given.check_for(modality)
        queue = self._queue(model, modality, given)
        if len(items) > queue.queue.maxsize:
            raise InputTooLarge(
                f"{len(items)} items in one request; a model queue holds at most {queue.queue.maxsize} "
                "(OMNIEMBED_QUEUE_SIZE). Send fewer items per request.",
                param="input",
            )
        if queue.room() < len(items):
            raise TooManyRequests(
                f"the queue of model {queue.model!r} is full ({queue.queue.maxsize} waiting items); retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = [_Pending(item, loop.create_future(), k) for k, item in enumerate(items)]
        for p in pending:
            queue.queue.put_nowait(p)
        self.metrics.queue_depth.labels(queue.model).set(queue.queue.qsize())
        limit = timeout if timeout is not None else self.engine.settings.request_timeout_sec
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(p.future for p in pending)), limit))
        except TimeoutError:
            raise RequestTimeout(f"embedding did not finish within {limit:g} s; retry or send fewer items") from None

    def forget(self, queue: _ModelQueue) -> None:
        """Remove an idle queue (its worker is ending)."""
        if self._queues.get(queue.key) is queue:
            del self._queues[queue.key]

    @property
    def queues(self) -> int:
        """How many per-(model, modality, options) queues exist now."""
        return len(self._queues)

    def run_sync(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run blocking work (e.g. a model load) on the inference thread."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def run_media(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run one long media embedding (a TwelveLabs video or audio task) on the media thread: one at a time,
        beside the inference thread, so requests queued for the models are not held up behind it."""
        return asyncio.get_running_loop().run_in_executor(self.media_executor, fn, *args)

    async def close(self) -> None:
        for q in self._queues.values():
            q.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await q.task
        self._queues.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.media_executor.shutdown(wait=True, cancel_futures=True)
