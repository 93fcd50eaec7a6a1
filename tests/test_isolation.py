"""One item's failure stays that item's: in the pipeline (a preparer or an encoder that raises for one item),
in the batcher (merged requests; idle queues; limits) and through the real server with concurrent clients."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import omniembed
from image_data import photo, png_bytes
from omniembed.contract import LoadedModel, Options, Prepared
from omniembed.embedding import Embedding, InputInfo, Modality
from omniembed.errors import InternalError, OmniEmbedError, ParameterInvalid
from omniembed.pipeline import run
from omniembed.registry import ModelSpec, WeightsSource
from omniembed.service.batcher import Batcher
from omniembed.service.errors import TooManyRequests
from omniembed.service.metrics import Metrics
from service_util import Server, wait_for_job

POISON = "\ud800"  # a lone surrogate: not text; the tokenizer raised TypeError for the whole batch


# -- the pipeline, with a toy model whose preparer and encoder break on chosen items -----------------


class _Preparer:
    """Items are numbers; the vector of x is [x, 2x]. Preparing a list holding 13 raises (the whole call)."""

    def contract(self, options: Options) -> str:
        return "toy"

    def prepare(self, items: Sequence[Any], options: Options) -> list[Any]:
        if 13 in items:
            raise TypeError("unlucky")
        return [Prepared({"x": np.array([float(x), 2.0 * float(x)], np.float32)}, 1,
                         InputInfo(kind="text", description=str(x))) for x in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        return {"x": np.stack([p.features["x"] for p in batch])}


class _Encoder:
    """Fails any call whose batch holds the row ``bad`` (like a runtime rejecting one odd input)."""

    runtime = "torch"
    device = "cpu"

    def __init__(self, bad: float | None = 7) -> None:
        self.bad = bad
        self.calls: list[int] = []

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        self.calls.append(len(feeds["x"]))
        if np.any(feeds["x"][:, 0] == self.bad):
            raise RuntimeError("encoder exploded")
        return feeds["x"]


def _toy_model(encoder: _Encoder) -> LoadedModel:
    spec = ModelSpec("toy", "", (Modality.TEXT,), 2, "mean", False, WeightsSource(), "")
    return LoadedModel(spec, "v1", {Modality.TEXT: _Preparer()}, {Modality.TEXT: encoder}, "torch", "cpu")


def test_a_raising_preparer_fails_only_its_item(caplog: pytest.LogCaptureFixture) -> None:
    items = [*range(1, 21), 13]  # 13 twice: both fail, the rest are embedded
    items[4] = 13
    with caplog.at_level(logging.ERROR):
        out = run(_toy_model(_Encoder(bad=None)), Modality.TEXT, items, Options(batch_size=4), errors="return")
    failed = [i for i, r in enumerate(out) if isinstance(r, OmniEmbedError)]
    assert failed == [4, 12, 20]  # items[12] is 13 too
    for i in failed:
        error = out[i]
        assert isinstance(error, InternalError) and error.index == i and error.incident
        assert error.incident in error.message and "item" not in error.message
        assert error.incident in caplog.text and "unlucky" in caplog.text  # the traceback is logged
    for i, r in enumerate(out):
        if i not in failed:
            assert isinstance(r, Embedding)
            np.testing.assert_array_equal(r.data, [items[i], 2 * items[i]])


def test_a_failing_encoder_call_is_retried_in_halves() -> None:
    encoder = _Encoder()
    items = [1, 2, 3, 4, 5, 6, 7, 8]
    out = run(_toy_model(encoder), Modality.TEXT, items, Options(batch_size=8), errors="return")
    assert [isinstance(r, Embedding) for r in out] == [True] * 6 + [False, True]
    error = out[6]
    assert isinstance(error, InternalError) and error.index == 6 and error.code == "internal_error"
    assert encoder.calls[0] == 8 and len(encoder.calls) > 1  # one merged call, then smaller ones
    for x, r in zip(items, out, strict=True):
        if isinstance(r, Embedding):
            np.testing.assert_array_equal(r.data, [x, 2 * x])
    with pytest.raises(InternalError) as raised:
        run(_toy_model(_Encoder()), Modality.TEXT, items, Options(batch_size=8), errors="raise")
    assert raised.value.index == 6


def test_lone_surrogate_is_an_input_error_and_the_rest_match(engine: omniembed.Engine) -> None:
    texts = ["a cat sits on the mat", POISON, "ok", f"mixed {POISON} text", "the last one"]
    out = engine.embed_batch("minilm", texts, errors="return")
    for i in (1, 3):
        error = out[i]
        assert isinstance(error, OmniEmbedError) and error.code == "input_unreadable" and error.index == i
        assert "surrogate" in error.message and "U+D800" in error.message and f"item {i}" not in error.message
    clean = engine.embed_batch("minilm", [texts[0], texts[2], texts[4]])
    for got, want in zip([out[0], out[2], out[4]], clean, strict=True):
        np.testing.assert_allclose(got.data, want.data, atol=1e-6)
    with pytest.raises(OmniEmbedError) as raised:
        omniembed.Engine(engine.settings).embed("minilm", text=POISON)
    assert raised.value.index is None and raised.value.code == "input_unreadable"  # one input: no position


# -- the batcher, with a fake engine -------------------------------------------------------------------


@dataclass
class _FakeEngine:
    settings: omniembed.Settings
    release: threading.Event
    started: threading.Event

    def served_spec(self, model: str, modality: Modality | None = None) -> ModelSpec:
        return ModelSpec(model, "", (Modality.TEXT,), 2, "mean", False, WeightsSource(), "")

    def run(self, model: str, modality: Modality, texts: list[Any], options: Any = None, **_: Any) -> list[Any]:
        self.started.set()
        self.release.wait(10)
        out: list[Any] = []
        for i, t in enumerate(texts):
            out.append(ParameterInvalid("bad", index=i) if t == "bad" else "ok")
        return out


def _batcher(**settings: Any) -> tuple[Batcher, _FakeEngine]:
    engine = _FakeEngine(omniembed.Settings(**settings), threading.Event(), threading.Event())
    return Batcher(engine, Metrics()), engine


def test_batcher_full_queue_429_too_large_413_and_own_positions() -> None:
    async def main() -> None:
        batcher, engine = _batcher(queue_size=4, max_items_per_request=4, max_batch_wait_ms=0)
        first = asyncio.ensure_future(batcher.embed("m", Modality.TEXT, ["a", "bad"]))
        while not engine.started.is_set():  # the worker took the first request: the queue is empty again
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.embed("m", Modality.TEXT, ["b", "c", "bad", "d"]))
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequests):  # the queue holds 4 waiting items
            await batcher.embed("m", Modality.TEXT, ["e"])
        with pytest.raises(OmniEmbedError) as raised:  # more than a queue can ever hold: never admissible
            await batcher.embed("m", Modality.TEXT, ["x"] * 5)
        assert raised.value.code == "input_too_large" and "at most 4" in raised.value.message
        engine.release.set()
        one, two = await first, await second
        assert one[0] == "ok" and isinstance(one[1], OmniEmbedError) and one[1].index == 1
        # merged or not, each request sees the positions of its own list
        assert [r == "ok" for r in two] == [True, True, False, True]
        assert isinstance(two[2], OmniEmbedError) and two[2].index == 2
        await batcher.close()

    asyncio.run(main())


def test_idle_queues_are_removed() -> None:
    async def main() -> None:
        batcher, engine = _batcher(queue_idle_sec=0.2, max_batch_wait_ms=0)
        engine.release.set()
        for offset in range(5):  # every distinct options tuple has its own queue
            assert await batcher.embed("m", Modality.TEXT, ["a"], start_offset_sec=float(offset)) == ["ok"]
        assert batcher.queues == 5
        await asyncio.sleep(0.6)
        assert batcher.queues == 0
        assert await batcher.embed("m", Modality.TEXT, ["a"], start_offset_sec=1.0) == ["ok"]  # made anew
        assert batcher.queues == 1
        await batcher.close()

    asyncio.run(main())


def test_settings_refuse_requests_that_could_never_be_admitted() -> None:
    with pytest.raises(ValueError, match="could never be admitted"):
        omniembed.Settings(queue_size=100, max_items_per_request=200)


# -- the real server, concurrent clients ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("isolation-srv"), settings.cache_dir,
                 OMNIEMBED_SERVE_MODELS="minilm,efficientnet-lite0",
                 OMNIEMBED_MAX_BATCH_WAIT_MS="20").start()  # a wide window: concurrent requests merge
    yield srv
    srv.stop()


def _json(body: Any) -> dict[str, Any]:
    """Request arguments for a JSON body sent as ASCII (escapes such as a lone surrogate's "\\ud800" pass
    as they are, as any JSON client can send them; httpx's json= would fail to encode it as UTF-8)."""
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        return list(await asyncio.gather(*(client.post(url, **_json(b)) for b in bodies)))


def test_poison_among_concurrent_clean_requests(server: Server, engine: omniembed.Engine) -> None:
    clean = [{"model": "minilm", "input": [f"clean request {k}", f"second text of {k}"]} for k in range(16)]
    poison = {"model": "minilm", "input": ["ok", POISON]}
    bodies = [*clean[:8], poison, *clean[8:]]
    for _ in range(3):  # several rounds: the poison lands in merged batches at different places
        responses = asyncio.run(_post_all(f"{server.url}/v1/embeddings", bodies))
        bad = responses[8]
        assert bad.status_code == 400, bad.text
        error = bad.json()["error"]
        assert error["code"] == "input_unreadable" and error["message"].startswith("input[1]: ")
        assert "item" not in error["message"] and error["param"] == "input"
        failures = [r.text for k, r in enumerate(responses) if k != 8 and r.status_code != 200]
        assert failures == []
    want = engine.embed_batch("minilm", clean[3]["input"])
    got = [d["embedding"] for d in responses[3].json()["data"]]
    np.testing.assert_allclose(got, [w.data for w in want], atol=1e-4)

    job = httpx.post(f"{server.url}/api/tasks/text-embedding/minilm/jobs", **_json({"text": "\udfff"})).json()
    result = wait_for_job(f"{server.url}/api/tasks/text-embedding/jobs/{job['id']}")
    assert result["status"] == "failed" and result["code"] == "input_unreadable"


def test_concurrent_bad_items_name_only_their_own_positions(server: Server) -> None:
    good = "data:image/png;base64," + base64.b64encode(png_bytes(photo("chelsea"))).decode()
    bad = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    bodies = []
    for k in range(12):
        inputs = [good] * 4
        inputs[k % 4] = bad
        bodies.append({"model": "efficientnet-lite0", "modality": "image", "input": inputs})
    responses = asyncio.run(_post_all(f"{server.url}/v1/embeddings", bodies))
    for k, r in enumerate(responses):
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert message.startswith(f"input[{k % 4}]: "), message
        assert "item " not in message  # no position from the merged batch

    async def twelvelabs() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return list(await asyncio.gather(*(
                client.post(f"{server.url}/v1.3/embed", data={"model_name": "efficientnet-lite0", "image_url": url})
                for url in [bad, good] * 4
            )))

    for k, r in enumerate(asyncio.run(twelvelabs())):  # TwelveLabs' modality names the item: no position
        if k % 2:
            assert r.status_code == 200 and len(r.json()["image_embedding"]["segments"][0]["float"]) == 1280
        else:
            assert r.status_code == 400 and r.json()["code"] == "input_unreadable", r.text
            assert "item" not in r.json()["message"]

    batched = [httpx.post(f"{server.url}/api/tasks/image-embedding/batched/efficientnet-lite0/jobs",
                          json={"image": [good, bad, good] if k % 2 else [bad, good]}).json() for k in range(6)]
    for k, job in enumerate(batched):
        result = wait_for_job(f"{server.url}/api/tasks/image-embedding/batched/jobs/{job['id']}")
        assert result["status"] == "failed" and result["code"] == "input_unreadable"
        assert result["reason"].startswith(f"item {1 if k % 2 else 0}: "), result["reason"]
        assert result["reason"].count("item ") == 1


def test_large_requests_succeed_or_answer_413_never_429(server: Server) -> None:
    texts = [f"text number {k}" for k in range(1500)]
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": texts}, timeout=300)
    assert r.status_code == 200 and len(r.json()["data"]) == 1500
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": "minilm", "input": texts * 2}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "input_too_large" and "2048" in r.json()["error"]["message"]


def test_queue_limit_in_the_app(tmp_path: Path, cache_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from omniembed.service import create_app

    settings = omniembed.Settings(cache_dir=cache_dir, data_dir=tmp_path, hub_offline=True, queue_size=2,
                                  max_items_per_request=2)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/embeddings", json={"model": "minilm", "input": ["a", "b", "c"]})
        assert r.status_code == 413 and "limit is 2" in r.json()["error"]["message"]
        assert client.post("/v1/embeddings", json={"model": "minilm", "input": ["a", "b"]}).status_code == 200
