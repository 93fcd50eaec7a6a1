"""TwelveLabs' video embedding tasks (v1 ``client.embed.tasks``) and Embed v2 (``client.embed.v_2``), driven
by the official ``twelvelabs`` SDK against a real ``omniembed serve`` whose joint model is a tiny random CLIP
(saved with ``save_pretrained``, served with ``--models``). Vectors are compared with the library's own."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

import omniembed
from audio_data import AudioFiles
from conftest import cosines
from image_data import photo, png_bytes, save_tiny_clip
from service_util import Server
from video_data import VideoFiles

MODEL_HEADER = "x-omniembed-model"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> VideoFiles:
    return VideoFiles(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings, clip_dir: Path) -> Iterator[Server]:
    env = {"OMNIEMBED_SERVE_MODELS": str(clip_dir), "OMNIEMBED_JOINT_MODEL": str(clip_dir),
           "OMNIEMBED_RUNTIME": "torch"}
    srv = Server(tmp_path_factory.mktemp("tl-srv"), settings.cache_dir, **env).start()
    yield srv
    assert srv.stop() in (0, -15)


@pytest.fixture(scope="module")
def client(server: Server) -> TwelveLabs:
    return TwelveLabs(api_key="unused", base_url=f"{server.url}/v1.3")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spans(segments: list[tuple[float | None, float | None]]) -> list[tuple[float, float]]:
    return [(round(float(s or 0), 3), round(float(e or 0), 3)) for s, e in segments]


def test_v1_task_create_wait_retrieve(client: TwelveLabs, server: Server, videos: VideoFiles,
                                      engine: omniembed.Engine, clip_dir: Path) -> None:
    with videos.halves().open("rb") as f:
        task = client.embed.tasks.create(model_name="marengo3.0", video_file=f, video_clip_length=4,
                                         video_start_offset_sec=2, video_end_offset_sec=10,
                                         video_embedding_scope=["clip", "video"])
    assert task.id
    done = client.embed.tasks.wait_for_done(task.id, sleep_interval=0.1)
    assert done.status == "ready" and done.model_name == "marengo3.0"
    assert done.video_embedding is not None and done.video_embedding.metadata is not None
    assert done.video_embedding.metadata.video_clip_length == 4

    raw = client.embed.tasks.with_raw_response.retrieve(task.id)
    assert raw.headers[MODEL_HEADER] == f"{clip_dir}, sfx-cnn"  # frames: the joint model; the sound: audio
    assert raw.data.video_embedding is not None
    segments = raw.data.video_embedding.segments or []
    visual = [s for s in segments if s.embedding_option == "visual"]
    audio = [s for s in segments if s.embedding_option == "audio"]
    assert [s.embedding_scope for s in visual] == ["clip", "clip", "video"]
    assert _spans([(s.start_offset_sec, s.end_offset_sec) for s in visual]) == [(2, 6), (6, 10), (2, 10)]
    assert _spans([(s.start_offset_sec, s.end_offset_sec) for s in audio if s.embedding_scope == "clip"]) == [
        (2, 6), (6, 10)]

    ref = engine.embed_batch(str(clip_dir), videos=[videos.halves()], segment_sec=4, start_offset_sec=2,
                             end_offset_sec=10, runtime="torch")[0]
    got = np.array([s.float_ for s in visual[:2]])
    assert cosines(got, ref.data).min() >= 0.9999
    assert cosines(np.array(visual[2].float_), ref.vector) >= 0.9999

    only_visual = client.embed.tasks.retrieve(task.id, embedding_option=["visual"])
    assert only_visual.video_embedding is not None
    assert {s.embedding_option for s in only_visual.video_embedding.segments or []} == {"visual"}


def test_v1_task_status_list_and_errors(client: TwelveLabs, server: Server, videos: VideoFiles) -> None:
    with videos.silent().open("rb") as f:  # no sound track: the default options embed its frames only
        first = client.embed.tasks.create(model_name="marengo3.0", video_file=f)
    with videos.halves().open("rb") as f:
        second = client.embed.tasks.create(model_name="marengo3.0", video_file=f, video_clip_length=6)
    for task in (first, second):
        assert client.embed.tasks.wait_for_done(task.id, sleep_interval=0.1).status == "ready"
    silent = client.embed.tasks.retrieve(first.id).video_embedding
    assert silent is not None and silent.segments is not None
    assert [(s.embedding_option, s.start_offset_sec, s.end_offset_sec) for s in silent.segments] == [
        ("visual", 0, 6), ("visual", 6, 12)]

    pages = list(client.embed.tasks.list(page_limit=1).iter_pages())
    ids = [t.id for page in pages for t in page.items or []]
    assert ids[:2] == [second.id, first.id]  # newest first, one per page, every page reached
    body = httpx.get(f"{server.url}/v1.3/embed/tasks", params={"page_limit": 2}).json()
    assert body["page_info"]["total_results"] == len(ids) and body["page_info"]["limit_per_page"] == 2
    assert httpx.get(f"{server.url}/v1.3/embed/tasks", params={"status": "failed"}).json()["data"] == []

    with pytest.raises(ApiError) as missing:
        client.embed.tasks.status("no-such-task")
    assert missing.value.status_code == 404 and missing.value.body["code"] == "resource_not_exist"
    with pytest.raises(ApiError) as bad:
        client.embed.tasks.create(model_name="marengo3.0", video_url="https://example.com/v.mp4",
                                  video_clip_length=1)
    assert bad.value.status_code == 400 and bad.value.body["code"] == "parameter_invalid"
    assert "video_clip_length" in bad.value.body["message"]
    # a file that is no video: the task fails with the reason (and the server stays up)
    broken = client.embed.tasks.create(model_name="marengo3.0", video_file=("x.mp4", VideoFiles.not_video()))
    status = client.embed.tasks.wait_for_done(broken.id, sleep_interval=0.1)
    assert status.status == "failed"
    assert httpx.get(f"{server.url}/v1.3/embed/tasks/{broken.id}").json()["error"]["code"] == "input_unreadable"


def test_embed_v2_every_input_type(client: TwelveLabs, server: Server, videos: VideoFiles, engine: omniembed.Engine,
                                   clip_dir: Path, tmp_path: Path) -> None:
    image = png_bytes(photo("astronaut"))
    text = "an astronaut in a white suit"
    t_ref = engine.embed(str(clip_dir), text=text, runtime="torch").vector
    i_ref = engine.embed(str(clip_dir), image=image, runtime="torch").vector

    raw = client.embed.v_2.with_raw_response.create(input_type="text", model_name="marengo3.0",
                                                    text={"input_text": text})
    assert raw.headers[MODEL_HEADER] == str(clip_dir)
    assert cosines(np.array(raw.data.data[0].embedding), t_ref) >= 0.9999

    got = client.embed.v_2.create(input_type="image", model_name="marengo3.0",
                                  image={"media_source": {"base64_string": _b64(image)}})
    assert cosines(np.array(got.data[0].embedding), i_ref) >= 0.9999

    both = client.embed.v_2.create(input_type="text_image", model_name="marengo3.0",
                                   text_image={"input_text": text, "media_source": {"base64_string": _b64(image)}})
    joined = t_ref / np.linalg.norm(t_ref) + i_ref / np.linalg.norm(i_ref)
    assert cosines(np.array(both.data[0].embedding), joined) >= 0.9999

    wav = AudioFiles(tmp_path).halves()  # 30 s: a tone, then noise
    raw_audio = client.embed.v_2.with_raw_response.create(
        input_type="audio", model_name="marengo3.0",
        audio={"media_source": {"base64_string": _b64(wav.read_bytes())}, "start_sec": 6,
               "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": 10}}, "embedding_scope": ["clip"]})
    assert raw_audio.headers[MODEL_HEADER] == "sfx-cnn"
    assert _spans([(d.start_sec, d.end_sec) for d in raw_audio.data.data]) == [(6, 16), (16, 26), (26, 30)]
    assert {d.embedding_option for d in raw_audio.data.data} == {"audio"}

    raw_video = client.embed.v_2.with_raw_response.create(
        input_type="video", model_name="marengo3.0",
        video={"media_source": {"base64_string": _b64(videos.halves().read_bytes())}, "end_sec": 9,
               "embedding_option": ["visual"]})
    assert raw_video.headers[MODEL_HEADER] == str(clip_dir)
    data = raw_video.data.data
    assert [(d.embedding_scope, d.embedding_option) for d in data] == [("clip", "visual")] * 2 + [("asset", "visual")]
    assert _spans([(d.start_sec, d.end_sec) for d in data]) == [(0, 6), (6, 9), (0, 9)]
    assert raw_video.data.metadata is not None and raw_video.data.metadata.input_type == "video"

    # Marengo's 77-token limit holds for the joint model too
    with pytest.raises(ApiError) as long:
        client.embed.v_2.create(input_type="text", model_name="marengo3.0", auto_truncate=False,
                                text={"input_text": "word " * 100})
    assert long.value.status_code == 400 and "77" in long.value.body["message"]


def test_marengo_text_and_image_share_the_joint_model(server: Server, clip_dir: Path) -> None:
    form = {"model_name": "Marengo-retrieval-2.7", "text": "a photo of an astronaut"}
    r = httpx.post(f"{server.url}/v1.3/embed", data=form,
                   files={"image_file": ("a.png", png_bytes(photo("astronaut")), "image/png")})
    assert r.status_code == 200, r.text
    assert r.headers[MODEL_HEADER] == str(clip_dir)
    body = r.json()
    t, i = body["text_embedding"]["segments"][0]["float"], body["image_embedding"]["segments"][0]["float"]
    assert len(t) == len(i) == 24


def test_unservable_input_types_get_twelvelabs_errors(client: TwelveLabs, server: Server) -> None:
    cases = [
        {"input_type": "document", "model_name": "marengo3.5"},
        {"input_type": "multi_input", "model_name": "marengo3.5",
         "multi_input": {"media_sources": [{"media_type": "video", "url": "https://example.com/v.mp4"}]}},
        {"input_type": "video", "model_name": "marengo3.0",
         "video": {"media_source": {"url": "https://example.com/v.mp4"}, "embedding_option": ["transcription"]}},
        {"input_type": "image", "model_name": "marengo3.0", "image": {"media_source": {"asset_id": "abc"}}},
    ]
    for body in cases:
        r = httpx.post(f"{server.url}/v1.3/embed-v2", json=body)
        assert r.status_code == 400, body
        assert set(r.json()) == {"code", "message"} and r.json()["code"] == "parameter_invalid"
    with pytest.raises(ApiError) as sdk:
        client.embed.v_2.create(input_type="document", model_name="marengo3.5")
    assert sdk.value.status_code == 400 and sdk.value.body["code"] == "parameter_invalid"


def test_v2_tasks_video(client: TwelveLabs, server: Server, videos: VideoFiles, clip_dir: Path) -> None:
    created = client.embed.v_2.tasks.create(
        input_type="video", model_name="marengo3.0",
        video={"media_source": {"base64_string": _b64(videos.halves().read_bytes())},
               "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": 5}}, "embedding_scope": ["clip"]})
    assert created.status == "processing"
    for _ in range(600):
        task = client.embed.v_2.tasks.retrieve(created.id)
        if task.status != "processing":
            break
        time.sleep(0.1)
    assert task.status == "ready" and task.data is not None
    visual = [d for d in task.data if d.embedding_option == "visual"]
    assert _spans([(d.start_sec, d.end_sec) for d in visual]) == [(0, 5), (5, 10), (10, 12)]
    assert {d.embedding_option for d in task.data} == {"visual", "audio"}
    assert task.metadata is not None and task.metadata.input_type == "video"
    listed = [t.id for t in client.embed.v_2.tasks.list(page_limit=5)]
    assert created.id in listed
    r = httpx.get(f"{server.url}/v1.3/embed-v2/tasks/{created.id}")
    assert r.headers[MODEL_HEADER] == f"{clip_dir}, sfx-cnn"
    # v1 and v2 tasks are separate: the v1 routes do not show a v2 task
    assert httpx.get(f"{server.url}/v1.3/embed/tasks/{created.id}").status_code == 404
