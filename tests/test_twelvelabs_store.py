"""The job store under TwelveLabs tasks: an existing table of an earlier version gets the ``progress``
column (its jobs kept), a running job records its progress, and a handler runs a job outside the FES tasks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from omniembed.service.jobs import JobRunner, JobStore

OLD_TABLE = """CREATE TABLE omniembed_jobs_v2 (
    id VARCHAR(36) PRIMARY KEY, task VARCHAR(64) NOT NULL, model VARCHAR(256) NOT NULL, batched BOOLEAN NOT NULL,
    status VARCHAR(16) NOT NULL, payload TEXT NOT NULL, result TEXT, error TEXT, runs INTEGER NOT NULL,
    completions INTEGER NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT,
    expires_at FLOAT, owner VARCHAR(32), lease_until FLOAT, key_hash VARCHAR(64))"""


def test_an_existing_table_gets_the_progress_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    db = create_engine(url)
    with db.begin() as conn:
        conn.execute(text(OLD_TABLE))
        conn.execute(text("INSERT INTO omniembed_jobs_v2 (id, task, model, batched, status, payload, runs, "
                          "completions, created_at) VALUES ('old', 'text-embedding', 'minilm', 0, 'starting', "
                          "'{}', 0, 0, 1.0)"))
    db.dispose()
    store = JobStore(url, 60)
    assert store.get("old") is not None and store.get("old")["progress"] is None  # type: ignore[index]
    JobStore(url, 60)  # a second server starting on the upgraded table changes nothing
    (claimed,) = store.claim("me", 1, 30)
    assert store.set_progress("me", claimed["id"], 0.5)
    assert not store.set_progress("someone-else", claimed["id"], 0.9)  # only the job's owner
    assert store.get("old")["progress"] == 0.5  # type: ignore[index]


def test_a_handler_runs_its_task_and_reports_progress(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", 60)
    seen: list[float | None] = []

    async def handler(row: dict[str, Any], progress: Any) -> dict[str, Any]:
        await progress(0.25)
        seen.append(store.get(row["id"])["progress"])  # type: ignore[index]
        return {"result": {"doubled": json.loads(row["payload"])["x"] * 2}}

    async def main() -> None:
        runner = JobRunner(store, batcher=None, concurrency=2, grace_sec=1, lease_sec=5,
                           handlers={"custom": handler})
        job = store.create("custom", "none", False, {"x": 21})
        await runner.start()
        for _ in range(200):
            if store.get(job)["status"] == "complete":  # type: ignore[index]
                break
            await asyncio.sleep(0.02)
        await runner.stop()
        row = store.get(job)
        assert row is not None and row["status"] == "complete" and json.loads(row["result"]) == {"doubled": 42}
        assert (row["runs"], row["completions"]) == (1, 1)

    asyncio.run(main())
    assert seen == [0.25]


def test_tasks_are_visible_only_to_the_key_that_created_them(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    import omniembed
    from omniembed.service.app import create_app

    settings = omniembed.Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache", hub_offline=True,
                                  serve_models=[], api_keys=["key-a", "key-b"], joint_model="none",
                                  runtime="torch")
    a, b = {"x-api-key": "key-a"}, {"Authorization": "Bearer key-b"}
    with TestClient(create_app(settings)) as client:
        form = {"model_name": "marengo3.0", "video_url": "http://127.0.0.1:9/v.mp4"}  # refused: a private URL
        created = client.post("/v1.3/embed/tasks", data=form, headers=a)
        assert created.status_code == 200, created.text
        task = created.json()["_id"]
        deadline = time.monotonic() + 60  # the image model loads first
        while (status := client.get(f"/v1.3/embed/tasks/{task}/status", headers=a).json())["status"] == \
                "processing" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status["status"] == "failed" and status["error"]["code"] == "parameter_invalid"
        assert client.get(f"/v1.3/embed/tasks/{task}/status", headers=b).status_code == 404
        assert client.get(f"/v1.3/embed/tasks/{task}", headers=b).json()["code"] == "resource_not_exist"
        assert [t["_id"] for t in client.get("/v1.3/embed/tasks", headers=a).json()["data"]] == [task]
        assert client.get("/v1.3/embed/tasks", headers=b).json()["data"] == []
        assert client.get("/v1.3/embed/tasks").status_code == 401


def test_a_video_task_does_not_hold_up_the_request_queues(engine: Any, minilm_dir: Path) -> None:
    """A task's long video embedding runs on the batcher's media thread: a text request queued meanwhile is
    answered while the video is still being embedded (before the fix both shared the one inference thread,
    and the text waited for the whole video)."""
    import contextlib
    import threading
    from types import SimpleNamespace

    import omniembed
    from omniembed.embedding import Modality
    from omniembed.service.batcher import Batcher
    from omniembed.service.metrics import Metrics
    from omniembed.service.twelvelabs.tasks import _engine

    started, release = threading.Event(), threading.Event()
    threads: list[str] = []

    class SlowVideo:  # stands in for a long video: holds its thread until released
        def run(self, model: str, modality: Modality, items: list[Any], options: Any, **kwargs: Any) -> list[Any]:
            threads.append(threading.current_thread().name)
            started.set()
            release.wait(60)
            return [omniembed.ParameterInvalid("released")]

    async def scenario() -> tuple[Any, bool]:
        batcher = Batcher(engine, Metrics())
        try:
            state = SimpleNamespace(engine=SlowVideo(), require_batcher=lambda: batcher)
            video = asyncio.create_task(_engine(state, "efficientnet-lite0", Modality.VIDEO, b"..."))  # type: ignore[arg-type]
            assert await asyncio.to_thread(started.wait, 30)
            texts = await asyncio.wait_for(batcher.embed("minilm", Modality.TEXT, ["a text"]), 50)
            still_running = not video.done()
            release.set()
            with contextlib.suppress(omniembed.ParameterInvalid):
                await video
            return texts[0], still_running
        finally:
            release.set()
            await batcher.close()

    answer, still_running = asyncio.run(scenario())
    assert isinstance(answer, omniembed.Embedding) and answer.meta.model == "minilm"
    assert still_running
    assert threads and threads[0].startswith("omniembed-media")
