"""Request and response bodies of the three protocols (pydantic), shared by routes and the Client.

Each protocol face also has its own error body; the OpenAPI schema documents them per route
(``service.errors.document_errors``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# -- OpenAI ---------------------------------------------------------------------------------------


class OpenAIEmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
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


class OpenAIErrorResponse(BaseModel):
    """Every error under ``/v1/``, in OpenAI's shape."""

    error: OpenAIErrorDetail


# -- TwelveLabs (field names and the "float" alias as the twelvelabs SDK parses them) ----------------


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Segment(_Model):
    float_: list[float] | None = Field(default=None, alias="float")


class AudioSegment(Segment):
    start_offset_sec: float | None = None
    end_offset_sec: float | None = None


class EmbeddingMetadata(_Model):
    input_url: str | None = None
    input_filename: str | None = None


class TextEmbeddingResult(_Model):
    error_message: str | None = None
    segments: list[Segment] | None = None


class ImageEmbeddingResult(_Model):
    error_message: str | None = None
    segments: list[Segment] | None = None
    metadata: EmbeddingMetadata | None = None


class AudioEmbeddingResult(_Model):
    error_message: str | None = None
    segments: list[AudioSegment] | None = None
    metadata: EmbeddingMetadata | None = None


class EmbeddingResponse(_Model):
    model_name: str
    text_embedding: TextEmbeddingResult | None = None
    image_embedding: ImageEmbeddingResult | None = None
    audio_embedding: AudioEmbeddingResult | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class TwelveLabsErrorResponse(BaseModel):
    """Every error under ``/v1.3/``, in TwelveLabs' shape."""

    code: str
    """TwelveLabs' code where it has one (``parameter_invalid``, ``resource_not_exist`` ...)."""
    message: str


# -- feature-extraction-server --------------------------------------------------------------------


class JobStatus(BaseModel):
    id: str
    status: Literal["starting", "running", "complete", "failed"]


class JobResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["starting", "running", "complete", "failed"]
    result: dict[str, Any] | list[dict[str, Any]] | None = None
    reason: str | None = None
    """Why the job failed (failed jobs only)."""
    code: str | None = None


class FESErrorResponse(BaseModel):
    """Every error under ``/api/``, in feature-extraction-server's (FastAPI's) shape plus a code."""

    detail: str
    code: str


# -- operations -----------------------------------------------------------------------------------


class ReadyStatus(BaseModel):
    """``GET /ready``: 200 once the start-up models are loaded, 503 (``loading``) before."""

    status: Literal["ready", "loading"]
    models: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None
    index: int | None = None
    incident: str | None = None
    """For ``internal_error``: the id under which the server log holds the traceback."""


class ErrorResponse(BaseModel):
    """Errors of the routes outside the three protocols (``/metrics`` ...)."""

    error: ErrorDetail
