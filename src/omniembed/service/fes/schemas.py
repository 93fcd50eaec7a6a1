"""The feature-extraction-server's job bodies and its error body (FastAPI's ``detail`` plus a code)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from omniembed.contract import POOLINGS, TRUNCATE_MODES
from omniembed.errors import OmniEmbedError
from omniembed.service.openai.schemas import TEXT_PATTERN
from omniembed.service.schemas import ErrorBody

_NUMBER = {"type": "number"}
_CONFIG: dict[str, Any] = {
    "type": "object",
    "description": "A job's options; any other key is refused. Null is the same as leaving a key out.",
    "properties": {
        "truncate": {"enum": [*TRUNCATE_MODES, None]},
        "normalize": {"type": ["boolean", "null"]},
        "pooling": {"enum": [*POOLINGS, None]},
        "start_offset_sec": {"anyOf": [{**_NUMBER, "minimum": 0}, {"type": "null"}]},
        "segment_sec": {"anyOf": [{**_NUMBER, "exclusiveMinimum": 0}, {"type": "null"}]},
        "overlap_sec": {"anyOf": [{**_NUMBER, "minimum": 0}, {"type": "null"}]},
    },
    "additionalProperties": False,
}


def job_body(key: str, batched: bool) -> dict[str, Any]:
    """The JSON schema of one task's job body, as feature-extraction-server registers a route per task:
    ``{key: an input}`` (batched: a non-empty list of them) and an optional ``config`` (batched: also one per
    item, all equal). Other keys are ignored. Routes check the body themselves, in FES's words; this says
    what they accept."""
    item: dict[str, Any] = ({"type": "string", "description": "text", "pattern": TEXT_PATTERN} if key == "text" else
                            {"type": "string", "description": "a data URL or an http(s) URL", "minLength": 1})
    value = {"type": "array", "items": item, "minItems": 1} if batched else item
    config = {"anyOf": [_CONFIG, {"type": "array", "items": _CONFIG}, {"type": "null"}]} if batched else {
        "anyOf": [_CONFIG, {"type": "array", "items": _CONFIG, "maxItems": 1}, {"type": "null"}]}
    return {"type": "object", "required": [key], "properties": {key: value, "config": config}}


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


class FESErrorResponse(ErrorBody):
    """Every error under ``/api/``, in feature-extraction-server's (FastAPI's) shape plus a code."""

    detail: str
    code: str

    @classmethod
    def body(cls, exc: OmniEmbedError, message: str, status: int) -> dict[str, Any]:
        return {"detail": message, "code": exc.code}
