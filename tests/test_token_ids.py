"""Proposed tests/test_token_ids.py: the server reads token ids as the text the client tokenised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken

from omniembed.errors import ParameterInvalid
from omniembed.service.openai import token_ids

TEXTS = ["a cat sits on the mat", "Die Katze sitzt auf der Matte.\nSie schläft.", "猫がマットの上に座っている 🐈",
         "  spaces\tand\r\nlines  ", "<|endoftext|> as plain text"]


@pytest.fixture(scope="module")
def cl100k() -> Iterator[tiktoken.Encoding]:
    """tiktoken's own cl100k_base (the client's side), from the files llama-index-core ships (no network here)."""
    import llama_index.core

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"))
        yield tiktoken.get_encoding("cl100k_base")


def test_the_mapping_langchain_uses() -> None:
    assert token_ids.encoding_for("minilm") == "cl100k_base"  # unknown to tiktoken: LangChain's fallback
    assert token_ids.encoding_for("all-MiniLM-L6-v2") == "cl100k_base"
    assert token_ids.encoding_for("text-embedding-3-small") == "cl100k_base"
    assert token_ids.encoding_for("gpt-4o") == "o200k_base"


@pytest.mark.parametrize("text", TEXTS)
def test_decode_gives_back_the_text(cl100k: tiktoken.Encoding, text: str) -> None:
    assert token_ids.decode(cl100k.encode_ordinary(text), "minilm", index=0) == text
    assert token_ids.decode(cl100k.encode(text, allowed_special="all"), "minilm", index=0) == text


def test_o200k_for_names_tiktoken_maps_to_it(cl100k: tiktoken.Encoding) -> None:
    with pytest.MonkeyPatch.context() as mp:
        import llama_index.core

        mp.setenv("TIKTOKEN_CACHE_DIR", str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"))
        o200k = tiktoken.get_encoding("o200k_base")
    assert token_ids.decode(o200k.encode_ordinary(TEXTS[2]), "gpt-4o-embed", index=0) == TEXTS[2]


def test_a_chunk_that_ends_inside_a_character(cl100k: tiktoken.Encoding) -> None:
    ids = cl100k.encode_ordinary("🐈")
    assert len(ids) > 1 and token_ids.decode(ids[:1], "minilm", index=0) == cl100k.decode(ids[:1])


def test_ids_outside_the_encoding_name_the_fix() -> None:
    for bad in (100277, 100261, -1):
        with pytest.raises(ParameterInvalid) as refused:
            token_ids.decode([64, bad], "minilm", index=3)
        assert refused.value.index == 3 and refused.value.param == "input"
        assert f"token id {bad} " in refused.value.message
        assert "check_embedding_ctx_length=False" in refused.value.message


def test_an_encoding_not_here_names_the_fix() -> None:
    assert token_ids.encoding_for("text-davinci-003") == "p50k_base"  # a name tiktoken maps to a file not shipped
    with pytest.raises(ParameterInvalid, match="check_embedding_ctx_length=False") as refused:
        token_ids.decode([64], "text-davinci-003", index=0)
    assert "p50k_base" in refused.value.message
