"""Images and audio through every face of the real server, equal to the library's embed: the twelvelabs SDK
(image_file, audio_file with a start offset), OpenAI's modality extension, and FES image/audio jobs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from twelvelabs import TwelveLabs

import omniembed
from audio_data import AudioFiles, have_espeak
from image_data import photo, png_bytes
from service_util import Server, wait_for_job

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is installed by `make test`")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("media-srv"), settings.cache_dir,
                 OMNIEMBED_SERVE_MODELS="efficientnet-lite0,speaker-ge2e").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cat_png() -> bytes:
    return png_bytes(photo("chelsea"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return AudioFiles(tmp_path_factory.mktemp("media-audio")).speech("a", 0)


def test_twelvelabs_sdk_image_and_audio(server: Server, engine: omniembed.Engine, cat_png: bytes,
                                        speech: Path) -> None:
    client = TwelveLabs(api_key="unused", base_url=f"{server.url}/v1.3")
    image = client.embed.create(model_name="efficientnet-lite0", image_file=("cat.png", cat_png))
    expected_image = engine.embed("efficientnet-lite0", image=cat_png).data
    np.testing.assert_allclose(image.image_embedding.segments[0].float_, expected_image, atol=1e-4)
    assert image.image_embedding.metadata.input_filename == "cat.png"

    with speech.open("rb") as fh:
        audio = client.embed.create(model_name="speaker-ge2e", audio_file=fh, audio_start_offset_sec=0.5)
    expected = engine.embed("speaker-ge2e", audio=speech.read_bytes(), start_offset_sec=0.5)
    segments = audio.audio_embedding.segments
    assert len(segments) == len(expected.meta.segments) > 1
    for got, row, seg in zip(segments, expected.data, expected.meta.segments, strict=True):
        np.testing.assert_allclose(got.float_, row, atol=1e-4)
        assert (got.start_offset_sec, got.end_offset_sec) == pytest.approx((seg.start_sec, seg.end_sec))
    assert segments[0].start_offset_sec == pytest.approx(0.5)


def test_twelvelabs_text_image_audio_in_one_call(server: Server, cat_png: bytes, speech: Path) -> None:
    """Marengo name: each modality uses its default model; all three answer in one response."""
    r = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "Marengo-retrieval-2.7", "text": "a cat"},
                   files={"image_file": ("cat.png", cat_png), "audio_file": ("talk.wav", speech.read_bytes())},
                   timeout=120)  # the first call loads (and exports) the default audio model
    body = r.json()
    assert r.status_code == 200, body
    assert len(body["text_embedding"]["segments"][0]["float"]) == 384
    assert len(body["image_embedding"]["segments"][0]["float"]) == 1280
    assert body["audio_embedding"]["segments"][0]["start_offset_sec"] == 0
    assert body["audio_embedding"]["metadata"] == {"input_filename": "talk.wav"}


def test_openai_image_and_audio_extension(server: Server, engine: omniembed.Engine, cat_png: bytes,
                                          speech: Path) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    data_url = "data:image/png;base64," + base64.b64encode(cat_png).decode()
    got = client.embeddings.create(model="efficientnet-lite0", input=[data_url], extra_body={"modality": "image"})
    np.testing.assert_allclose(got.data[0].embedding, engine.embed("efficientnet-lite0", image=cat_png).data,
                               atol=1e-4)
    wav_url = "data:audio/wav;base64," + base64.b64encode(speech.read_bytes()).decode()
    got = client.embeddings.create(model="speaker-ge2e", input=wav_url, extra_body={"modality": "audio"})
    np.testing.assert_allclose(got.data[0].embedding, engine.embed("speaker-ge2e", audio=speech.read_bytes()).pooled,
                               atol=1e-4)




def test_fes_image_and_audio_jobs(server: Server, engine: omniembed.Engine, cat_png: bytes, speech: Path) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(cat_png).decode()
    job = httpx.post(f"{server.url}/api/tasks/image-embedding/efficientnet_lite0/jobs", json={"image": data_url})
    done = wait_for_job(f"{server.url}/api/tasks/image-embedding/jobs/{job.json()['id']}", timeout=60)
    np.testing.assert_allclose(done["result"]["embedding"], engine.embed("efficientnet-lite0", image=cat_png).data,
                               atol=1e-4)
    wav_url = "data:audio/wav;base64," + base64.b64encode(speech.read_bytes()).decode()
    job = httpx.post(f"{server.url}/api/tasks/audio-embedding/speaker-ge2e/jobs", json={"audio": wav_url})
    done = wait_for_job(f"{server.url}/api/tasks/audio-embedding/jobs/{job.json()['id']}", timeout=60)
    expected = engine.embed("speaker-ge2e", audio=speech.read_bytes()).pooled
    np.testing.assert_allclose(done["result"]["embedding"], expected, atol=1e-4)
    # a local path is never read from an HTTP input
    job = httpx.post(f"{server.url}/api/tasks/image-embedding/efficientnet-lite0/jobs", json={"image": "/etc/passwd"})
    failed = wait_for_job(f"{server.url}/api/tasks/image-embedding/jobs/{job.json()['id']}", timeout=60)
    assert failed["status"] == "failed" and "local file paths are not accepted" in failed["reason"]
