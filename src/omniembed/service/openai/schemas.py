"""OpenAI's embeddings API bodies (``/v1/embeddings``, ``/v1/models``) and its error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from omniembed.errors import OmniEmbedError
from omniembed.service.schemas import ErrorBody

TEXT_PATTERN = "[^\\t-\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
"""Schema hint of a text to embed: one character that is not whitespace as Python's ``str.strip`` (which
the embedding paths use to refuse an empty text) counts it; ECMA's ``\\S`` differs from it."""
TEXT: dict[str, Any] = {"pattern": TEXT_PATTERN}

_NOT_EMPTY: dict[str, Any] = {"minItems": 1}
_Text = Annotated[str, Field(json_schema_extra=TEXT)]
_TokenId = Annotated[int, Field(json_schema_extra={"minimum": 0})]
_Texts = Annotated[list[_Text], Field(fail_fast=True, json_schema_extra=_NOT_EMPTY)]
_TokenIds = Annotated[list[_TokenId], Field(fail_fast=True, json_schema_extra=_NOT_EMPTY)]
_TokenIdLists = Annotated[list[_TokenIds], Field(fail_fast=True, json_schema_extra=_NOT_EMPTY)]


class OpenAIEmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: _Text
    input: _Text | _Texts | _TokenIds | _TokenIdLists
    """A text, texts, or token ids (decoded with the tiktoken encoding the client used). Each list form stops
    at its first mismatch (``fail_fast``), so telling them apart costs one pass over the list, not one error
    per item and form. The schema says what the route accepts (no empty list, no blank text); the route checks
    it itself, in its own words."""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    # omniembed extensions (ignored by OpenAI clients that do not send them)
    modality: Literal["text", "image", "audio"] = "text"
    """Inputs are texts, or for image/audio: URLs or data URLs (``data:image/png;base64,...``)."""
    truncate: Literal["end", "start", "none"] = "end"


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIErrorDetail(BaseModel):
    message: str
    type: Literal["invalid_request_error", "server_error"]
    """``invalid_request_error`` for 4xx answers, ``server_error`` for 5xx."""
    param: str | None = None
    """The request field at fault (``input``, ``model`` ...), or null."""
    code: str
    """omniembed's stable error code (``parameter_invalid``, ``model_not_found`` ...)."""


class OpenAIErrorResponse(ErrorBody):
    """Every error under ``/v1/``, in OpenAI's shape."""

    error: OpenAIErrorDetail

    @classmethod
    def body(cls, exc: OmniEmbedError, message: str, status: int) -> dict[str, Any]:
        kind = "invalid_request_error" if status < 500 else "server_error"
        param = exc.param
        if exc.index is not None:  # an item of the request's input, in OpenAI's terms
            message, param = f"input[{exc.index}]: {message}", "input"
        return {"error": {"message": message, "type": kind, "param": param, "code": exc.code}}
