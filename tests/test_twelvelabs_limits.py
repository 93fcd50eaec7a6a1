"""TwelveLabs' text limit through the official SDK against the real server: a Marengo name takes at most 77
tokens whatever model serves it (counted with that model's tokenizer), ``text_truncate`` cuts or refuses, and
messages use TwelveLabs' parameter names. The SDK has no ``text_truncate`` argument: it goes in
``request_options={"additional_body_parameters": ...}``, as docs/service.md shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

import omniembed
from omniembed.embedding import Modality
from omniembed.service.twelvelabs.embed import MARENGO_MAX_TOKENS, fit_text
from service_util import Server

MIDDLE = " ".join(["the river kept rising through the valley all night"] * 9)  # 81 words, 1 token each
HEAD, TAIL = "cats are wonderful pets", "the stock market crashed"
LONG = f"{HEAD} {MIDDLE} {TAIL}"  # 89 words: 91 tokens with [CLS] and [SEP]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("tl-limits-srv"), settings.cache_dir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> TwelveLabs:
    return TwelveLabs(api_key="unused", base_url=f"{server.url}/v1.3")


@pytest.fixture(scope="module")
def tokenizer(engine: omniembed.Engine) -> Any:
    return engine.load("minilm").preparers[Modality.TEXT].tokenizer  # type: ignore[attr-defined]


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
    return ids


def _vector(result: Any) -> np.ndarray:
    return np.asarray(result.text_embedding.segments[0].float_, np.float32)


def _truncate(mode: str) -> dict[str, Any]:
    return {"additional_body_parameters": {"text_truncate": mode}}


def test_fit_text_cuts_at_token_boundaries(tokenizer: Any) -> None:
    full = _ids(tokenizer, LONG)
    assert len(full) > MARENGO_MAX_TOKENS
    end = fit_text(tokenizer, LONG, MARENGO_MAX_TOKENS, "end")
    assert end.tokens == len(full) and end.text.startswith(HEAD) and TAIL not in end.text
    assert _ids(tokenizer, end.text) == full[: MARENGO_MAX_TOKENS - 1] + full[-1:]  # what truncation gives
    start = fit_text(tokenizer, LONG, MARENGO_MAX_TOKENS, "start")
    assert start.text.endswith(TAIL) and HEAD not in start.text
    assert _ids(tokenizer, start.text) == full[:1] + full[-(MARENGO_MAX_TOKENS - 1):]
    refused = fit_text(tokenizer, LONG, MARENGO_MAX_TOKENS, "none")
    assert refused.text == LONG and refused.tokens > refused.limit
    exact = " ".join(["cat"] * (MARENGO_MAX_TOKENS - 2))  # 75 words + [CLS] + [SEP]
    assert fit_text(tokenizer, exact, MARENGO_MAX_TOKENS, "none").tokens == MARENGO_MAX_TOKENS
    assert fit_text(tokenizer, exact, MARENGO_MAX_TOKENS, "end").text == exact
    subwords = "unbelievably " * 60  # words of several word pieces: the cut still lands on a token boundary
    cut = fit_text(tokenizer, subwords, MARENGO_MAX_TOKENS, "end")
    assert len(_ids(tokenizer, cut.text)) == MARENGO_MAX_TOKENS


def test_marengo_refuses_more_than_77_tokens_with_truncate_none(client: TwelveLabs, tokenizer: Any) -> None:
    with pytest.raises(ApiError) as refused:
        client.embed.create(model_name="Marengo-retrieval-2.7", text=LONG, request_options=_truncate("none"))
    body = refused.value.body
    assert refused.value.status_code == 400 and body["code"] == "parameter_invalid"
    assert f"{len(_ids(tokenizer, LONG))} tokens" in body["message"] and "77" in body["message"]
    assert "text_truncate" in body["message"] and "truncate=" not in body["message"]
    exact = " ".join(["cat"] * (MARENGO_MAX_TOKENS - 2))  # 77 tokens: at the limit, accepted
    ok = client.embed.create(model_name="marengo3.0", text=exact, request_options=_truncate("none"))
    assert ok.text_embedding is not None and ok.text_embedding.segments


def test_marengo_cuts_to_77_tokens(client: TwelveLabs, engine: omniembed.Engine, tokenizer: Any) -> None:
    for mode, kept in (("end", HEAD), ("start", TAIL)):
        fitted = fit_text(tokenizer, LONG, MARENGO_MAX_TOKENS, mode)
        expected = engine.embed("minilm", text=fitted.text, truncate="none").data
        got = client.embed.create(model_name="Marengo-retrieval-2.7", text=LONG, request_options=_truncate(mode))
        np.testing.assert_allclose(_vector(got), expected, atol=1e-5)
        assert kept in fitted.text
    default = client.embed.create(model_name="Marengo-retrieval-2.7", text=LONG)  # end, as TwelveLabs
    np.testing.assert_allclose(_vector(default), engine.embed("minilm", text=fit_text(
        tokenizer, LONG, MARENGO_MAX_TOKENS, "end").text).data, atol=1e-5)
    # the same 100-token text under the model's own name keeps its 256-token limit: nothing is cut
    own = client.embed.create(model_name="minilm", text=LONG, request_options=_truncate("none"))
    np.testing.assert_allclose(_vector(own), engine.embed("minilm", text=LONG).data, atol=1e-5)


def test_messages_name_twelvelabs_parameters(client: TwelveLabs) -> None:
    long_text = "word " * 400
    with pytest.raises(ApiError) as refused:
        client.embed.create(model_name="minilm", text=long_text, request_options=_truncate("none"))
    message = refused.value.body["message"]
    assert "256" in message and "text_truncate" in message and "truncate=" not in message
    with pytest.raises(ApiError) as offset:
        client.embed.create(model_name="minilm", text="x", audio_start_offset_sec=float("nan"))
    assert offset.value.status_code == 400 and "audio_start_offset_sec" in offset.value.body["message"]
    with pytest.raises(ApiError) as bad_mode:
        client.embed.create(model_name="minilm", text="x", request_options=_truncate("middle"))
    assert "text_truncate" in bad_mode.value.body["message"]


def test_in_process_client_applies_the_same_limit(engine: omniembed.Engine, tokenizer: Any) -> None:
    """omniembed.Client without a base_url runs the same semantics in-process: the 77-token Marengo limit too."""
    client = omniembed.Client(settings=engine.settings)
    with pytest.raises(omniembed.ParameterInvalid, match="77 tokens"):
        client.embed.create(model_name="Marengo-retrieval-2.7", text=LONG, text_truncate="none")
    got = client.embed.create(model_name="Marengo-retrieval-2.7", text=LONG, text_truncate="start")
    assert got.text_embedding is not None and got.text_embedding.segments is not None
    expected = engine.embed("minilm", text=fit_text(tokenizer, LONG, MARENGO_MAX_TOKENS, "start").text).data
    np.testing.assert_allclose(got.text_embedding.segments[0].float_, expected, atol=1e-5)
