"""Durable jobs: a SQLAlchemy store (SQLite by default, or PostgreSQL) and the runner.

Status values are the feature-extraction-server's: ``starting`` (queued), ``running``, ``complete``,
``failed``. Several servers may share one store (one SQLite file on one host, or one PostgreSQL
database through ``OMNIEMBED_JOBS_DB_URL``); each job still runs to completion exactly once:

- **Claim.** A runner claims queued jobs in one write transaction: ``SELECT ... FOR UPDATE SKIP LOCKED``
  on PostgreSQL (concurrent runners skip each other's rows), ``BEGIN IMMEDIATE`` on SQLite (writers are
  serialised across processes), then a conditional ``UPDATE`` that stamps the job with the runner's random
  id (``owner``), a lease expiry (``lease_until``) and ``runs + 1``.
- **Lease.** The runner renews the leases of the jobs it runs every ``lease_sec / 3`` (a heartbeat). Any
  runner, at start and at every heartbeat, puts back in the queue only the ``running`` jobs whose lease
  has expired: those of a server that died (``kill -9``, crash, lost host). Live servers' jobs are never
  touched. Servers' clocks must agree to well within ``lease_sec``.
- **Finish.** A result is recorded only by the job's owner while the job is still ``running`` and its own
  (a runner that lost its lease, having stalled past it, finds its result refused and drops it). ``runs``
  and ``completions`` count starts and finishes, so tests and operators can see that nothing finished
  twice. Finished jobs keep their result until ``job_result_ttl_sec`` has passed.
- **Graceful stop.** A stopping runner puts its unfinished jobs back in the queue at once.

With API keys on, a job stores the SHA-256 of the key that created it (``key_hash``); the routes show a
job only to that key.

- **Waiting.** A job has no client waiting, so it waits its turn: its items go through the batcher's job
  lane (``Batcher.embed(job=True)``), a chunk at a time, never refused as ``too_many_requests`` nor held
  to the request deadline; requests keep their priority. Its lease is renewed all the while, and its
  ``progress`` (0 to 1) is recorded as chunks finish. ``job_timeout_sec`` (default: none) bounds a job's
  embedding; a job over it fails as ``request_timeout``.

Tasks other than the FES ones (``TASKS``) run through a handler the app gives the runner (``handlers``):
TwelveLabs' video embedding tasks are such jobs. A handler may report ``progress`` (0 to 1) while it runs.

Schema: the table is ``omniembed_jobs_v2``, a new name for the lease and key columns (pre-1.0: the old
``omniembed_jobs`` table of earlier versions is neither read nor migrated; its unfinished jobs are not
resumed). It is created if missing; on PostgreSQL under an advisory lock, so servers may start together. The
``progress`` column, added after the table was first shipped, is added to an existing table at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
    update,
)

from omniembed.embedding import Embedding, Modality
from omniembed.errors import InternalError, OmniEmbedError
from omniembed.service.errors import RequestTimeout, public_message

__all__ = ["TASKS", "Handler", "JobRunner", "JobStore", "key_hash"]

log = logging.getLogger(__name__)
TASKS = {"text-embedding": Modality.TEXT, "image-embedding": Modality.IMAGE, "audio-embedding": Modality.AUDIO}
_CREATE_LOCK_KEY = 0x6F6D6E69  # PostgreSQL advisory lock held while creating the table ("omni")

_meta = MetaData()
jobs = Table(
    "omniembed_jobs_v2",
    _meta,
    Column("id", String(36), primary_key=True),
    Column("task", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("batched", Boolean, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("runs", Integer, nullable=False, default=0),
    Column("completions", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("expires_at", Float),
    Column("owner", String(32)),
    Column("lease_until", Float),
    Column("key_hash", String(64)),
    Column("progress", Float),
    Index("ix_omniembed_jobs_v2_model_status", "model", "status"),
)


def _sqlite_setup(db: Any) -> None:
    """pysqlite's own transaction handling is off; every transaction is begun here: ``BEGIN IMMEDIATE``
    for writes, so two processes never both read then fail to upgrade to a write lock."""

    @event.listens_for(db, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer

    @event.listens_for(db, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("omniembed_write") else "BEGIN")


class JobStore:
    """Synchronous store; call it from a worker thread (``asyncio.to_thread``) in async code."""

    def __init__(self, url: str, ttl_sec: float) -> None:
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        if self.sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.sqlite:
            self.db = create_engine(url, connect_args={"timeout": 30})
            _sqlite_setup(self.db)
        else:
            self.db = create_engine(url, pool_pre_ping=True)
        self._writer = self.db.execution_options(omniembed_write=True)
        self.ttl_sec = ttl_sec
        # SQLite has one writer at a time: queue this process's writers here rather than in busy-waits.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.sqlite else contextlib.nullcontext()
        )
        with self._write() as conn:
            if self.db.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK_KEY})
            _meta.create_all(conn)
            if "progress" not in {c["name"] for c in inspect(conn).get_columns(jobs.name)}:
                conn.execute(text(f"ALTER TABLE {jobs.name} ADD COLUMN progress FLOAT"))

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self._writer.begin() as conn:
            yield conn

    def create(
        self, task: str, model: str, batched: bool, payload: dict[str, Any], key_hash: str | None = None
    ) -> str:
        job_id = str(uuid.uuid4())
        row = {"id": job_id, "task": task, "model": model, "batched": batched, "status": "starting",
               "payload": json.dumps(payload), "runs": 0, "completions": 0, "created_at": time.time(),
               "key_hash": key_hash}
        with self._write() as conn:
            conn.execute(jobs.insert().values(**row))
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None or (row["expires_at"] is not None and row["expires_at"] < time.time()):
            return None
        return dict(row)

    def claim(self, owner: str, limit: int, lease_sec: float) -> list[dict[str, Any]]:
        """Mark up to ``limit`` queued jobs (oldest first) running under ``owner``'s lease; return them."""
        if limit <= 0:
            return []
        with self._write() as conn:
            ids = conn.execute(
                select(jobs.c.id).where(jobs.c.status == "starting").order_by(jobs.c.created_at).limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            if not ids:
                return []
            now = time.time()
            conn.execute(
                update(jobs).where(jobs.c.id.in_(ids), jobs.c.status == "starting")
                .values(status="running", owner=owner, lease_until=now + lease_sec, runs=jobs.c.runs + 1,
                        started_at=now)
            )
            rows = conn.execute(
                select(jobs).where(jobs.c.id.in_(ids), jobs.c.owner == owner, jobs.c.status == "running")
                .order_by(jobs.c.created_at)
            ).mappings().all()
        return [dict(r) for r in rows]

    def renew(self, owner: str, job_ids: list[str], lease_sec: float) -> set[str]:
        """Extend ``owner``'s leases on these jobs; returns the ids it still holds (others were lost)."""
        if not job_ids:
            return set()
        held = (jobs.c.id.in_(job_ids)) & (jobs.c.owner == owner) & (jobs.c.status == "running")
        with self._write() as conn:
            conn.execute(update(jobs).where(held).values(lease_until=time.time() + lease_sec))
            return set(conn.execute(select(jobs.c.id).where(held)).scalars().all())

    def finish(self, owner: str, job_id: str, *, result: Any = None, error: dict[str, Any] | None = None) -> bool:
        """Record a job's outcome; only its owner can, while it runs. False: the lease was lost."""
        now = time.time()
        values: dict[str, Any] = {
            "status": "failed" if error is not None else "complete",
            "result": None if result is None else json.dumps(result),
            "error": None if error is None else json.dumps(error),
            "finished_at": now,
            "expires_at": now + self.ttl_sec,
            "completions": jobs.c.completions + 1,
            "lease_until": None,
        }
        mine = (jobs.c.id == job_id) & (jobs.c.status == "running") & (jobs.c.owner == owner)
        with self._write() as conn:
            return int(conn.execute(update(jobs).where(mine).values(**values)).rowcount) == 1

    def release(self, owner: str, job_ids: list[str]) -> int:
        """Put these running jobs of ``owner`` back in the queue (a graceful stop); returns how many."""
        if not job_ids:
            return 0
        mine = jobs.c.id.in_(job_ids) & (jobs.c.owner == owner) & (jobs.c.status == "running")
        with self._write() as conn:
            done = conn.execute(update(jobs).where(mine).values(status="starting", owner=None, lease_until=None))
            return int(done.rowcount)

    def requeue_expired(self) -> int:
        """Put running jobs whose lease has expired (their server died) back in the queue."""
        expired = (jobs.c.status == "running") & ((jobs.c.lease_until < time.time()) | jobs.c.lease_until.is_(None))
        with self._write() as conn:
            done = conn.execute(update(jobs).where(expired).values(status="starting", owner=None, lease_until=None))
            return int(done.rowcount)

    def set_progress(self, owner: str, job_id: str, progress: float) -> bool:
        """Record how far a running job of ``owner``'s has come (0 to 1). False: the lease was lost."""
        mine = (jobs.c.id == job_id) & (jobs.c.status == "running") & (jobs.c.owner == owner)
        with self._write() as conn:
            return int(conn.execute(update(jobs).where(mine).values(progress=progress)).rowcount) == 1

    def purge_expired(self) -> int:
        with self._write() as conn:
            return int(conn.execute(delete(jobs).where(jobs.c.expires_at < time.time())).rowcount)

    def counts(self) -> dict[str, int]:
        with self.db.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        return {str(status): int(n) for status, n in rows}

    def active(self, model: str, limit: int = 1000) -> list[dict[str, Any]]:
        """A model's unfinished jobs, oldest first: ``{id, status, key_hash}``."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.status, jobs.c.key_hash)
                .where(jobs.c.model == model, jobs.c.status.in_(("starting", "running")))
                .order_by(jobs.c.created_at).limit(limit)
            ).mappings().all()
        return [dict(r) for r in rows]


_CONFIG_KEYS = ("truncate", "normalize", "pooling", "start_offset_sec", "segment_sec", "overlap_sec")


def job_options(config: dict[str, Any]) -> dict[str, Any]:
    """The embedding options a job's ``config`` may set; other keys are ignored, as FES models do."""
    return {k: config[k] for k in _CONFIG_KEYS if k in config}


def embedding_payload(result: Embedding) -> dict[str, Any]:
    return {"embedding": result.vector.tolist()}


def item_error(exc: OmniEmbedError, position: int, batched: bool) -> dict[str, Any]:
    """The stored error of a job whose item failed: the position is a field (batched jobs only)."""
    error: dict[str, Any] = exc.to_dict()
    error["message"] = public_message(exc)  # no server paths in what clients read
    error.pop("index", None)
    if batched:
        error["index"] = exc.index if exc.index is not None else position
    return error


def key_hash(request: Any, settings: Any) -> str | None:
    """SHA-256 of the API key the gate accepted for ``request`` (``request.state.api_key``, set by the gate in
    service/app.py), or None with API keys off: what a job stores to show it only to that key."""
    key = getattr(request.state, "api_key", None)
    if not settings.api_keys or key is None:
        return None
    return hashlib.sha256(str(key).encode()).hexdigest()


Handler = Callable[[dict[str, Any], Callable[[float], Awaitable[None]]], Awaitable[dict[str, Any]]]
"""Runs a job of a task outside ``TASKS``: ``(row, report_progress)`` -> ``{"result": ...}`` or
``{"error": {...}}`` (the stored outcome). An exception it raises is recorded as the job's internal error."""


class _ProgressReporter:
    """Records a job's progress as its chunks finish, off the path that feeds the next chunk: one write at
    a time, the latest value winning (a failed write is logged; the next report tries again)."""

    def __init__(self, write: Callable[[float], Awaitable[None]], total: int) -> None:
        self.write = write
        self.total = max(total, 1)
        self.latest: float | None = None
        self.writing: asyncio.Task[None] | None = None

    def __call__(self, done: int) -> None:
        self.latest = done / self.total
        if self.writing is None or self.writing.done():
            self.writing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self.latest is not None:
            value, self.latest = self.latest, None
            try:
                await self.write(value)
            except Exception:
                log.warning("could not record a job's progress", exc_info=True)

    async def close(self) -> None:
        if self.writing is not None:
            await asyncio.gather(self.writing, return_exceptions=True)


class JobRunner:
    """Claims queued jobs and runs them through the batcher (or their task's handler), ``job_concurrency``
    at a time, each under a lease that a heartbeat renews every ``lease_sec / 3``. A job has no client
    waiting: its items wait their turn in the batcher's job lane, however long (never ``request_timeout``
    or ``too_many_requests``), unless ``timeout_sec`` (``job_timeout_sec``) bounds its embedding."""

    def __init__(
        self, store: JobStore, batcher: Any, concurrency: int, grace_sec: float, lease_sec: float | None = None,
        handlers: dict[str, Handler] | None = None, timeout_sec: float | None = None,
    ) -> None:
        self.store = store
        self.batcher = batcher
        self.concurrency = concurrency
        self.grace_sec = grace_sec
        self.lease_sec = float(lease_sec if lease_sec is not None else batcher.engine.settings.job_lease_sec)
        self.timeout_sec = timeout_sec
        self.handlers = dict(handlers or {})
        self.runner_id = uuid.uuid4().hex
        self.wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        requeued = await asyncio.to_thread(self.store.requeue_expired)
        if requeued:
            log.info("resuming %d job(s) abandoned by a stopped server (lease expired)", requeued)
        await asyncio.to_thread(self.store.purge_expired)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), name="job-runner")
        self._beat = loop.create_task(self._heartbeat(), name="job-heartbeat")

    async def _loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._running)
            claimed: list[dict[str, Any]] = []
            if free > 0:
                try:
                    claimed = await asyncio.to_thread(self.store.claim, self.runner_id, free, self.lease_sec)
                except Exception:  # the store is unreachable for now: retry, never die
                    log.exception("could not claim jobs")
            for row in claimed:
                task = asyncio.get_running_loop().create_task(self._run(row))
                self._running[row["id"]] = task
                task.add_done_callback(functools.partial(self._forget, row["id"]))
            if not claimed:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.5)

    async def _heartbeat(self) -> None:
        """Renew this runner's leases; requeue other servers' abandoned jobs; purge expired results."""
        last_purge = time.monotonic()
        while True:
            await asyncio.sleep(self.lease_sec / 3)
            try:
                ids = list(self._running)
                held = await asyncio.to_thread(self.store.renew, self.runner_id, ids, self.lease_sec)
                for job_id in set(ids) - held:
                    task = self._running.get(job_id)
                    if task is not None and not task.done():  # another runner has it now
                        log.warning("job %s: lease lost (this server stalled past it); dropping it", job_id)
                        task.cancel()
                if not self._stopping:
                    requeued: int = await asyncio.to_thread(self.store.requeue_expired)
                    if requeued:
                        log.info("resuming %d job(s) abandoned by a stopped server (lease expired)", requeued)
                        self.wake.set()
                if time.monotonic() - last_purge > 60:
                    await asyncio.to_thread(self.store.purge_expired)
                    last_purge = time.monotonic()
            except Exception:
                log.exception("job heartbeat failed; retrying")

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)

    async def _embed(self, row: dict[str, Any]) -> dict[str, Any]:
        """A job of ``TASKS``: its items wait their turn in the batcher's job lane (no request deadline, no
        429); its progress is recorded as its chunks finish."""
        job_id, batched = row["id"], bool(row["batched"])
        payload = json.loads(row["payload"])
        inputs = payload["inputs"]
        reporter = _ProgressReporter(functools.partial(self._progress, job_id), len(inputs))
        try:
            results = await self.batcher.embed(row["model"], TASKS[row["task"]], inputs, job=True,
                                               progress=reporter, **job_options(payload.get("config") or {}))
        finally:
            await reporter.close()
        failed = next(((i, r) for i, r in enumerate(results) if isinstance(r, OmniEmbedError)), None)
        if failed is not None:
            return {"error": item_error(failed[1], failed[0], batched)}
        out = [embedding_payload(r) for r in results]
        return {"result": out if batched else out[0]}

    async def _embed_within_deadline(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.timeout_sec is None:
            return await self._embed(row)
        try:
            return await asyncio.wait_for(self._embed(row), self.timeout_sec)
        except TimeoutError:
            error = RequestTimeout(f"the job did not finish within {self.timeout_sec:g} s "
                                   "(OMNIEMBED_JOB_TIMEOUT_SEC); send fewer inputs per job or raise the limit")
            return {"error": item_error(error, 0, batched=False)}

    async def _run(self, row: dict[str, Any]) -> None:
        job_id = row["id"]
        outcome: dict[str, Any]
        try:
            handler = self.handlers.get(row["task"])
            if handler is not None:
                outcome = await handler(row, functools.partial(self._progress, job_id))
            else:
                outcome = await self._embed_within_deadline(row)
        except OmniEmbedError as exc:  # a whole-job problem (model, options): no item position
            outcome = {"error": item_error(exc, 0, batched=False)}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded, never lost; the traceback is logged under an incident id
            outcome = {"error": InternalError.from_exception(exc, f"job {job_id}", logger=log).to_dict()}
        try:
            if not await asyncio.to_thread(self.store.finish, self.runner_id, job_id, **outcome):
                log.warning("job %s: lease lost before it finished; its result is dropped", job_id)
        except Exception:  # the lease lapses and the job runs again elsewhere
            log.exception("job %s: could not record its outcome", job_id)

    async def _progress(self, job_id: str, value: float) -> None:
        """A progress report (0 to 1) for a running job of this runner."""
        await asyncio.to_thread(self.store.set_progress, self.runner_id, job_id, float(value))

    async def stop(self) -> None:
        """Stop claiming; give running jobs ``grace_sec`` to finish, then put the rest back in the queue."""
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        running = list(self._running.values())
        if running:
            _done, pending = await asyncio.wait(running, timeout=self.grace_sec)
            ids = [job_id for job_id, task in list(self._running.items()) if task in pending]
            for task in pending:
                task.cancel()
            if ids:
                await asyncio.to_thread(self.store.release, self.runner_id, ids)
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
