"""Dynamic micro-batching: concurrent requests for one model share encoder calls.

Each (model, modality, options) has a bounded queue and one worker. The worker takes the first waiting
item, then whatever else is queued, waiting at most ``max_batch_wait_ms`` for more, up to four batch sizes
(the pipeline sorts them by length and cuts encoder batches by rows and padded tokens), and runs them on
its model's inference thread. While a batch runs, new requests queue up and form the next one, so 64
concurrent clients cost about what one batched call costs. A full queue answers ``too_many_requests`` at
once instead of piling up memory; a request larger than a queue can ever hold answers ``input_too_large``
(413, with the limit), since retrying it could never succeed. A queue idle for ``queue_idle_sec`` is
removed with its worker, so option values that clients vary (offsets, truncation) do not pile up queues.

**One inference thread per model.** Every model has its own thread (shared by its queues of every modality
and options), created with its first queue and ended with its last. Preparing a model (its first load:
ONNX export, ahead-of-time compilation) runs on that thread, so a cold model never holds up a loaded one,
and one model's long batch (eight texts of a million characters) never holds up another model's requests.
The operating system shares the cores between models that run at once; measured against one shared thread
in ``bench/model_isolation.py`` (docs/service.md has the numbers). Blocking work that belongs to no model's
queue (resolving a start-up model, fitting a TwelveLabs text, a geo run of the playground) runs on one
separate preparation thread, ``run_sync``; long media (a TwelveLabs video task) on a media thread,
``run_media``.

**Two lanes: requests and jobs.** A durable job has no client waiting, so its items never get
``too_many_requests`` or the request deadline (``request_timeout_sec``): ``embed(..., job=True)`` feeds
them in chunks of one gathered batch, each once the previous one is embedded, into a lane of their own
that waits for room (at most ``queue_size`` job items per queue) instead of refusing. Requests come
first: a batch takes waiting request items before job items, except that while job items wait, each batch
keeps one encoder batch (``batch_size`` items) for them; and on a model's thread, a batch with request items
runs before a waiting batch of job items only from another queue of the model (up to ``JOB_YIELDS`` times
in a row), so jobs keep moving under a steady request load. A request thus waits behind at most the batch
being encoded, never behind the jobs queued, and jobs never fill the request queue. A job deadline, if any,
is the job runner's (``job_timeout_sec``).

Requests from different clients share encoder calls, never errors: the pipeline isolates a bad item, and
each item's error is given back with its index in its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
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
JOB_YIELDS = 3
"""How many later batches with request items may run before a waiting batch of job items only."""
log = logging.getLogger(__name__)


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future[Embedding | OmniEmbedError]
    position: int
    """The item's index in its own request (an error is given back with this index)."""


def _take(lane: deque[_Pending], n: int) -> list[_Pending]:
    return [lane.popleft() for _ in range(min(n, len(lane)))]


class _Turns:
    """Whose batch runs next on a model's thread, across that model's queues (one per modality and options):
    first come, first served, except that a batch of job items only lets up to ``JOB_YIELDS`` batches with
    request items that came after it go first (so requests overtake jobs, and jobs still move)."""

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self.order = itertools.count()

    async def acquire(self, job_only: bool) -> None:
        if not self.busy and not self.waiting:
            self.busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (next(self.order) + (JOB_YIELDS if job_only else 0), int(job_only), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the turn just as it was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self.waiting:
            _order, _job_only, turn = heapq.heappop(self.waiting)
            if not turn.done():
                turn.set_result(None)  # busy stays True: the turn passes to this waiter
                return
        self.busy = False


class _ModelQueue:
    def __init__(self, batcher: Batcher, model: str, modality: Modality, options: Options) -> None:
        self.key = (model, modality, options)
        self.batcher = batcher
        self.model = model
        self.modality = modality
        self.options = options
        settings = batcher.engine.settings
        self.maxsize = settings.queue_size
        self.requests: deque[_Pending] = deque()
        self.jobs: deque[_Pending] = deque()
        self.arrived = asyncio.Event()  # set when items are added to either lane
        self.job_space = asyncio.Event()  # set when the worker took job items
        # Gather several encoder batches' worth: the pipeline sorts them by length and cuts them where
        # padding is least, so a larger mix pads less.
        self.gather = max(settings.batch_size * GATHER_BATCHES, 64)
        self.job_share = min(settings.batch_size, self.gather)
        self.job_chunk = min(self.gather, self.maxsize)
        self.executor = batcher.model_thread(model)
        self.turns = batcher.model_turns(model)
        self.task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher:{model}:{modality}")

    def room(self) -> int:
        return self.maxsize - len(self.requests)

    def waiting(self) -> int:
        return len(self.requests) + len(self.jobs)

    def put(self, pending: list[_Pending], job: bool) -> None:
        (self.jobs if job else self.requests).extend(pending)
        self.arrived.set()
        self.batcher.metrics.queue_depth.labels(self.model).set(self.waiting())

    async def put_job(self, pending: list[_Pending]) -> None:
        """Add a job's chunk once the job lane has room for it (always, when the lane is empty)."""
        while self.jobs and len(self.jobs) + len(pending) > self.maxsize:
            self.job_space.clear()
            await self.job_space.wait()
        self.put(pending, job=True)

    def _batch(self) -> tuple[list[_Pending], bool]:
        """Requests first; while job items wait, ``job_share`` of the batch is theirs. Also: whether the
        batch holds request items (it then runs before other queues' batches of job items only)."""
        jobs_first = min(len(self.jobs), self.job_share)
        batch = _take(self.requests, self.gather - jobs_first)
        taken_jobs = _take(self.jobs, self.gather - len(batch))
        if taken_jobs:
            self.job_space.set()
        live = [p for p in [*batch, *taken_jobs] if not p.future.done()]  # skip requests that timed out
        return live, bool(batch)

    async def _next_batch(self) -> tuple[list[_Pending], bool] | None:
        """The next batch to encode; None when the queue stayed idle for ``queue_idle_sec``."""
        settings = self.batcher.engine.settings
        loop = asyncio.get_running_loop()
        if not self.waiting():
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), settings.queue_idle_sec)
            except TimeoutError:
                return None
        deadline = loop.time() + settings.max_batch_wait_ms / 1000
        while self.waiting() < self.gather and (remaining := deadline - loop.time()) > 0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                break
        return self._batch()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        metrics = self.batcher.metrics
        while True:
            taken = await self._next_batch()
            if taken is None:
                if not self.waiting():  # no await between this check and the removal: nothing can slip in
                    self.batcher.forget(self)
                    return
                continue
            batch, requested = taken
            metrics.queue_depth.labels(self.model).set(self.waiting())
            if not batch:
                continue
            call = functools.partial(self.batcher.engine.run, self.model, self.modality, [p.item for p in batch],
                                     self.options, errors="return")
            results: list[Embedding | OmniEmbedError]
            await self.turns.acquire(job_only=not requested)
            try:
                results = await loop.run_in_executor(self.executor, call)
            except OmniEmbedError as exc:  # a whole-call problem (model, weights, options): every item gets it
                results = [exc] * len(batch)
            except Exception as exc:  # a defect: logged with its traceback; the worker lives on
                results = [InternalError.from_exception(exc, f"embedding with {self.model}", logger=log)] * len(batch)
            finally:
                self.turns.release()
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
        self._threads: dict[str, ThreadPoolExecutor] = {}  # one inference thread per model
        self._turns: dict[str, _Turns] = {}  # and the order its queues' batches run in
        # blocking work of no model's queue (resolving a start-up model, fitting a text): one at a time
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-prepare")
        # long media (a video or audio task runs for minutes): its own thread, so the queues keep answering
        self.media_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-media")
        self._queues: dict[tuple[Any, ...], _ModelQueue] = {}

    def model_thread(self, model: str) -> ThreadPoolExecutor:
        """The inference thread of ``model`` (a canonical name), started on first use."""
        if model not in self._threads:
            self._threads[model] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"omniembed-{model}")
        return self._threads[model]

    def model_turns(self, model: str) -> _Turns:
        """The order in which the batches of ``model``'s queues run on its thread."""
        return self._turns.setdefault(model, _Turns())

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
        self, model: str, modality: Modality, items: Sequence[Any], timeout: float | None = None, *,
        job: bool = False, progress: Callable[[int], None] | None = None, **options: Any
    ) -> list[Embedding | OmniEmbedError]:
        """Embed ``items`` with the others queued for the same model, modality and options (``Options``
        keywords; None means the default; local paths are never read for a network client).

        A request (``job=False``) is refused at once when the queue is full and gets ``timeout`` (default:
        ``request_timeout_sec``). A durable job's items (``job=True``) wait for room instead, with no
        deadline here, fed a chunk at a time; ``progress`` is called with the number of items embedded after
        each chunk but the last."""
        given = Options.of(**{k: v for k, v in options.items() if v is not None}, allow_paths=False)
        given.check_for(modality)
        queue = self._queue(model, modality, given)
        loop = asyncio.get_running_loop()
        if job:
            return await self._embed_job(queue, items, progress)
        if len(items) > queue.maxsize:
            raise InputTooLarge(
                f"{len(items)} items in one request; a model queue holds at most {queue.maxsize} "
                "(OMNIEMBED_QUEUE_SIZE). Send fewer items per request.",
                param="input",
            )
        if queue.room() < len(items):
            raise TooManyRequests(
                f"the queue of model {queue.model!r} is full ({queue.maxsize} waiting items); retry shortly"
            )
        pending = [_Pending(item, loop.create_future(), k) for k, item in enumerate(items)]
        queue.put(pending, job=False)
        limit = timeout if timeout is not None else self.engine.settings.request_timeout_sec
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(p.future for p in pending)), limit))
        except TimeoutError:
            raise RequestTimeout(f"embedding did not finish within {limit:g} s; retry or send fewer items") from None

    async def _embed_job(
        self, queue: _ModelQueue, items: Sequence[Any], progress: Callable[[int], None] | None
    ) -> list[Embedding | OmniEmbedError]:
        loop = asyncio.get_running_loop()
        results: list[Embedding | OmniEmbedError] = []
        for start in range(0, len(items), queue.job_chunk):
            chunk = items[start:start + queue.job_chunk]
            pending = [_Pending(item, loop.create_future(), start + k) for k, item in enumerate(chunk)]
            if queue.task.done():  # the worker ended while this job waited: a fresh queue
                queue = self._queue(queue.model, queue.modality, queue.options)
            await queue.put_job(pending)
            results.extend(await asyncio.gather(*(p.future for p in pending)))
            if progress is not None and len(results) < len(items):
                progress(len(results))
        return results

    def forget(self, queue: _ModelQueue) -> None:
        """Remove an idle queue (its worker is ending), and its model's thread with its model's last queue."""
        if self._queues.get(queue.key) is queue:
            del self._queues[queue.key]
        if all(q.model != queue.model for q in self._queues.values()):
            self._turns.pop(queue.model, None)
            thread = self._threads.pop(queue.model, None)
            if thread is not None:
                thread.shutdown(wait=False)

    @property
    def queues(self) -> int:
        """How many per-(model, modality, options) queues exist now."""
        return len(self._queues)

    @property
    def threads(self) -> list[str]:
        """The models that have an inference thread now."""
        return sorted(self._threads)

    def run_sync(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run blocking work that belongs to no model's queue (resolving a start-up model, fitting a text)
        on the preparation thread, one at a time, beside the models' inference threads."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def run_model(self, model: str, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run blocking work for ``model`` (a canonical name; e.g. loading it) on that model's inference
        thread: its requests wait for it, other models' do not."""
        return asyncio.get_running_loop().run_in_executor(self.model_thread(model), fn, *args)

    def run_media(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run one long media embedding (a TwelveLabs video or audio task) on the media thread: one at a time,
        beside the inference threads, so requests queued for the models are not held up behind it."""
        return asyncio.get_running_loop().run_in_executor(self.media_executor, fn, *args)

    async def close(self) -> None:
        for q in list(self._queues.values()):
            q.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await q.task
        self._queues.clear()
        for thread in [*self._threads.values(), self.executor, self.media_executor]:
            thread.shutdown(wait=True, cancel_futures=True)
        self._threads.clear()
