"""In-process app checks (FastAPI's TestClient runs the real app and lifespan): API keys, body limits,
a full queue's 429, error shapes per protocol, no stack traces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import omniembed
from omniembed.service import create_app


def _client(tmp_path: Path, cache_dir: Path, **overrides: object) -> TestClient:
    settings = omniembed.Settings(cache_dir=cache_dir, data_dir=tmp_path, hub_offline=True, **overrides)
    return TestClient(create_app(settings))


@pytest.fixture
def keyed(tmp_path: Path, cache_dir: Path) -> Iterator[TestClient]:
    with _client(tmp_path, cache_dir, api_keys=["s3cret"]) as client:
        yield client


def test_api_keys(keyed: TestClient) -> None:
    body = {"model": "minilm", "input": "x"}
    r = keyed.post("/v1/embeddings", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
    assert keyed.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert keyed.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = keyed.post("/v1.3/embed", data={"model_name": "minilm", "text": "x"}, headers={"x-api-key": "s3cret"})
    assert r.status_code == 200
    r = keyed.post("/v1.3/embed", data={"model_name": "minilm", "text": "x"})
    assert r.status_code == 401 and r.json()["code"] == "api_key_invalid"  # TwelveLabs' error shape
    assert keyed.get("/health").status_code == 200  # liveness stays open


def test_body_limit(tmp_path: Path, cache_dir: Path) -> None:
    with _client(tmp_path, cache_dir, max_body_bytes=2000) as client:
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": "x" * 5000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "input_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"model": "minilm", "input": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = client.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_error_shapes_and_no_stack_traces(tmp_path: Path, cache_dir: Path) -> None:
    with _client(tmp_path, cache_dir) as client:
        r = client.post("/v1/embeddings", json={"input": "x"})  # model missing
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": [100277]})  # not a cl100k_base token
        assert r.status_code == 400 and "check_embedding_ctx_length=False" in r.json()["error"]["message"]
        r = client.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = client.get("/nowhere")
        assert r.status_code == 404
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": "x", "modality": "image"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"  # minilm embeds no images
        assert r.json()["error"]["param"] == "model" and "Traceback" not in r.text
        # local paths are never read from HTTP inputs, whatever the modality
        r = client.post("/api/legacy/tasks/text-embedding/minilm/jobs", json={"text": "fine"})
        assert r.status_code == 200 and len(r.json()["embedding"]) == 384


def test_readiness_reports_a_model_that_failed(tmp_path: Path, cache_dir: Path) -> None:
    with _client(tmp_path, cache_dir, serve_models=["no-such-model"]) as client:
        assert client.get("/health").status_code == 200
        for _ in range(600):  # "loading" until the start-up tried the model, then "failed" (never "loading" again)
            r = client.get("/ready")
            if r.json()["status"] != "loading":
                break
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert [f["model"] for f in r.json()["failed"]] == ["no-such-model"]
