"""A TwelveLabs video task survives its server: ``omniembed serve`` is killed (SIGKILL) while it runs a task,
a new server starts on the same job store and data folder, and both that task and a queued task whose video
was uploaded (kept on disk) complete, each exactly once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import numpy as np
from twelvelabs import TwelveLabs

import omniembed
from conftest import LoopbackServer
from image_data import save_tiny_clip
from service_util import Server, job_rows
from video_data import VideoFiles


def test_a_killed_server_task_completes_after_restart(
    tmp_path: Path, settings: omniembed.Settings, http_server: LoopbackServer
) -> None:
    clip_dir = save_tiny_clip(tmp_path / "clip")
    video = VideoFiles(tmp_path / "videos").halves().read_bytes()
    http_server.routes["/slow.mp4"] = (0, {}, None)  # the first server's fetch hangs: the task is running
    env = {"OMNIEMBED_SERVE_MODELS": str(clip_dir), "OMNIEMBED_JOINT_MODEL": str(clip_dir),
           "OMNIEMBED_RUNTIME": "torch", "OMNIEMBED_JOB_LEASE_SEC": "1", "OMNIEMBED_JOB_CONCURRENCY": "1",
           "OMNIEMBED_ALLOW_PRIVATE_URLS": "1"}
    data = tmp_path / "data"
    store = f"sqlite:///{data / 'jobs.sqlite3'}"
    first = Server(data, settings.cache_dir, **env).start()
    second: Server | None = None
    try:
        client = TwelveLabs(api_key="unused", base_url=f"{first.url}/v1.3")
        fetched = client.embed.tasks.create(model_name="marengo3.0", video_url=http_server.url("/slow.mp4"),
                                            video_clip_length=4)
        uploaded = client.embed.tasks.create(model_name="marengo3.0", video_file=("v.mp4", video),
                                             video_start_offset_sec=3, video_end_offset_sec=9, video_clip_length=3)
        assert fetched.id and uploaded.id
        deadline = time.monotonic() + 30
        while job_rows(store)[fetched.id]["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = job_rows(store)
        assert rows[fetched.id]["status"] == "running" and rows[uploaded.id]["status"] == "starting"
        assert len(list((data / "twelvelabs-uploads").iterdir())) == 1  # the upload is on disk, not in memory
        first.kill()

        http_server.routes["/slow.mp4"] = (200, {"Content-Type": "video/mp4"}, video)
        second = Server(data, settings.cache_dir, **env).start()
        client = TwelveLabs(api_key="unused", base_url=f"{second.url}/v1.3")
        for task in (fetched, uploaded):
            assert client.embed.tasks.wait_for_done(task.id, sleep_interval=0.1).status == "ready"
        rows = job_rows(store)
        assert (rows[fetched.id]["runs"], rows[fetched.id]["completions"]) == (2, 1)  # resumed once, done once
        assert (rows[uploaded.id]["runs"], rows[uploaded.id]["completions"]) == (1, 1)
        spans = {}
        for task in (fetched, uploaded):
            got = client.embed.tasks.retrieve(task.id, embedding_option=["visual"]).video_embedding
            assert got is not None and got.segments is not None
            spans[task.id] = [(s.start_offset_sec, s.end_offset_sec) for s in got.segments]
        assert spans[fetched.id] == [(0, 4), (4, 8), (8, 12)]
        assert spans[uploaded.id] == [(3, 6), (6, 9)]
        deadline = time.monotonic() + 30  # removed once its task's outcome is committed
        while list((data / "twelvelabs-uploads").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((data / "twelvelabs-uploads").iterdir()) == []
    finally:
        for server in (first, second):
            if server is not None and server.proc is not None:
                server.stop()



CRASH_HOOK = '''
"""Loaded by the server process (PYTHONPATH): the job store's finish step kills the process (as kill -9 does:
no cleanup, no shutdown) just before or just after it commits a task's outcome, as OMNIEMBED_TEST_CRASH says."""
import os

from omniembed.service import jobs

_finish = jobs.JobStore.finish


def finish(self, owner, job_id, **outcome):
    when = os.environ.get("OMNIEMBED_TEST_CRASH")
    if when == "before-commit":
        os._exit(137)
    done = _finish(self, owner, job_id, **outcome)
    if when == "after-commit":
        os._exit(137)
    return done


jobs.JobStore.finish = finish
'''


def _crashing(hook: Path, when: str) -> dict[str, str]:
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
            "OMNIEMBED_TEST_CRASH": when}


def _died(server: Server, timeout: float = 60) -> int:
    assert server.proc is not None
    return server.proc.wait(timeout=timeout)


def _vectors(client: TwelveLabs, task_id: str) -> list[tuple[float | None, float | None, list[float]]]:
    got = client.embed.tasks.retrieve(task_id).video_embedding
    assert got is not None and got.segments
    return [(s.start_offset_sec, s.end_offset_sec, list(s.float_ or [])) for s in got.segments]


def test_an_upload_outlives_a_crash_on_either_side_of_the_commit(tmp_path: Path, settings: omniembed.Settings) -> None:
    """Issue 25, defect 3. A server killed after it embedded an uploaded video but before the outcome was
    committed leaves the upload on disk (the old code removed it first, and the restarted server failed the
    task with resource_not_exist); the next server runs the task again from it and commits it, and when that
    server is killed after the commit but before the removal, the file is left to the sweep of the server
    after it, which removes it with an old file of no task, and keeps a fresh one (its task may be on its way).
    The task's vectors equal those of the same video embedded by a server that never crashed."""
    clip_dir = save_tiny_clip(tmp_path / "clip")
    video = VideoFiles(tmp_path / "videos").halves().read_bytes()
    env = {"OMNIEMBED_SERVE_MODELS": str(clip_dir), "OMNIEMBED_JOINT_MODEL": str(clip_dir),
           "OMNIEMBED_RUNTIME": "torch", "OMNIEMBED_JOB_LEASE_SEC": "1", "OMNIEMBED_JOB_CONCURRENCY": "1"}
    data = tmp_path / "data"
    uploads = data / "twelvelabs-uploads"
    store = f"sqlite:///{data / 'jobs.sqlite3'}"
    form = {"model_name": "marengo3.0", "video_clip_length": "4", "video_embedding_option": ["visual"],
            "video_embedding_scope": ["clip", "video"]}

    def create(server: Server) -> str:
        answer = httpx.post(f"{server.url}/v1.3/embed/tasks", data=form, files={"video_file": ("v.mp4", video)})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["_id"])

    servers: list[Server] = []
    try:
        first = Server(data, settings.cache_dir, **env, **_crashing(tmp_path / "hook", "before-commit")).start()
        servers.append(first)
        task = create(first)
        assert _died(first) == 137
        row = job_rows(store)[task]
        assert (row["status"], row["completions"]) == ("running", 0)  # embedded, never committed
        kept = list(uploads.iterdir())
        assert len(kept) == 1  # still there for the next server (the old code had removed it)
        upload = kept[0]

        second = Server(data, settings.cache_dir, **env, **_crashing(tmp_path / "hook", "after-commit")).start()
        servers.append(second)
        assert _died(second) == 137  # it resumed the task (expired lease) and died right after committing it
        row = job_rows(store)[task]
        assert (row["status"], row["runs"], row["completions"]) == ("complete", 2, 1)
        assert upload.exists()  # the server died before it removed the file
        aged = time.time() - 3600  # older than the sweep's grace
        os.utime(upload, (aged, aged))
        orphan, fresh = uploads / "no-task.bin", uploads / "fresh.bin"
        orphan.write_bytes(b"x")
        os.utime(orphan, (aged, aged))
        fresh.write_bytes(b"y")

        third = Server(data, settings.cache_dir, **env).start()
        servers.append(third)
        client = TwelveLabs(api_key="unused", base_url=f"{third.url}/v1.3")
        deadline = time.monotonic() + 30
        while upload.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.name for p in uploads.iterdir()) == ["fresh.bin"]  # swept at start; the fresh file kept
        assert client.embed.tasks.status(task).status == "ready"
        again = create(third)
        assert client.embed.tasks.wait_for_done(again, sleep_interval=0.1).status == "ready"
        got, want = _vectors(client, task), _vectors(client, again)
        assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want] == [(0, 4), (4, 8), (8, 12), (0, 12)]
        for (_, _, a), (_, _, b) in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        deadline = time.monotonic() + 30  # the second task's upload goes once its outcome is committed
        while len(list(uploads.iterdir())) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.name for p in uploads.iterdir()) == ["fresh.bin"]
    finally:
        for server in servers:
            if server.proc is not None:
                server.stop()
