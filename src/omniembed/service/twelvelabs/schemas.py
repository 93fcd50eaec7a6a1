"""TwelveLabs' embed bodies as the ``twelvelabs`` SDK parses them (field names and the ``float`` alias),
and its error body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omniembed.errors import OmniEmbedError
from omniembed.service.schemas import ErrorBody


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


class TwelveLabsErrorResponse(ErrorBody):
    """Every error under ``/v1.3/``, in TwelveLabs' shape."""

    code: str
    """TwelveLabs' code where it has one (``parameter_invalid``, ``resource_not_exist`` ...)."""
    message: str

    @classmethod
    def body(cls, exc: OmniEmbedError, message: str, status: int) -> dict[str, Any]:
        return {"code": exc.twelvelabs_code or exc.code, "message": message}

    @classmethod
    def invalid_field(cls, param: str, reason: str) -> str:
        return f"The {param} parameter is invalid. {reason.rstrip('.')}."

    @classmethod
    def missing_field(cls, param: str) -> str:
        return f"The {param} parameter is required but was not provided."
