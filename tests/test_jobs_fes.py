"""feature-extraction-server routes around jobs: per-key job visibility, the task/model listings and model
status (FES's base API shapes), batched jobs on the plain route, and the batched error format."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import omniembed
from corpus import LONG_PARAGRAPH
from service_util import Server

KEY_A, KEY_B = "key-a-0123456789", "key-b-9876543210"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"x-api-key": KEY_B}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("fes"), settings.cache_dir, OMNIEMBED_API_KEYS=f"{KEY_A},{KEY_B}",
                    OMNIEMBED_JOB_CONCURRENCY="2").start()
    yield server
    server.stop()


def _get(server: Server, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30)


def _post(server: Server, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    # json.dumps escapes lone surrogates (the poison inputs below) as JSON allows; httpx's json= cannot
    return httpx.post(f"{server.url}{path}", content=json.dumps(body), timeout=30,
                      headers={**headers, "content-type": "application/json"})


def _finished(server: Server, path: str, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = _get(server, path, headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("complete", "failed"):
            return dict(r.json())
        time.sleep(0.05)
    raise AssertionError(f"{path} did not finish")


def test_a_job_is_visible_only_to_the_key_that_created_it(server: Server) -> None:
    job = _post(server, "/api/tasks/text-embedding/minilm/jobs", {"text": "a cat sits on the mat"}, A).json()
    path = f"/api/tasks/text-embedding/jobs/{job['id']}"
    done = _finished(server, path, A)
    assert done["status"] == "complete" and len(done["result"]["embedding"]) == 384
    assert _get(server, path, {"x-api-key": KEY_A}).json() == done  # either header form names key A

    theirs = _get(server, path, B)
    unknown = _get(server, "/api/tasks/text-embedding/jobs/00000000-0000-0000-0000-000000000000", B)
    assert theirs.status_code == unknown.status_code == 404  # exactly like a job that does not exist
    assert theirs.json()["code"] == unknown.json()["code"] == "resource_not_exist"
    assert _get(server, path, {"Authorization": f"Bearer {KEY_B}"}).status_code == 404
    assert _get(server, path, {}).status_code == 401

    batched = _post(server, "/api/tasks/text-embedding/batched/minilm/jobs", {"text": ["x", "y"]}, B).json()
    batched_path = f"/api/tasks/text-embedding/batched/jobs/{batched['id']}"
    assert len(_finished(server, batched_path, B)["result"]) == 2
    assert _get(server, batched_path, A).status_code == 404

    # a model's status lists only the caller's own unfinished jobs
    texts = [f"{LONG_PARAGRAPH} ({k})" for k in range(4)]
    mine = {_post(server, "/api/tasks/text-embedding/batched/minilm/jobs", {"text": texts}, A).json()["id"]
            for _ in range(3)}
    others = {_post(server, "/api/tasks/text-embedding/batched/minilm/jobs", {"text": texts}, B).json()["id"]
              for _ in range(3)}
    status = _get(server, "/api/models/minilm/status", A).json()
    assert status["status"] == "running"
    listed = {j["id"] for j in status["jobs"]}
    assert listed and listed <= mine and not listed & others
    assert all(j["status"] in ("starting", "running") for j in status["jobs"])
    for job_id in mine:  # leave the server idle for the next test
        _finished(server, f"/api/tasks/text-embedding/batched/jobs/{job_id}", A)
    for job_id in others:
        _finished(server, f"/api/tasks/text-embedding/batched/jobs/{job_id}", B)


def test_task_and_model_listings(server: Server) -> None:
    tasks = _get(server, "/api/tasks", A).json()
    assert tasks == ["text-embedding", "image-embedding", "audio-embedding"]
    registry = {s.name: {str(m) for m in s.modalities} for s in omniembed.Engine().registry}
    text_models = _get(server, "/api/tasks/text-embedding/models", A).json()
    image_models = _get(server, "/api/tasks/image-embedding/models", A).json()
    assert "minilm" in text_models and "minilm" not in image_models
    assert all("text" in registry[m] for m in text_models) and all("image" in registry[m] for m in image_models)
    assert set(text_models) | set(image_models) <= set(_get(server, "/api/models", A).json())
    assert _get(server, "/api/tasks/no-task/models", A).status_code == 404

    assert _get(server, "/api/models/minilm/tasks", A).json() == ["text-embedding"]
    assert _get(server, "/api/models/all-minilm-l6-v2/tasks", A).json() == ["text-embedding"]
    assert _get(server, "/api/models/clip-vit-b32/tasks", A).json() == ["text-embedding", "image-embedding"]
    assert _get(server, "/api/models/dino_v2_vits14/tasks", A).json() == ["image-embedding"]  # FES snake_case
    assert _get(server, "/api/models/dino-v2-vits14/tasks", A).json() == ["image-embedding"]  # ... kebab-case
    assert _get(server, "/api/models/gse/tasks", A).json() == []  # geo: no FES task
    for name in ("no-such-model", "~x", "%2Fetc", "..%2F..%2Fetc"):
        r = _get(server, f"/api/models/{name}/tasks", A)
        assert r.status_code == 404, (name, r.text)

    assert _get(server, "/api/models/minilm/status", A).json()["status"] == "running"  # loaded at start-up
    assert _get(server, "/api/models/sfx-cnn/status", A).json() == {"status": "uninitialized", "jobs": []}
    assert _get(server, "/api/models/nope/status", A).status_code == 404


def test_plain_route_finds_batched_jobs_and_errors_name_positions(server: Server) -> None:
    texts = ["a cat sits on the mat", "a dog"]
    job = _post(server, "/api/tasks/text-embedding/batched/minilm/jobs", {"text": texts}, A).json()
    plain = _finished(server, f"/api/tasks/text-embedding/jobs/{job['id']}", A)
    batched = _finished(server, f"/api/tasks/text-embedding/batched/jobs/{job['id']}", A)
    assert plain == batched and plain["status"] == "complete" and len(plain["result"]) == 2

    bad = _post(server, "/api/tasks/text-embedding/batched/minilm/jobs", {"text": ["fine", "ok", "\udfff"]}, A)
    failed = _finished(server, f"/api/tasks/text-embedding/batched/jobs/{bad.json()['id']}", A)
    assert failed["status"] == "failed" and failed["index"] == 2, failed
    assert failed["reason"].startswith("item 2: ") and failed["reason"].count("item ") == 1, failed

    single = _post(server, "/api/tasks/text-embedding/minilm/jobs", {"text": "\udfff"}, A).json()
    failed = _finished(server, f"/api/tasks/text-embedding/jobs/{single['id']}", A)
    assert failed["status"] == "failed" and "index" not in failed and "item" not in failed["reason"], failed


def test_model_names_resolve_only_against_served_models(server: Server) -> None:
    """A folder name relative to the server's working directory, or a home-directory name, is no model."""
    for name in ("~x", "src", "tests"):
        for path in (f"/api/tasks/text-embedding/{name}/jobs", f"/api/legacy/tasks/text-embedding/{name}/jobs"):
            r = _post(server, path, {"text": "x"}, A)
            assert r.status_code == 404 and r.json()["code"] == "model_not_found", (path, r.text)
        assert _get(server, f"/api/models/{name}/status", A).status_code == 404
