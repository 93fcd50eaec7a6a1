"""The real server (uvicorn on 127.0.0.1) driven by the official openai and twelvelabs clients and httpx;
every face returns the library's vectors for the same input."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

import omniembed
from omniembed.embedding import Modality
from service_util import Server, wait_for_job

TEXTS = ["a cat sits on the mat", "Die Katze sitzt auf der Matte.", "the stock market fell sharply"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("srv"), settings.cache_dir).start()
    yield srv
    assert srv.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


@pytest.fixture(scope="module")
def expected(engine: omniembed.Engine) -> np.ndarray:
    return np.stack([e.data for e in engine.embed_batch("minilm", TEXTS)])


def test_openai_client(server: Server, expected: np.ndarray, engine: omniembed.Engine) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    response = client.embeddings.create(model="minilm", input=TEXTS)  # the client asks for base64 by default
    got = np.array([d.embedding for d in response.data], np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [d.index for d in response.data] == [0, 1, 2]
    assert response.model == "minilm" and response.usage.prompt_tokens > 10
    single = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-5)
    runnable = {Modality.TEXT, Modality.IMAGE, Modality.AUDIO}  # models whose weights are here, no geo models
    assert [m.id for m in client.models.list()] == [
        s.name for s in engine.available_specs() if runnable & set(s.modalities)]


def test_openai_errors(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as nf:
        client.embeddings.create(model="no-such-model", input="x")
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="minilm", input=["fine", ""])
    assert "input[1]" in bad.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model="minilm", input="x", dimensions=8)


def test_openai_base64_is_little_endian_float32(server: Server, expected: np.ndarray) -> None:
    body = httpx.post(f"{server.url}/v1/embeddings",
                      json={"model": "minilm", "input": TEXTS[1], "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(vector, expected[1], atol=1e-5)


def test_twelvelabs_sdk_text(server: Server, expected: np.ndarray) -> None:
    client = TwelveLabs(api_key="unused", base_url=f"{server.url}/v1.3")
    result = client.embed.create(model_name="minilm", text=TEXTS[0])
    assert result.model_name == "minilm" and result.image_embedding is None
    np.testing.assert_allclose(result.text_embedding.segments[0].float_, expected[0], atol=1e-5)
    marengo = client.embed.create(model_name="Marengo-retrieval-2.7", text=TEXTS[2])  # maps to the default model
    np.testing.assert_allclose(marengo.text_embedding.segments[0].float_, expected[2], atol=1e-5)


def test_twelvelabs_errors(server: Server) -> None:
    client = TwelveLabs(api_key="unused", base_url=f"{server.url}/v1.3")
    with pytest.raises(ApiError) as none_given:
        client.embed.create(model_name="minilm")
    assert none_given.value.status_code == 400 and none_given.value.body["code"] == "parameter_not_provided"
    with pytest.raises(ApiError) as unknown:
        client.embed.create(model_name="nope", text="x")
    assert unknown.value.status_code == 404 and unknown.value.body["code"] == "resource_not_exist"
    r = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "minilm", "text": "x", "text_truncate": "mid"})
    assert r.status_code == 400 and r.json() == {
        "code": "parameter_invalid",
        "message": "The text_truncate parameter is invalid. You should use one of the following values: "
        "none, start, end.",
    }
    long_text = "word " * 400
    form = {"model_name": "minilm", "text": long_text, "text_truncate": "none"}
    r = httpx.post(f"{server.url}/v1.3/embed", data=form)
    assert r.status_code == 400 and "256" in r.json()["message"]


def test_twelvelabs_one_failed_modality_does_not_sink_the_others(server: Server, expected: np.ndarray) -> None:
    """minilm embeds no images: the image part fails with its message, the text part still answers."""
    r = httpx.post(f"{server.url}/v1.3/embed",
                   data={"model_name": "minilm", "text": TEXTS[0], "image_url": "https://example.org/cat.png"})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["text_embedding"]["segments"][0]["float"], expected[0], atol=1e-5)
    assert "does not embed image" in body["image_embedding"]["error_message"]
    assert body["image_embedding"]["metadata"] == {"input_url": "https://example.org/cat.png"}




def test_fes_jobs(server: Server, expected: np.ndarray) -> None:
    created = httpx.post(f"{server.url}/api/tasks/text-embedding/minilm/jobs", json={"text": TEXTS[1], "config": {}})
    assert created.status_code == 200 and created.json()["status"] == "starting"
    done = wait_for_job(f"{server.url}/api/tasks/text-embedding/jobs/{created.json()['id']}")
    assert done["status"] == "complete"
    np.testing.assert_allclose(done["result"]["embedding"], expected[1], atol=1e-5)
    batched = httpx.post(f"{server.url}/api/tasks/text-embedding/batched/all-minilm-l6-v2/jobs", json={"text": TEXTS})
    done = wait_for_job(f"{server.url}/api/tasks/text-embedding/batched/jobs/{batched.json()['id']}")
    np.testing.assert_allclose([r["embedding"] for r in done["result"]], expected, atol=1e-5)
    legacy = httpx.post(f"{server.url}/api/legacy/tasks/text-embedding/minilm/jobs", json={"text": TEXTS[2]})
    np.testing.assert_allclose(legacy.json()["embedding"], expected[2], atol=1e-5)


def test_fes_failures(server: Server) -> None:
    url = server.url + "/api"
    created = httpx.post(f"{url}/tasks/text-embedding/minilm/jobs", json={"text": TEXTS[0]}).json()
    assert httpx.get(f"{url}/tasks/text-embedding/jobs/nope").status_code == 404
    missing = httpx.post(f"{url}/tasks/text-embedding/minilm/jobs", json={"image": "x"})
    assert missing.status_code == 400 and missing.json()["code"] == "parameter_not_provided"
    # a text job's id is not an image job
    assert httpx.get(f"{url}/tasks/image-embedding/jobs/{created['id']}").status_code == 404


def test_fes_answers_what_its_task_routes_say(server: Server) -> None:
    """FES registers a route per task (and model), each with its own body: a task that does not exist, or a
    model that does not do the task, is no route (404); a body the route's schema allows is accepted, and one
    it does not (a blank text, an empty URL) is refused when the job is submitted, not when it runs."""
    url = server.url + "/api"
    for route in ("tasks/no-task/minilm/jobs", "tasks/no-task/batched/minilm/jobs", "legacy/tasks/no-task/minilm/jobs"):
        r = httpx.post(f"{url}/{route}", json={"text": "x"})
        assert (r.status_code, r.json()) == (404, {
            "detail": "no task 'no-task'; tasks: text-embedding, image-embedding, audio-embedding",
            "code": "resource_not_exist"}), route
    wrong_task = {"detail": "model 'minilm' does not do the image-embedding task (its tasks: text-embedding); GET "
                            "/api/tasks/image-embedding/models lists the models that do", "code": "model_not_found"}
    for route in ("tasks/image-embedding/minilm/jobs", "legacy/tasks/image-embedding/minilm/jobs"):
        r = httpx.post(f"{url}/{route}", json={"image": "data:image/png;base64,iVBORw0KGgo="})
        assert (r.status_code, r.json()) == (404, wrong_task), route
    blank = {"text": "   "}, {"text": ["a cat", " \n"]}, {"image": ""}
    routes = "tasks/text-embedding/minilm/jobs", "tasks/text-embedding/batched/minilm/jobs", \
        "tasks/image-embedding/efficientnet-lite0/jobs"
    details = ("'text' is empty or only whitespace; send text to embed",
               "'text' item 1 is empty or only whitespace; send text to embed",
               "'image' is empty; send a data URL or an http(s) URL")
    for body, route, detail in zip(blank, routes, details, strict=True):
        r = httpx.post(f"{url}/{route}", json=body)
        assert (r.status_code, r.json()) == (400, {"detail": detail, "code": "parameter_invalid"}), route
    schema = httpx.get(server.url + "/openapi.json").json()
    assert not [p for p in schema["paths"] if p.startswith(("/api/tasks/{task}/{model}", "/api/legacy/tasks/{task}"))]
    text_job = schema["paths"]["/api/tasks/text-embedding/batched/{model}/jobs"]["post"]["requestBody"]
    body = text_job["content"]["application/json"]["schema"]
    assert body["required"] == ["text"] and body["properties"]["text"]["minItems"] == 1
    config = body["properties"]["config"]["anyOf"][0]
    assert config["additionalProperties"] is False and set(config["properties"]) == {
        "truncate", "normalize", "pooling", "start_offset_sec", "segment_sec", "overlap_sec"}


def test_ops_routes(server: Server) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready", "models": ["minilm"], "failed": []}
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in ("omniembed_requests_total", "omniembed_batch_size_bucket", "omniembed_queue_depth",
                 "omniembed_items_embedded_total", 'omniembed_jobs{status="complete"}'):
        assert name in metrics
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "omniembed"


def test_client_in_process_and_over_http_agree(server: Server, expected: np.ndarray, cache_dir: Path) -> None:
    local = omniembed.Client(settings=omniembed.Settings(cache_dir=cache_dir))
    remote = omniembed.Client(server.url)
    for client in (local, remote):
        result = client.embed.create(model_name="minilm", text=TEXTS[0])
        np.testing.assert_allclose(result.text_embedding.segments[0].float_, expected[0], atol=1e-5)
        with pytest.raises(omniembed.ParameterNotProvided):
            client.embed.create(model_name="minilm")
        with pytest.raises(omniembed.ModelNotFound):
            client.embed.create(model_name="nope", text="x")
