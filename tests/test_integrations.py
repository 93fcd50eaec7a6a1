"""The clients people already use, against the real server (``omniembed serve`` on 127.0.0.1): LangChain's
``OpenAIEmbeddings``, LlamaIndex's ``OpenAIEmbedding`` and ``OpenAILikeEmbedding``, Haystack's OpenAI embedders.

Each test runs the snippet that docs/integrations.md shows, records the request bodies the client sends, and
compares the vectors with the library's own (``Engine.embed_batch``, fp32 on both sides).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

import omniembed
from service_util import Server

# One text with a newline: LlamaIndex replaces newlines with spaces before sending (MiniLM's tokenizer treats both
# as whitespace, so the vector is the same); one with a non-ASCII letter, whose token ids span several bytes.
TEXTS = ["a cat sits on the mat", "Die Katze sitzt auf der Matte.\nSie schläft.", "the stock market fell sharply"]


KEY = "integrations-key"
"""The server requires this key, so each client is seen to send its ``api_key`` (docs' ``"unused"`` becomes it)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("srv"), settings.cache_dir, OMNIEMBED_API_KEYS=KEY).start()
    yield srv
    assert srv.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


@pytest.fixture(scope="module")
def expected(engine: omniembed.Engine) -> dict[str, np.ndarray]:
    return {t: e.data for t, e in zip(TEXTS, engine.embed_batch("minilm", TEXTS), strict=True)}


class Recorder:
    """An httpx client that keeps the JSON body of every request the client library sends."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.client = httpx.Client(event_hooks={"request": [self._keep]})
        self.async_client = httpx.AsyncClient(event_hooks={"request": [self._keep_async]})

    def _keep(self, request: httpx.Request) -> None:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        self.bodies.append(json.loads(request.content))

    async def _keep_async(self, request: httpx.Request) -> None:
        self._keep(request)

    def inputs(self) -> list[Any]:
        """What the client sent as ``input``, request by request."""
        return [b["input"] for b in self.bodies]


def assert_same(got: Any, want: np.ndarray) -> None:
    """The client's vector is the library's: cosine >= 0.99999 and equal within float32 rounding."""
    vector = np.asarray(got, np.float32)
    assert vector.shape == want.shape
    cosine = float(vector @ want / (np.linalg.norm(vector) * np.linalg.norm(want)))
    assert cosine >= 0.99999, cosine
    np.testing.assert_allclose(vector, want, atol=2e-6)


DOCS = Path(__file__).parents[1] / "docs" / "integrations.md"


def run_snippet(first_line: str, server: Server) -> dict[str, Any]:
    """Run the docs/integrations.md code block that starts with ``first_line`` against ``server`` (with its URL
    and key); the names it defines.
    A top-level ``await x`` line runs as ``asyncio.run(x)``, its results kept in order in ``awaited``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S) if b.startswith(first_line)]
    assert len(blocks) == 1, f"docs/integrations.md has {len(blocks)} blocks starting with {first_line!r}"
    lines = []
    code = blocks[0].replace("http://127.0.0.1:8000/v1", f"{server.url}/v1").replace('"unused"', f'"{KEY}"')
    for line in code.splitlines():
        if line.startswith("await "):
            line = f"awaited.append(asyncio.run({line.removeprefix('await ').split('  #')[0]}))"
        lines.append(line)
    names: dict[str, Any] = {"asyncio": asyncio, "awaited": []}
    exec(compile("\n".join(lines), str(DOCS), "exec"), names)
    return names


# --- LangChain ------------------------------------------------------------------------------------------------


def test_langchain_text_mode(server: Server, expected: dict[str, np.ndarray]) -> None:
    """``check_embedding_ctx_length=False`` sends the texts themselves: every call answers the library's vectors."""
    from langchain_openai import OpenAIEmbeddings

    names = run_snippet("from langchain_openai", server)
    embeddings = names["embeddings"]
    assert embeddings.check_embedding_ctx_length is False
    assert_same(names["awaited"][0], expected[TEXTS[0]])  # aembed_query(TEXTS[0])
    for text, vector in zip(TEXTS, embeddings.embed_documents(TEXTS), strict=True):
        assert_same(vector, expected[text])
    assert_same(embeddings.embed_query(TEXTS[1]), expected[TEXTS[1]])

    rec = Recorder()  # the same settings, recording what goes on the wire
    recorded = OpenAIEmbeddings(model="minilm", base_url=f"{server.url}/v1", api_key=KEY,  # type: ignore[arg-type]
                                check_embedding_ctx_length=False,
                                http_client=rec.client, http_async_client=rec.async_client)
    recorded.embed_documents(TEXTS)
    recorded.embed_query(TEXTS[2])
    asyncio.run(recorded.aembed_query(TEXTS[0]))
    assert rec.inputs() == [TEXTS, [TEXTS[2]], [TEXTS[0]]]


@pytest.fixture
def tiktoken_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """LangChain's default mode tokenises with tiktoken's cl100k_base, which tiktoken downloads at first use.
    There is no network here: use the copy that llama-index-core ships, under tiktoken's own cache-file names
    (tiktoken checks each file's SHA-256 against the one OpenAI publishes)."""
    import llama_index.core

    folder = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    assert folder.is_dir(), "llama-index-core no longer ships tiktoken's files here; fill a TIKTOKEN_CACHE_DIR"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))


def _langchain_default(server: Server, rec: Recorder) -> Any:
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(model="minilm", base_url=f"{server.url}/v1", api_key=KEY,  # type: ignore[arg-type]
                            max_retries=0, http_client=rec.client, http_async_client=rec.async_client)


def test_langchain_default_mode_sends_cl100k_token_ids(server: Server, tiktoken_offline: None) -> None:
    """What LangChain sends by default (``check_embedding_ctx_length=True``): for a model name tiktoken does not
    know (every omniembed name) it falls back to cl100k_base, and sends each text's token ids, not the text."""
    import tiktoken

    rec = Recorder()
    _langchain_default(server, rec).embed_documents(TEXTS)
    cl100k = tiktoken.get_encoding("cl100k_base")
    assert rec.inputs() == [[cl100k.encode_ordinary(t) for t in TEXTS]]
    assert rec.inputs()[0][0] == [64, 8415, 23874, 389, 279, 5634]  # "a cat sits on the mat"
    with pytest.raises(KeyError):
        tiktoken.encoding_name_for_model("minilm")  # hence LangChain's fallback to cl100k_base


def test_langchain_default_mode_decoded(server: Server, expected: dict[str, np.ndarray],
                                        tiktoken_offline: None) -> None:
    """LangChain's defaults answer the same vectors as the texts themselves: the server decodes the ids with the
    encoding the client used."""
    rec = Recorder()
    embeddings = _langchain_default(server, rec)
    documents = embeddings.embed_documents(TEXTS)
    for text, vector in zip(TEXTS, documents, strict=True):
        assert_same(vector, expected[text])
    assert_same(embeddings.embed_query(TEXTS[1]), expected[TEXTS[1]])
    assert_same(asyncio.run(embeddings.aembed_query(TEXTS[2])), expected[TEXTS[2]])
    assert all(isinstance(i, list) for sent in rec.inputs() for i in sent)  # still token ids on the wire


def test_token_ids_outside_cl100k_name_the_langchain_fix(server: Server) -> None:
    """Ids that are not cl100k_base tokens (e.g. o200k_base's, from ``tiktoken_model_name="gpt-4o"``) are refused
    with the LangChain setting that sends text instead."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="minilm", input=[[64, 8415], [150000, 12]])
    message = refused.value.body["message"]  # type: ignore[index]
    assert message.startswith("input[1]: ") and "150000" in message and "cl100k_base" in message
    assert "check_embedding_ctx_length=False" in message


# --- LlamaIndex -----------------------------------------------------------------------------------------------


def test_llamaindex_openai_embedding(server: Server, expected: dict[str, np.ndarray]) -> None:
    """``OpenAIEmbedding`` accepts only OpenAI's model names as ``model``; ``model_name`` names any other."""
    from llama_index.embeddings.openai import OpenAIEmbedding

    embed_model = run_snippet("from llama_index.embeddings.openai import", server)["embed_model"]
    for text, vector in zip(TEXTS, embed_model.get_text_embedding_batch(TEXTS), strict=True):
        assert_same(vector, expected[text])
    assert_same(embed_model.get_query_embedding(TEXTS[1]), expected[TEXTS[1]])

    rec = Recorder()
    recorded = OpenAIEmbedding(model_name="minilm", api_base=f"{server.url}/v1", api_key=KEY,
                               http_client=rec.client)
    recorded.get_text_embedding_batch(TEXTS)
    assert rec.inputs() == [[t.replace("\n", " ") for t in TEXTS]]  # LlamaIndex sends newlines as spaces
    assert rec.bodies[0]["model"] == "minilm"


def test_llamaindex_openai_like_embedding(server: Server, expected: dict[str, np.ndarray]) -> None:
    names = run_snippet("from llama_index.embeddings.openai_like", server)
    embed_model = names["embed_model"]
    assert_same(names["awaited"][0], expected[TEXTS[0]])  # aget_query_embedding(TEXTS[0])
    for text, vector in zip(TEXTS, embed_model.get_text_embedding_batch(TEXTS), strict=True):
        assert_same(vector, expected[text])
    assert_same(embed_model.get_text_embedding(TEXTS[2]), expected[TEXTS[2]])


# --- Haystack -------------------------------------------------------------------------------------------------


def test_haystack_openai_embedders(server: Server, expected: dict[str, np.ndarray],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")  # read when haystack is first imported
    names = run_snippet("from haystack import", server)
    from haystack import Document

    result = names["text_embedder"].run(text=TEXTS[0])
    assert result["meta"]["model"] == "minilm"
    assert_same(result["embedding"], expected[TEXTS[0]])
    documents = names["document_embedder"].run(documents=[Document(content=t) for t in TEXTS])["documents"]
    for text, document in zip(TEXTS, documents, strict=True):
        assert document.content == text
        assert_same(document.embedding, expected[text])


def test_openai_client_snippet(server: Server, expected: dict[str, np.ndarray]) -> None:
    client = run_snippet("from openai import OpenAI", server)["client"]
    response = client.embeddings.create(model="minilm", input=TEXTS)
    for text, item in zip(TEXTS, response.data, strict=True):
        assert_same(item.embedding, expected[text])
