"""Dynamic micro-batching: concurrent requests for one model share encoder calls.

Each (model, modality, options) has a bounded asyncio queue and one worker. The worker takes the first
waiting item, then whatever else is queued, waiting at most ``max_batch_wait_ms`` for more, up to four
batch sizes (the pipeline sorts them by length and cuts encoder batches by rows and padded tokens), and
runs them on the single inference thread (one thread: the encoder already uses every core, so parallel
batches would only contend). While a batch runs, new requests queue up and form the next one, so 64
concurrent clients cost about what one batched call costs. A full queue answers ``too_many_requests`` at
once instead of piling up memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from omniembed.api import Engine
from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.service.errors import RequestTimeout, TooManyRequests
from omniembed.service.metrics import Metrics

__all__ = ["Batcher"]

GATHER_BATCHES = 4


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future[Embedding | OmniEmbedError]


class _ModelQueue:
    def __init__(self, batcher: Batcher, model: str, modality: Modality, options: tuple[tuple[str, Any], ...]) -> None:
        self.batcher = batcher
        self.model = model
        self.modality = modality
        self.options = dict(options)
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=batcher.engine.settings.queue_size)
        # Gather several encoder batches' worth: the pipeline sorts them by length and cuts them where
        # padding is least, so a larger mix pads less.
        self.gather = max(batcher.engine.settings.batch_size * GATHER_BATCHES, 64)
        self.task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher:{model}:{modality}")

    def room(self) -> int:
        return self.queue.maxsize - self.queue.qsize()

    async def _next_batch(self) -> list[_Pending]:
        settings = self.batcher.engine.settings
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
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
            metrics.queue_depth.labels(self.model).set(self.queue.qsize())
            if not batch:
                continue
            kwargs: dict[str, Any] = {f"{self.modality}s": [p.item for p in batch], **self.options}
            call = functools.partial(
                self.batcher.engine.embed_batch, self.model, errors="return", allow_paths=False, **kwargs
            )
            try:
                results = await loop.run_in_executor(self.batcher.executor, call)
            except OmniEmbedError as exc:  # a whole-call problem (model, weights, options): every item gets it
                results = [exc] * len(batch)
            except Exception as exc:  # never let the worker die
                results = [OmniEmbedError(f"embedding failed: {type(exc).__name__}")] * len(batch)
            metrics.batch_size.labels(self.model).observe(len(batch))
            metrics.items.labels(self.model, str(self.modality)).inc(
                sum(isinstance(r, Embedding) for r in results)
            )
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)


class Batcher:
    """Queues per model; ``embed`` returns one result (Embedding or error) per item, in order."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-inference")
        self._queues: dict[tuple[Any, ...], _ModelQueue] = {}

    def _queue(self, model: str, modality: Modality, options: dict[str, Any]) -> _ModelQueue:
        spec = self.engine.spec(model)
        if modality not in spec.modalities:
            takes = ", ".join(map(str, spec.modalities))
            raise ParameterInvalid(f"model {spec.name!r} does not embed {modality} (it takes: {takes})", param="model")
        frozen = tuple(sorted((k, v) for k, v in options.items() if v is not None))
        key = (spec.name, modality, frozen)
        if key not in self._queues:
            self._queues[key] = _ModelQueue(self, spec.name, modality, frozen)
        return self._queues[key]

    async def embed(
        self, model: str, modality: Modality, items: Sequence[Any], timeout: float | None = None, **options: Any
    ) -> list[Embedding | OmniEmbedError]:
        queue = self._queue(model, modality, options)
        if queue.room() < len(items):
            raise TooManyRequests(
                f"the queue of model {queue.model!r} is full ({queue.queue.maxsize} waiting items); retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = [_Pending(item, loop.create_future()) for item in items]
        for p in pending:
            queue.queue.put_nowait(p)
        self.metrics.queue_depth.labels(queue.model).set(queue.queue.qsize())
        limit = timeout if timeout is not None else self.engine.settings.request_timeout_sec
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(p.future for p in pending)), limit))
        except TimeoutError:
            raise RequestTimeout(f"embedding did not finish within {limit:g} s; retry or send fewer items") from None

    def run_sync(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run blocking work (e.g. a model load) on the inference thread."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def close(self) -> None:
        for q in self._queues.values():
            q.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await q.task
        self._queues.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
