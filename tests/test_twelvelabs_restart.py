"""A TwelveLabs video task survives its server: ``omniembed serve`` is killed (SIGKILL) while it runs a task,
a new server starts on the same job store and data folder, and both that task and a queued task whose video
was uploaded (kept on disk) complete, each exactly once."""

from __future__ import annotations

import time
from pathlib import Path

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
        assert list((data / "twelvelabs-uploads").iterdir()) == []  # removed once its task finished
    finally:
        for server in (first, second):
            if server is not None and server.proc is not None:
                server.stop()

