"""One space under Marengo names: which joint model ``OMNIEMBED_JOINT_MODEL`` resolves to, and a server
without one (it warns at start, names the per-modality models that serve each call, and refuses what
needs one space with TwelveLabs' error). In process (the app's own lifespan), with the real minilm and
efficientnet-lite0 weights."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import omniembed
from image_data import photo, png_bytes, save_tiny_clip
from omniembed.service.app import create_app
from omniembed.service.twelvelabs.embed import resolve_joint


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _engine(settings: omniembed.Settings, **changes: object) -> omniembed.Engine:
    return omniembed.Engine(settings.model_copy(update=changes))


def test_the_joint_model_setting(settings: omniembed.Settings, clip_dir: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    # auto: a text-and-image model whose weights are here; the operator's start-up CLIP folder counts
    assert resolve_joint(_engine(settings, serve_models=[str(clip_dir)], joint_model="auto")) == str(clip_dir)
    assert resolve_joint(_engine(settings, serve_models=["minilm"], joint_model="auto")) is None  # no CLIP here
    assert resolve_joint(_engine(settings, joint_model=str(clip_dir))) == str(clip_dir)
    assert resolve_joint(_engine(settings, serve_models=[str(clip_dir)], joint_model="none")) is None
    with caplog.at_level(logging.ERROR):
        assert resolve_joint(_engine(settings, joint_model="minilm")) is None  # text only: not joint
        assert resolve_joint(_engine(settings, joint_model="no-such-model")) is None
    assert "embeds text, not both text and images" in caplog.text
    assert "no-such-model" in caplog.text


def test_without_a_joint_model(settings: omniembed.Settings, tmp_path: Path,
                               caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings.model_copy(update={"data_dir": tmp_path, "joint_model": "none",
                                                 "serve_models": [], "runtime": "torch"}))
    image = png_bytes(photo("astronaut"))
    with caplog.at_level(logging.WARNING, logger="omniembed.service"), TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = client.post("/v1.3/embed", data={"model_name": "marengo3.0", "text": "an astronaut"},
                        files={"image_file": ("a.png", image, "image/png")})
        assert r.status_code == 200, r.text
        assert r.headers["x-omniembed-model"] == "minilm, efficientnet-lite0"
        body = r.json()
        assert len(body["text_embedding"]["segments"][0]["float"]) == 384
        assert len(body["image_embedding"]["segments"][0]["float"]) == 1280  # another space entirely

        v2 = client.post("/v1.3/embed-v2", json={"input_type": "image", "model_name": "marengo3.0",
                                                 "image": {"media_source": {"base64_string":
                                                                            base64.b64encode(image).decode()}}})
        assert v2.status_code == 200 and v2.headers["x-omniembed-model"] == "efficientnet-lite0"

        both = client.post("/v1.3/embed-v2", json={
            "input_type": "text_image", "model_name": "marengo3.0",
            "text_image": {"input_text": "an astronaut", "media_source": {"base64_string":
                                                                          base64.b64encode(image).decode()}}})
        assert both.status_code == 400
        assert both.json()["code"] == "parameter_invalid" and "OMNIEMBED_JOINT_MODEL" in both.json()["message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no joint text-image model" in w and "Cross-modal similarity needs a joint model" in w
               for w in warnings)


def test_in_process_client_uses_the_joint_model(settings: omniembed.Settings, clip_dir: Path) -> None:
    client = omniembed.Client(settings=settings.model_copy(update={"joint_model": str(clip_dir),
                                                                   "runtime": "torch"}))
    got = client.embed.create(model_name="marengo3.0", text="an astronaut", image_file=png_bytes(photo("astronaut")))
    assert got.text_embedding is not None and got.image_embedding is not None
    text, image = got.text_embedding.segments, got.image_embedding.segments
    assert text and image and len(text[0].float_ or []) == len(image[0].float_ or []) == 24
