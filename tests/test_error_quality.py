"""Errors a client can act on: bodies that do not parse are 400 ``parameter_invalid`` saying why; NaN is
refused by name; an unexpected exception is a 500 ``internal_error`` with an incident id that the log has the
traceback under; weights problems name the model and the operator's fix, never a server path; audio errors
describe the input, never a Python repr or a batch position; the OpenAPI schema documents every status and
each face's error body (and no 422)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import omniembed
from omniembed.errors import InputUnreadable, WeightsNotFound
from omniembed.inputs.audio import load_audio
from omniembed.registry import ModelSpec, WeightsSource
from omniembed.service import create_app
from omniembed.service.errors import public_message
from omniembed.weights import locate_weights

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("errors-app")
    app = create_app(settings.model_copy(update={"data_dir": data}))

    async def boom() -> None:
        raise RuntimeError("secret detail /srv/private/thing")

    app.add_api_route("/v1/boom", boom, methods=["GET"])
    app.add_api_route("/api/boom", boom, methods=["GET"])
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"{not json", "Expecting property name"), (b"[" * 100_000, "nested too deeply"), (b"\xff\xfe\xfa", "")],
)
def test_unparsable_json_is_a_clear_400(client: TestClient, body: bytes, why: str) -> None:
    for path, error in (("/v1/embeddings", lambda j: j["error"]), ("/api/legacy/tasks/text-embedding/minilm/jobs",
                                                                   lambda j: {"message": j["detail"], **j})):
        r = client.post(path, content=body, headers=JSON)
        assert r.status_code == 400, r.text
        e = error(r.json())
        assert e["code"] == "parameter_invalid" and e.get("param") is None
        assert e["message"].startswith("the request body is not valid JSON") and why in e["message"]
        assert "0: JSON decode error" not in r.text and "internal" not in r.text
    openai_type = client.post("/v1/embeddings", content=body, headers=JSON).json()["error"]["type"]
    assert openai_type == "invalid_request_error"


def test_other_body_problems(client: TestClient) -> None:
    r = client.post("/v1/embeddings", content=b"", headers=JSON)
    assert r.status_code == 400 and "missing" in r.json()["error"]["message"]
    r = client.post("/v1/embeddings", content=b"[1, 2]", headers=JSON)
    assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]["message"]
    r = client.post("/v1/embeddings", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]["param"] is None
    r = client.put("/v1/embeddings", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST" and r.json()["error"]["message"].endswith("it takes POST")
    # TwelveLabs: a file sent as a text field, in TwelveLabs' words
    r = client.post("/v1.3/embed", data={"model_name": "minilm", "text": "x", "image_file": "not a file"})
    assert r.status_code == 400 and r.json()["message"].startswith("The image_file parameter is invalid.")
    assert "UploadFile" not in r.text


def test_allow_lists_every_route_on_the_path(client: TestClient) -> None:
    """/v1.3/embed/tasks is a GET route (list) and a POST route (create): both are named."""
    for method in ("TRACE", "PUT", "DELETE"):
        r = client.request(method, "/v1.3/embed/tasks")
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}, r.headers


@pytest.mark.parametrize("path", ["/v1/models", "/api/tasks", "/v1.3/embed/tasks", "/health"])
def test_a_wrong_method_names_the_allowed_ones(client: TestClient, path: str) -> None:
    """RFC 9110: a 405 carries ``Allow`` (schemathesis' unsupported-method check sends TRACE to every route)."""
    r = client.request("TRACE", path)
    assert r.status_code == 405, r.text
    allowed = set(r.headers["allow"].replace(" ", "").split(","))
    assert allowed and allowed <= {"GET", "POST", "HEAD"} and "TRACE" not in allowed
    assert "GET" in allowed or "POST" in allowed


@pytest.mark.parametrize(("given", "message"), [
    (["a", 1], "input[1]: Input should be a valid string"),  # a list of texts whose item 1 is not a text
    (["a", "b", None], "input[2]: Input should be a valid string"),
    ([[1, 2], [3, "x"]], "input[1][1]: Input should be a valid integer"),  # token-id lists
    (5, "input: expected one of: str, list[str], list[int], list[list[int]]"),  # none of the forms at all
])
def test_a_union_field_names_the_item_at_fault(client: TestClient, given: object, message: str) -> None:
    """``input`` is a text, texts or token ids: the error names the form the client used and the item that
    breaks it, not pydantic's first branch (it said ``input.str: Input should be a valid string``)."""
    r = client.post("/v1/embeddings", json={"model": "minilm", "input": given})
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "input" and error["code"] == "parameter_invalid"
    assert error["message"].startswith(message)


def test_a_number_too_long_is_named_without_python_advice(client: TestClient) -> None:
    body = b'{"model": "minilm", "input": "x", "dimensions": ' + b"9" * 5000 + b"}"
    r = client.post("/v1/embeddings", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == "the request body is not valid JSON: a number in it is too large"
    assert "sys." not in r.text and "Error" not in r.text


def test_nan_is_refused_by_name(client: TestClient) -> None:
    body = b'{"text": "a cat", "config": {"segment_sec": NaN}}'  # Python's JSON reader accepts NaN
    r = client.post("/api/legacy/tasks/text-embedding/minilm/jobs", content=body, headers=JSON)
    assert r.status_code == 400 and r.json()["code"] == "parameter_invalid" and "segment_sec" in r.json()["detail"]
    assert "convert float NaN" not in r.text
    for value in ("nan", "inf", "-1"):
        r = client.post("/v1.3/embed", data={"model_name": "minilm", "text": "x", "audio_start_offset_sec": value})
        assert r.status_code == 400 and "audio_start_offset_sec" in r.json()["message"], r.text


def test_unexpected_errors_are_500_with_an_incident(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        r = client.get("/v1/boom", headers={"x-request-id": "client-42"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "client-42"
    error = r.json()["error"]
    assert error["code"] == "internal_error" and error["type"] == "server_error"
    assert "incident" in error["message"] and "secret" not in r.text and "Traceback" not in r.text
    incident = error["message"].split("incident ")[1].split(")")[0]
    logged = [rec for rec in caplog.records if incident in rec.getMessage()]
    assert logged and logged[0].exc_info is not None and "client-42" in logged[0].getMessage()
    fes = client.get("/api/boom")
    assert fes.status_code == 500 and fes.json()["code"] == "internal_error" and "incident" in fes.json()["detail"]
    assert len(client.get("/health").headers["x-request-id"]) == 16  # one is made when the client sends none


def test_weights_errors_name_the_model_not_server_paths(settings: omniembed.Settings, tmp_path: Path) -> None:
    spec = ModelSpec("ghost", "", (omniembed.Modality.TEXT,), 8, "mean", False,
                     WeightsSource(hub_id="nobody/ghost", local_path=tmp_path / "ghost"), "")
    offline = settings.model_copy(update={"hub_offline": True, "model_dir": tmp_path / "models"})
    with pytest.raises(WeightsNotFound) as info:
        locate_weights(spec, offline)
    error = info.value
    assert str(tmp_path) in str(error) and "omniembed models prepare ghost" in error.message  # the operator's
    assert str(tmp_path) in (error.detail or "") and str(tmp_path) not in error.message  # paths: log-only detail
    assert (error.model, error.hint) == ("ghost", "omniembed models prepare ghost")
    public = public_message(error)
    assert "'ghost'" in public and "omniembed models prepare ghost" in public
    assert str(tmp_path) not in public and "/" not in public.replace("nobody/ghost", "")


def test_weights_errors_over_http(client: TestClient, engine: omniembed.Engine, settings: omniembed.Settings) -> None:
    missing = [s.name for s in engine.served_specs()
               if omniembed.Modality.TEXT in s.modalities and not engine.weights_available(s)]
    if not missing:
        pytest.skip("every registered text model has its weights here")
    for path, body, message in (
        ("/v1/embeddings", {"json": {"model": missing[0], "input": "x"}}, lambda j: j["error"]["message"]),
        ("/v1.3/embed", {"data": {"model_name": missing[0], "text": "x"}}, lambda j: j["message"]),
    ):
        r = client.post(path, **body)  # type: ignore[arg-type]
        assert r.status_code == 503 and "weights_not_found" in r.text
        assert f"omniembed models prepare {missing[0]}" in message(r.json())
        assert str(settings.cache_dir) not in r.text and "Looked in" not in r.text


def test_audio_errors_describe_the_input(settings: omniembed.Settings, engine: omniembed.Engine) -> None:
    with pytest.raises(InputUnreadable) as info:
        load_audio(b"definitely not audio" * 4, settings)
    message = info.value.message
    assert message.startswith("the audio data (80 bytes) cannot be decoded") and "object at 0x" not in message
    with pytest.raises(InputUnreadable) as named:
        load_audio(io.BytesIO(b"garbage" * 10), settings)
    assert "object at 0x" not in named.value.message and "BytesIO" not in named.value.message
    results = engine.embed_batch("speaker-ge2e", audios=[b"junk" * 20, b"more junk" * 20], errors="return",
                                 runtime="torch")
    for i, result in enumerate(results):
        assert isinstance(result, omniembed.OmniEmbedError) and result.index == i
        assert "audios[" not in result.message and "item" not in result.message and "object at 0x" not in result.message


def test_unforeseen_decoder_failures_keep_class_names_out_of_messages(
    engine: omniembed.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder failing in an unforeseen way is the item's error: its text (no object reprs) in the message,
    the exception class only in ``detail`` (logged, never sent)."""
    from omniembed.inputs import image as image_inputs
    from omniembed.inputs import video_clips

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("tile 3 is cut short in <_io.BytesIO object at 0x7f00deadbeef>")

    monkeypatch.setattr(image_inputs, "load_image", broken)
    monkeypatch.setattr(video_clips, "VideoReader", broken)
    image = engine.embed_batch("efficientnet-lite0", images=[b"x"], errors="return")[0]
    with pytest.raises(InputUnreadable) as video:
        engine.embed("efficientnet-lite0", video=b"x")
    for error, what in ((image, "image cannot be decoded"), (video.value, "video could not be decoded")):
        assert isinstance(error, InputUnreadable)
        assert error.message == f"the {what}: tile 3 is cut short in the data"
        assert error.detail is not None and error.detail.startswith("ValueError: tile 3")


def test_openapi_documents_every_status_and_error_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    faces = {"/v1/": "OpenAIErrorResponse", "/v1.3/": "TwelveLabsErrorResponse", "/api/": "FESErrorResponse"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, f"{method} {path}"
            assert "500" in responses and (path in ("/health", "/ready") or "401" in responses)
            face = next((m for prefix, m in faces.items() if path.startswith(prefix)), "ErrorResponse")
            if "400" in responses:
                assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{face}")
    embeddings = schema["paths"]["/v1/embeddings"]["post"]["responses"]
    assert {"400", "401", "404", "413", "429", "500", "503", "504"} <= set(embeddings)
    assert "Retry-After" in embeddings["429"]["headers"]
    assert schema["paths"]["/v1.3/embed"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    detail = schema["components"]["schemas"]["OpenAIErrorDetail"]
    assert set(detail["properties"]) == {"message", "type", "param", "code"}


def test_a_missing_field_is_parameter_not_provided_in_each_face(client: TestClient) -> None:
    r = client.post("/v1/embeddings", json={"input": "a cat"})
    assert r.status_code == 400 and r.json()["error"] == {
        "message": "model: this field is required", "type": "invalid_request_error", "param": "model",
        "code": "parameter_not_provided"}
    r = client.post("/v1.3/embed-v2", json={"input_type": "text", "text": {"input_text": "a cat"}})
    assert r.status_code == 400 and r.json() == {
        "code": "parameter_not_provided", "message": "The model_name parameter is required but was not provided."}
