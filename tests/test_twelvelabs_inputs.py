"""What TwelveLabs' routes make of odd inputs, sent as raw bytes to a real ``omniembed serve`` (issue 25,
defect 8): a form text field whose bytes are not UTF-8 is refused with ``parameter_invalid`` naming the
field (Starlette read it as Latin-1 or with replacement characters, and it was embedded as other text),
while UTF-8 text with accents is embedded as the same text whichever way it is sent; an audio offset too
large to count in samples is refused by name (it was an ``input_unreadable`` showing ``OverflowError``)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
import soundfile as sf

import omniembed
from audio_data import tone
from omniembed.service.openai.schemas import TEXT_PATTERN
from service_util import Server

BOUNDARY = "omniembed-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("tl-inputs-srv"), settings.cache_dir).start()
    yield srv
    srv.stop()


def _multipart(*fields: tuple[str, bytes]) -> tuple[bytes, dict[str, str]]:
    body = b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value
                    + b"\r\n" for name, value in fields) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(("path", "body", "headers", "field"), [
    ("/v1.3/embed", *_multipart(("model_name", b"minilm"), ("text", b"caf\xe9 \xff\xfe")), "text"),
    ("/v1.3/embed", *_multipart(("model_name", b"minilm"), ("text", "café".encode() + b"\xc3")), "text"),
    ("/v1.3/embed", *_multipart(("model_name", b"mini\xfflm"), ("text", b"a cat")), "model_name"),
    ("/v1.3/embed", b"model_name=minilm&text=caf%E9%FF", URLENCODED, "text"),
    ("/v1.3/embed", b"model_name=minilm&text=caf\xe9", URLENCODED, "text"),
    ("/v1.3/embed/tasks", *_multipart(("model_name", b"marengo3.0"), ("video_url", b"https://example.com/\xff.mp4")),
     "video_url"),
])
def test_a_form_field_that_is_not_utf8_is_refused_by_name(server: Server, path: str, body: bytes,
                                                          headers: dict[str, str], field: str) -> None:
    answer = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=60)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["code"] == "parameter_invalid"
    assert error["message"].startswith(f"The {field} parameter is invalid. It is not UTF-8 text")


def test_utf8_text_is_the_same_text_however_it_is_sent(server: Server) -> None:
    text = "café crème, ÿ and 猫"
    vectors = []
    for body, headers in (_multipart(("model_name", b"minilm"), ("text", text.encode())),
                          (urlencode({"model_name": "minilm", "text": text}).encode(), URLENCODED)):  # %-escaped
        answer = httpx.post(f"{server.url}/v1.3/embed", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        vectors.append(answer.json()["text_embedding"]["segments"][0]["float"])
    answer = httpx.post(f"{server.url}/v1.3/embed-v2", timeout=60, json={
        "model_name": "minilm", "input_type": "text", "text": {"input_text": text}})
    assert answer.status_code == 200, answer.text
    vectors.append(answer.json()["data"][0]["embedding"])
    wrong = httpx.post(f"{server.url}/v1.3/embed-v2", timeout=60, json={
        "model_name": "minilm", "input_type": "text", "text": {"input_text": text.encode().decode("latin-1")}})
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], wrong.json()["data"][0]["embedding"], atol=1e-3)  # the text as Latin-1


@pytest.fixture(scope="module")
def wav() -> bytes:
    out = io.BytesIO()
    sf.write(out, tone(3.0), 22050, format="WAV")
    return out.getvalue()


@pytest.mark.parametrize("offset", ["1e308", "1.7e308", "1e300"])
def test_an_audio_offset_past_any_audio_is_refused_by_name(server: Server, wav: bytes, offset: str) -> None:
    answer = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "marengo3.0", "audio_start_offset_sec": offset},
                        files={"audio_file": ("a.wav", wav)}, timeout=60)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"code": "parameter_invalid", "message": f"audio_start_offset_sec={float(offset):g} is "
                             "past the end of the audio (3.00 s long)"}
    answer = httpx.post(f"{server.url}/v1.3/embed-v2", timeout=60, json={
        "model_name": "marengo3.0", "input_type": "audio",
        "audio": {"media_source": {"base64_string": base64.b64encode(wav).decode()}, "start_sec": float(offset)}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "parameter_invalid" and "Error" not in answer.json()["message"]
    assert "past the end of the audio" in answer.json()["message"]


@pytest.mark.parametrize("when", ["2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", "2016-12-31T23:59:60Z",
                                  "0000-01-01T00:00:00Z", "2026-01-01T00:00:00.123456789+05:30"])
def test_task_lists_take_every_rfc3339_time(server: Server, when: str) -> None:
    """The schema says ``format: date-time`` (RFC 3339): every form of it is read (lower-case ``t``/``z``,
    a leap second, year 0000 were 400 before)."""
    for path in ("/v1.3/embed/tasks", "/v1.3/embed-v2/tasks"):
        answer = httpx.get(f"{server.url}{path}", params={"started_at": when, "ended_at": when}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["page_info"]["total_results"] == 0
    answer = httpx.get(f"{server.url}/v1.3/embed/tasks", params={"started_at": "yesterday"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["code"] == "parameter_invalid"


def test_the_schema_says_what_the_twelvelabs_routes_check(server: Server) -> None:
    """What the routes refuse by value, the OpenAPI schema declares (schemathesis then sends only what they
    accept as valid): names, enumerations, bounds and times."""
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]

    def form(path: str) -> dict[str, Any]:
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        return dict(schemas[ref.rsplit("/", 1)[1]]["properties"])

    embed, task = form("/v1.3/embed"), form("/v1.3/embed/tasks")
    assert embed["model_name"]["pattern"] == task["model_name"]["pattern"] == TEXT_PATTERN
    assert embed["text_truncate"]["enum"] == ["none", "start", "end"]
    assert embed["audio_start_offset_sec"]["minimum"] == task["video_start_offset_sec"]["minimum"] == 0
    assert (task["video_clip_length"]["minimum"], task["video_clip_length"]["maximum"]) == (2, 10)
    assert task["video_embedding_scope"]["items"]["enum"] == ["clip", "video"]
    assert task["video_embedding_option"]["items"]["enum"] == ["visual", "audio"]
    listing = {p["name"]: p["schema"] for p in spec["paths"]["/v1.3/embed/tasks"]["get"]["parameters"]}
    assert listing["status"]["enum"] == ["processing", "ready", "failed"]
    assert listing["started_at"]["format"] == listing["ended_at"]["format"] == "date-time"
    v2 = schemas["EmbedV2TaskRequest"]["properties"]
    assert v2["input_type"]["enum"] == ["video", "audio", "image"] and v2["model_name"]["pattern"] == TEXT_PATTERN
    assert schemas["EmbedV2Request"]["properties"]["input_type"]["enum"] == [
        "text", "image", "text_image", "audio", "video", "multi_input"]
    assert schemas["MediaInput"]["properties"]["embedding_scope"]["items"]["enum"] == ["clip", "local", "asset"]


def test_the_text_pattern_is_what_str_strip_counts_as_blank() -> None:
    """Names and texts are refused when ``str.strip`` leaves nothing; the schema's pattern says exactly that
    (ECMA's ``\\S`` would not: it counts U+FEFF as a space and U+001C-U+001F, U+0085 as text)."""
    pattern = re.compile(TEXT_PATTERN)
    odd = [chr(c) for c in (*range(0x20), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200C), 0x2028, 0x2029, 0x202F,
                            0x205F, 0x3000, 0xFEFF, ord("a"), 0x4E00)]
    assert [c for c in odd if bool(pattern.search(c)) != bool(c.strip())] == []
    assert not pattern.search(" \t\x1f\x85 ") and pattern.search(" \ufeff ")


def test_a_model_that_does_not_embed_the_input_is_not_found_for_it(server: Server) -> None:
    """Whether a name serves a modality depends on this server's models, which no request schema can say: a
    model that does not embed the input is not found for it (404 ``resource_not_exist``, as a name with no
    model is), with the message that says so."""
    expected = {"code": "resource_not_exist",
                "message": "model 'minilm' does not embed images or video frames; name a model that does, or a "
                           "Marengo name"}
    v1 = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "minilm", "image_url": "https://example.com/a.png"})
    assert (v1.status_code, v1.json()) == (404, expected)
    v2 = httpx.post(f"{server.url}/v1.3/embed-v2", json={
        "input_type": "image", "model_name": "minilm", "image": {"media_source": {"url": "https://example.com/a.png"}}})
    assert (v2.status_code, v2.json()) == (404, expected)
    task = httpx.post(f"{server.url}/v1.3/embed/tasks", data={
        "model_name": "minilm", "video_url": "https://example.com/v.mp4", "video_embedding_option": "visual"})
    assert (task.status_code, task.json()) == (404, expected)


def test_the_schema_says_what_the_routes_take(server: Server) -> None:
    """A form has no null (a field is sent or left out), model_name is required, and a body needs one input:
    the v1 form at least one of its inputs, an Embed v2 body the object its input_type names, a media source
    a URL or base64 bytes (asset_id is refused: this server keeps no assets)."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, inputs in (("/v1.3/embed", ["text", "image_url", "image_file", "audio_url", "audio_file"]),
                         ("/v1.3/embed/tasks", ["video_url", "video_file"])):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert body["anyOf"] == [{"required": [name]} for name in inputs], path
        form = components[body["$ref"].rsplit("/", 1)[1]]
        assert form["required"] == ["model_name"]
        assert "null" not in str(form["properties"]), path
    v2 = components["EmbedV2Request"]
    assert [(b["properties"]["input_type"]["const"], b["required"]) for b in v2["anyOf"]] == [
        (kind, [kind]) for kind in ("text", "image", "text_image", "audio", "video", "multi_input")]
    assert [b["required"] for b in components["EmbedV2TaskRequest"]["anyOf"]] == [["video"], ["audio"], ["image"]]
    source = components["MediaSource"]
    assert source["anyOf"] == [{"required": ["url"]}, {"required": ["base64_string"]}]
    assert "asset_id" not in source["properties"]
    assert "end_sec" not in components["AudioInput"]["properties"]
    # what the schema forbids, the route refuses: no input, or the input_type's object missing
    nothing = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "minilm"})
    assert nothing.status_code == 400 and nothing.json()["code"] == "parameter_not_provided"
    no_text = httpx.post(f"{server.url}/v1.3/embed-v2", json={"input_type": "text", "model_name": "minilm",
                                                              "multi_input": {"input_text": "a cat"}})
    assert (no_text.status_code, no_text.json()) == (400, {
        "code": "parameter_not_provided", "message": "The text parameter is required when input_type is text."})
