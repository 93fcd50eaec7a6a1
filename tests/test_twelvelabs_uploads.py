"""The uploads of TwelveLabs tasks (issue 25, defect 3): a task's file is removed only once its outcome is in
the job store, a task whose outcome could not be saved runs again from its file, and the sweep removes the
files that nothing needs any more (their task finished, expired or absent), at start and periodically,
keeping fresh files and those of queued or running tasks, and surviving a store that is down."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

import omniembed
from omniembed.service.jobs import JobRunner, JobStore, jobs
from omniembed.service.twelvelabs import tasks
from omniembed.service.twelvelabs.tasks import TASK_V1, TASK_V2, MediaPlan, TwelveLabsFace

OLD = time.time() - 7200  # older than the sweep's grace


def _face(tmp_path: Path, store: Any) -> TwelveLabsFace:
    settings = omniembed.Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", hub_offline=True)

    def no_batcher() -> Any:
        raise RuntimeError("no batcher in this test")

    state = SimpleNamespace(settings=settings, store=store, require_batcher=no_batcher)
    return TwelveLabsFace(state)  # type: ignore[arg-type]


def _upload(face: TwelveLabsFace, name: str, *, old: bool = True) -> Path:
    face.uploads.mkdir(parents=True, exist_ok=True)
    path = face.uploads / name
    path.write_bytes(b"video")
    if old:
        os.utime(path, (OLD, OLD))
    return path


def _task(store: JobStore, upload: str, task: str = TASK_V1) -> str:
    plan = MediaPlan("marengo3.0", "video", {"visual": "clip"}, ["clip"], upload=upload, filename="v.mp4")
    return store.create(task, "clip", False, asdict(plan))


def test_the_sweep_removes_only_uploads_nothing_needs(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", 60)
    face = _face(tmp_path, store)
    queued = _task(store, _upload(face, "queued.bin").name)
    running = _task(store, _upload(face, "running.bin").name, TASK_V2)
    done, failed, expired = (_task(store, _upload(face, f"{n}.bin").name) for n in ("done", "failed", "expired"))
    _upload(face, "absent.bin")  # its task was never created (the store was down when it was submitted)
    _upload(face, "fresh.bin", old=False)  # its task may not be in the store yet
    claimed = {r["id"] for r in store.claim("me", 10, 60)}
    assert {queued, running, done, failed, expired} <= claimed
    store.release("me", [queued])
    assert store.finish("me", done, result={"segments": []})
    assert store.finish("me", failed, error={"code": "input_unreadable", "message": "no"})
    assert store.finish("me", expired, result={"segments": []})
    with store.db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == expired).values(expires_at=time.time() - 1))

    assert face.sweep_uploads() == 4
    assert sorted(p.name for p in face.uploads.iterdir()) == ["fresh.bin", "queued.bin", "running.bin"]
    assert face.sweep_uploads() == 0


def test_the_sweep_runs_at_start_and_periodically_and_outlives_a_store_that_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        def connect(self) -> Any:
            raise ConnectionError("the store is down")

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", 60)
    good = store.db
    face = _face(tmp_path, SimpleNamespace(db=good))
    face.sweep_every_sec = 0.05
    first = _upload(face, "first.bin")

    async def main() -> None:
        background = asyncio.get_running_loop().create_task(face.start())
        try:
            for _ in range(200):  # swept at start
                if not first.exists():
                    break
                await asyncio.sleep(0.01)
            assert not first.exists()
            face.state.store.db = Down()
            second = _upload(face, "second.bin")
            await asyncio.sleep(0.3)  # several sweeps fail: the file stays, the loop goes on
            assert second.exists()
            face.state.store.db = good
            for _ in range(200):
                if not second.exists():
                    break
                await asyncio.sleep(0.01)
            assert not second.exists()
        finally:
            background.cancel()
            with pytest.raises(asyncio.CancelledError):
                await background

    with caplog.at_level(logging.WARNING, logger=tasks.__name__):
        asyncio.run(main())
    assert any("sweeping the TwelveLabs upload folder failed" in r.getMessage() for r in caplog.records)


def test_an_upload_is_kept_until_its_outcome_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store cannot take the first outcome (down): the task's file stays, the lease lapses, the task runs
    again from the file and, once that outcome is saved, the file goes. The old code removed the file before
    the outcome was saved: the second run failed with resource_not_exist."""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", 60)
    face = _face(tmp_path, store)
    upload = _upload(face, "video.bin", old=False)
    job = _task(store, upload.name)
    seen: list[bytes] = []

    async def embedded(
        _state: Any, _plan: MediaPlan, source: Any, _progress: Any = None, *, job: bool = False
    ) -> dict[str, Any]:
        assert job  # a task runs as a durable job (the batcher's job lane)
        seen.append(source)
        return {"segments": [{"option": "visual", "scope": "clip", "start": 0.0, "end": 6.0, "vector": [1.0]}],
                "duration": 6.0, "models": ["clip"]}

    monkeypatch.setattr(tasks, "run_plan", embedded)
    finish = store.finish
    calls: list[bool] = []

    def flaky_finish(owner: str, job_id: str, **outcome: Any) -> bool:
        calls.append(True)
        if len(calls) == 1:
            raise ConnectionError("the store is down")
        return finish(owner, job_id, **outcome)

    monkeypatch.setattr(store, "finish", flaky_finish)
    states: list[bool] = []

    async def main() -> None:
        runner = JobRunner(store, batcher=None, concurrency=1, grace_sec=1, lease_sec=0.3,
                           handlers=face.handlers())
        await runner.start()
        try:
            for _ in range(500):
                if len(calls) == 1 and not states:
                    await asyncio.sleep(0.05)  # the cleanup that follows a failed commit has run
                    states.append(upload.exists())
                row = store.get(job)
                if row is not None and row["status"] == "complete" and not upload.exists():
                    break
                await asyncio.sleep(0.02)
        finally:
            await runner.stop()

    asyncio.run(main())
    row = store.get(job)
    assert row is not None and row["status"] == "complete", row
    assert (row["runs"], row["completions"]) == (2, 1)
    assert json.loads(row["result"])["segments"][0]["vector"] == [1.0]
    assert seen == [b"video", b"video"]  # both runs read the upload
    assert states == [True]  # kept after the outcome that could not be saved
    assert not upload.exists()  # removed once the outcome was saved
