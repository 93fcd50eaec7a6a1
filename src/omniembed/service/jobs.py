"""Durable jobs: a SQLAlchemy store (SQLite by default, any URL such as PostgreSQL) and the runner.

Status values are the feature-extraction-server's: ``starting`` (queued), ``running``, ``complete``,
``failed``. A job is claimed with a conditional UPDATE, so two runners never take the same job. At
start-up, jobs left ``running`` by a crashed or killed server go back to ``starting`` and run again;
finished jobs keep their result until ``job_result_ttl_sec`` has passed. ``runs`` and ``completions``
count starts and finishes, so tests (and operators) can see that no job finished twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    select,
    update,
)

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError

__all__ = ["TASKS", "JobRunner", "JobStore"]

log = logging.getLogger(__name__)
TASKS = {"text-embedding": Modality.TEXT, "image-embedding": Modality.IMAGE, "audio-embedding": Modality.AUDIO}

_meta = MetaData()
jobs = Table(
    "omniembed_jobs",
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
)


class JobStore:
    """Synchronous store; call it from a worker thread (``asyncio.to_thread``) in async code."""

    def __init__(self, url: str, ttl_sec: float) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.db = create_engine(url, future=True)
        self.ttl_sec = ttl_sec
        self._lock = threading.Lock()  # SQLite allows one writer; keep writes short and serial
        _meta.create_all(self.db)

    def create(self, task: str, model: str, batched: bool, payload: dict[str, Any]) -> str:
        job_id = str(uuid.uuid4())
        row = {"id": job_id, "task": task, "model": model, "batched": batched, "status": "starting",
               "payload": json.dumps(payload), "runs": 0, "completions": 0, "created_at": time.time()}
        with self._lock, self.db.begin() as conn:
            conn.execute(jobs.insert().values(**row))
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None or (row["expires_at"] is not None and row["expires_at"] < time.time()):
            return None
        return dict(row)

    def claim(self, limit: int) -> list[dict[str, Any]]:
        """Mark up to ``limit`` queued jobs running (oldest first) and return them."""
        if limit <= 0:
            return []
        claimed: list[dict[str, Any]] = []
        with self._lock, self.db.begin() as conn:
            ids = conn.execute(
                select(jobs.c.id).where(jobs.c.status == "starting").order_by(jobs.c.created_at).limit(limit)
            ).scalars().all()
            for job_id in ids:
                done = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == "starting")
                    .values(status="running", runs=jobs.c.runs + 1, started_at=time.time())
                )
                if done.rowcount == 1:
                    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
                    claimed.append(dict(row))
        return claimed

    def finish(self, job_id: str, *, result: Any = None, error: dict[str, Any] | None = None) -> None:
        now = time.time()
        values: dict[str, Any] = {
            "status": "failed" if error is not None else "complete",
            "result": None if result is None else json.dumps(result),
            "error": None if error is None else json.dumps(error),
            "finished_at": now,
            "expires_at": now + self.ttl_sec,
            "completions": jobs.c.completions + 1,
        }
        with self._lock, self.db.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "running").values(**values))

    def requeue(self, job_ids: list[str] | None = None) -> int:
        """Put running jobs (all, or these) back in the queue; returns how many."""
        condition = jobs.c.status == "running"
        if job_ids is not None:
            condition = condition & jobs.c.id.in_(job_ids)
        with self._lock, self.db.begin() as conn:
            return int(conn.execute(update(jobs).where(condition).values(status="starting")).rowcount)

    def purge_expired(self) -> int:
        with self._lock, self.db.begin() as conn:
            return int(conn.execute(delete(jobs).where(jobs.c.expires_at < time.time())).rowcount)

    def counts(self) -> dict[str, int]:
        with self.db.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        return {str(status): int(n) for status, n in rows}


_CONFIG_KEYS = ("truncate", "normalize", "pooling", "start_offset_sec", "segment_sec", "overlap_sec")


def job_options(config: dict[str, Any]) -> dict[str, Any]:
    """The embedding options a job's ``config`` may set; other keys are ignored, as FES models do."""
    return {k: config[k] for k in _CONFIG_KEYS if k in config}


def embedding_payload(result: Embedding) -> dict[str, Any]:
    return {"embedding": result.vector.tolist()}


class JobRunner:
    """Claims queued jobs and runs them through the batcher, ``job_concurrency`` at a time."""

    def __init__(self, store: JobStore, batcher: Any, concurrency: int, grace_sec: float) -> None:
        self.store = store
        self.batcher = batcher
        self.concurrency = concurrency
        self.grace_sec = grace_sec
        self.wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        requeued = await asyncio.to_thread(self.store.requeue)
        if requeued:
            log.info("resuming %d job(s) interrupted by the last shutdown", requeued)
        await asyncio.to_thread(self.store.purge_expired)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="job-runner")

    async def _loop(self) -> None:
        last_purge = time.monotonic()
        while not self._stopping:
            free = self.concurrency - len(self._running)
            claimed = await asyncio.to_thread(self.store.claim, free) if free > 0 else []
            for row in claimed:
                task = asyncio.get_running_loop().create_task(self._run(row))
                self._running[row["id"]] = task
                task.add_done_callback(functools.partial(self._forget, row["id"]))
            if time.monotonic() - last_purge > 60:
                await asyncio.to_thread(self.store.purge_expired)
                last_purge = time.monotonic()
            if not claimed:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.5)

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)

    async def _run(self, row: dict[str, Any]) -> None:
        payload = json.loads(row["payload"])
        inputs = payload["inputs"]
        try:
            results = await self.batcher.embed(
                row["model"], TASKS[row["task"]], inputs, **job_options(payload.get("config") or {})
            )
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, OmniEmbedError)]
            if failed:
                index, exc = failed[0]
                where = f"item {index}: " if row["batched"] else ""
                error = {"code": exc.code, "message": where + exc.message.removeprefix(f"item {index}: ")}
                await asyncio.to_thread(self.store.finish, row["id"], error=error)
                return
            out = [embedding_payload(r) for r in results]
            await asyncio.to_thread(self.store.finish, row["id"], result=out if row["batched"] else out[0])
        except OmniEmbedError as exc:
            await asyncio.to_thread(self.store.finish, row["id"], error={"code": exc.code, "message": exc.message})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded, never lost
            log.exception("job %s failed", row["id"])
            error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
            await asyncio.to_thread(self.store.finish, row["id"], error=error)

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
                await asyncio.to_thread(self.store.requeue, ids)
