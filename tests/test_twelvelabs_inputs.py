"""What TwelveLabs' routes make of odd inputs, sent as raw bytes to a real ``omniembed serve`` (issue 25,
defect 8): a form text field whose bytes are not UTF-8 is refused with ``parameter_invalid`` naming the
field (Starlette read it as Latin-1 or with replacement characters, and it was embedded as other text),
while UTF-8 text with accents is embedded as the same text whichever way it is sent; an audio offset too
large to count in samples is refused by name (it was an ``input_unreadable`` showing ``OverflowError``)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
import soundfile as sf

import omniembed
from audio_data import tone
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
