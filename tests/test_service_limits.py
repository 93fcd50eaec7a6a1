"""Request bodies that could stall the server are refused while they are parsed, and the errors of the
OpenAI face (an image without ``"modality": "image"``) and of the feature-extraction-server jobs (their
``config``, their item limit) say what is wrong.

Issue 25 defects 1, 5 and 8 (the batched job's 413), issue 24 section 7. Each flood test sends one large
body on one connection while another connection polls ``/health``: before the JSON limits, the body was
parsed and validated on the event loop (11 to 55 s for 32 million integers) and no ``/health`` was answered
meanwhile.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

import omniembed
from image_data import photo
from omniembed.errors import InputTooLarge, ParameterInvalid
from omniembed.service import create_app
from omniembed.service.limits import Limits, check_json
from service_util import Server

HEALTH_BOUND_SEC = 3.0
"""The longest a ``/health`` poll may wait while a flood body is handled. With the walk, the longest wait
measured was 0.5 s (bench/body_flood.py, four bodies at once, load average 12 on 2 shared cores; 4 ms
idle); 3 s leaves six times that. Before it, one body stalled every request for 8 to 69 s here."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("limits-srv"), settings.cache_dir,
                 OMNIEMBED_SERVE_MODELS="minilm,efficientnet-lite0").start()
    yield srv
    srv.stop()


def _flood(url: str, path: str, body: bytes) -> tuple[httpx.Response, list[float]]:
    """POST ``body`` while another connection polls ``/health`` until the POST is answered: the answer, and
    each poll's latency."""
    answer: list[httpx.Response] = []

    def post() -> None:
        answer.append(httpx.post(url + path, content=body, headers={"content-type": "application/json"},
                                 timeout=300))

    sender = threading.Thread(target=post)
    latencies: list[float] = []
    with httpx.Client(timeout=300) as health:
        assert health.get(url + "/health").status_code == 200  # connected before the flood starts
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert health.get(url + "/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    sender.join()
    return answer[0], latencies


def _assert_answered(latencies: list[float]) -> None:
    assert latencies, "no /health poll ran while the body was handled"
    assert max(latencies) < HEALTH_BOUND_SEC, f"/health waited {max(latencies):.1f} s during the flood"


def test_int_flood_is_refused_while_health_answers(server: Server) -> None:
    body = b'{"model": "minilm", "input": [' + b"0," * 32_000_000 + b'0]}'  # 61 MiB: under the body limit
    r, latencies = _flood(server.url, "/v1/embeddings", body)
    _assert_answered(latencies)
    assert r.status_code == 413
    assert r.json() == {"error": {
        "message": "input has more than 8,192 elements: a JSON array or object in a request body may hold at most "
                   "8,192 (OMNIEMBED_MAX_JSON_ITEMS). Send fewer items per request.",
        "type": "invalid_request_error", "param": "input", "code": "input_too_large"}}


def test_list_of_lists_flood_is_refused_while_health_answers(server: Server) -> None:
    row = b"[" + b"0," * 7999 + b"0]"
    body = b'{"model": "minilm", "input": [' + b",".join([row] * 3900) + b"]}"  # 60 MiB, 31 million ints
    r, latencies = _flood(server.url, "/v1/embeddings", body)
    _assert_answered(latencies)
    assert r.status_code == 413
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("input_too_large", "input")
    assert "more than 500,000 values" in error["message"] and "OMNIEMBED_MAX_JSON_VALUES" in error["message"]


def test_job_config_flood_is_refused_while_health_answers(server: Server) -> None:
    body = b'{"text": ["a cat"], "config": [' + b"{}," * 20_000_000 + b"{}]}"  # 57 MiB of configs
    r, latencies = _flood(server.url, "/api/tasks/text-embedding/batched/minilm/jobs", body)
    _assert_answered(latencies)
    assert r.status_code == 413
    assert r.json() == {"detail": "config has more than 8,192 elements: a JSON array or object in a request body "
                                  "may hold at most 8,192 (OMNIEMBED_MAX_JSON_ITEMS). Send fewer items per request.",
                        "code": "input_too_large"}


def _data_url(image: Image.Image, **save: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_large_image_body_still_works(server: Server) -> None:
    """A 40 MiB body of one long base64 string is what the body limit is for: it is walked and embedded."""
    image = Image.fromarray(photo("astronaut")).resize((3300, 3300))
    raw = _data_url(image, compress_level=0)  # about 33 MB of pixels: a 41 MB body
    packed = _data_url(image, compress_level=1)  # the same pixels in fewer bytes
    bodies = [json.dumps({"model": "efficientnet-lite0", "modality": "image", "input": url}).encode()
              for url in (raw, packed)]
    assert len(bodies[0]) > 40 * 2**20 > len(bodies[1])
    vectors = []
    for body in bodies:
        r = httpx.post(server.url + "/v1/embeddings", content=body, headers={"content-type": "application/json"},
                       timeout=300)
        assert r.status_code == 200, r.text[:300]
        vectors.append(np.array(r.json()["data"][0]["embedding"]))
    assert vectors[0].shape == (1280,)
    np.testing.assert_array_equal(vectors[0], vectors[1])  # the body reached the model unchanged


def test_image_without_modality_says_which_field_fixes_it(server: Server) -> None:
    """A model that does not embed the request's modality is not served for it: 404 on ``model``, as OpenAI
    answers a model that does not serve the endpoint; the message says which field fixes it."""
    for url in ("data:image/png;base64,iVBORw0KGgo=", "https://example.com/photos/cat.JPG?size=large"):
        r = httpx.post(server.url + "/v1/embeddings", json={"model": "efficientnet-lite0", "input": ["a", url]})
        assert r.status_code == 404
        assert r.json() == {"error": {
            "message": "model 'efficientnet-lite0' does not embed texts (it takes: image); the input looks like an "
                       'image (a URL or data URL). To embed images, set "modality": "image" in the request, with '
                       "URLs or data URLs as the inputs.",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


@pytest.mark.parametrize(("config", "detail"), [
    ({"truncate": ["end"]}, "config.truncate: the truncate parameter is invalid (['end']). You should use one of the "
                            "following values: none, start, end."),
    ({"truncat": "none"}, "config has an unknown key 'truncat'; a job's config may set: truncate, normalize, "
                          "pooling, start_offset_sec, segment_sec, overlap_sec"),
    ({"pooling": ["mean"]}, "config.pooling: pooling must be one of mean, cls, max, mean_patch, not ['mean']"),
    ({"normalize": "yes"}, "config.normalize: normalize must be true or false, not 'yes'"),
    ("end", 'config must be an object such as {"truncate": "end"}, not "end"'),
])
def test_job_config_is_checked_when_submitted(server: Server, config: Any, detail: str) -> None:
    expected = {"detail": detail, "code": "parameter_invalid"}
    for path in ("/api/tasks/text-embedding/minilm/jobs", "/api/legacy/tasks/text-embedding/minilm/jobs"):
        r = httpx.post(server.url + path, json={"text": "a cat", "config": config})
        assert (r.status_code, r.json()) == (400, expected), path
    r = httpx.post(server.url + "/api/tasks/text-embedding/batched/minilm/jobs",
                   json={"text": ["a cat", "a dog"], "config": [config, config]})
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")
    assert r.json()["detail"].startswith(detail.replace("config", "config[0]", 1))


def test_batched_config_list(server: Server) -> None:
    url = server.url + "/api/tasks/text-embedding/batched/minilm/jobs"
    r = httpx.post(url, json={"text": ["a", "b"], "config": [{"truncate": "end"}, {"truncate": "none"}]})
    assert (r.status_code, r.json()) == (400, {
        "detail": "config[1] differs from config[0]: a job applies one config to all its items; send one config "
                  "object, or the same one for each item", "code": "parameter_invalid"})
    r = httpx.post(url, json={"text": ["a"], "config": [{}, {}]})
    assert (r.status_code, r.json()) == (400, {
        "detail": "config has 2 entries for 1 items: send one config object, or one per item",
        "code": "parameter_invalid"})
    r = httpx.post(url, json={"text": ["a", "b"], "config": [{"truncate": "none"}, {"truncate": "none"}]})
    assert r.status_code == 200


def test_batched_job_over_the_item_limit_is_413(server: Server) -> None:
    r = httpx.post(server.url + "/api/tasks/text-embedding/batched/minilm/jobs", json={"text": ["a"] * 2049})
    assert (r.status_code, r.json()) == (413, {
        "detail": "2049 items; the limit is 2048 per request (OMNIEMBED_MAX_ITEMS_PER_REQUEST)",
        "code": "input_too_large"})


def test_item_count_is_checked_before_the_items(tmp_path: Path, cache_dir: Path) -> None:
    """The 2,048-item limit comes first: no per-item work (decoding token ids) on a list over it."""
    settings = omniembed.Settings(cache_dir=cache_dir, data_dir=tmp_path, hub_offline=True, max_items_per_request=4,
                                  max_json_items=10)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": [[1], [2], [3], [4], [5]]})
        assert (r.status_code, r.json()["error"]["message"]) == (
            413, "input has 5 items; the limit is 4 per request (OMNIEMBED_MAX_ITEMS_PER_REQUEST)")
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": [[1], [100277]]})  # 100277: no token
        assert (r.status_code, r.json()["error"]["param"]) == (400, "input") and "input[1]: token id 100277" in r.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: read whole, then walked (it is over 256 KiB)
            yield b'{"model": "minilm", "input": ["' + b"x" * 300_000 + b'"'
            for _ in range(10):
                yield b', "y"'
            yield b"]}"

        r = client.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["error"]["param"]) == (413, "input")
        assert r.json()["error"]["message"].startswith("input has more than 10 elements")


# -- the walk itself ----------------------------------------------------------------------------------------

LIMITS = Limits(depth=32, items=8192, values=500_000)


def _refusal(body: bytes, limits: Limits = LIMITS) -> tuple[str | None, str] | None:
    try:
        check_json(body, limits)
    except InputTooLarge as exc:
        return exc.param, exc.message
    return None


@pytest.mark.parametrize("head", [b"NaN", b"-Infinity", b"1E400", b"1" + b"0" * 400, b'"\xed\xa0\x80"',
                                  b'"\\ud800"', b'"' + b"\\n" * 100_000 + b'"'])
def test_what_python_json_reads_is_walked(head: bytes) -> None:
    """Python's json reads these (the app's parser); yajl alone would stop at them, and the rest of the
    body would reach the app unwalked."""
    body = b'{"input": [' + head + b"," + b"0," * 10_000 + b"0]}"
    json.loads(body)
    assert _refusal(body) == ("input", "input has more than 8,192 elements: a JSON array or object in a request "
                                       "body may hold at most 8,192 (OMNIEMBED_MAX_JSON_ITEMS). Send fewer items "
                                       "per request.")


def test_depth_values_and_bare_values() -> None:
    deep = b'{"input": ' + b"[" * 40 + b"]" * 40 + b"}"
    where = "input" + "[0]" * 31
    assert _refusal(deep) == (where, f"the request body is nested more than 32 levels deep (at {where}): the limit "
                                     "is OMNIEMBED_MAX_JSON_DEPTH")
    many = json.dumps({"model": "m", "input": [[0] * 5000] * 101}).encode()
    param, message = _refusal(many) or (None, "")
    assert param == "input" and message.startswith("the request body holds more than 500,000 values")
    assert _refusal(b'{"input": [' + b"1" * 1025 + b"]}") == (
        None, "the request body holds a value longer than 1,024 characters outside a string (a number that long "
              "is not accepted)")
    members = b"{" + b",".join(b'"k%d": 0' % i for i in range(8193)) + b"}"
    assert _refusal(members) == (None, "the request body has more than 8,192 members: a JSON array or object in a "
                                       "request body may hold at most 8,192 (OMNIEMBED_MAX_JSON_ITEMS). Send fewer "
                                       "items per request.")
    with pytest.raises(ParameterInvalid, match="UTF-16; send JSON as UTF-8"):
        check_json(json.dumps({"input": [0] * 9000}).encode("utf-16"), LIMITS)


def test_long_strings_and_malformed_bodies_pass() -> None:
    assert _refusal(b'{"input": ["' + b"QUJD" * 10_000_000 + b'"]}') is None  # 40 MB of base64
    assert _refusal(json.dumps({"input": ['a "quoted" \\ text\n\u00e9' * 100_000] * 8}).encode()) is None
    assert _refusal(b'{"input": [0, 0,') is None  # not JSON: the app says so
    assert _refusal(b'\xef\xbb\xbf{"input": "x"}') is None


def _shape(value: Any, depth: int = 1) -> tuple[int, int, int]:
    """(deepest nesting, largest container, values) of a parsed JSON value, as the walk counts them."""
    if isinstance(value, (list, dict)):
        children = list(value.values()) if isinstance(value, dict) else value
        shapes = [_shape(c, depth + 1) for c in children]
        return (max([depth, *(s[0] for s in shapes)]), max([len(children), *(s[1] for s in shapes)]),
                1 + sum(s[2] for s in shapes))
    return (0, 0, 1)


_SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False)
            | st.text(max_size=300))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=6), max_leaves=40)


@given(value=_JSON, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_walk_counts_what_json_parses(value: Any, indent: int | None, ascii_only: bool) -> None:
    """Any JSON document is refused exactly when its parsed value is over a limit."""
    body = json.dumps({"input": value}, indent=indent, ensure_ascii=ascii_only).encode()
    depth, items, values = _shape(json.loads(body))
    limits = Limits(depth=4, items=4, values=30)
    refused = _refusal(body, limits)
    assert (refused is not None) == (depth > 4 or items > 4 or values > 30), (refused, depth, items, values)
