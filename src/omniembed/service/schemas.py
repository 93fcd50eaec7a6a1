"""Request and response bodies of the three protocols (pydantic), shared by routes and the Client."""

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
