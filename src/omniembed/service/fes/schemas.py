"""The feature-extraction-server's job bodies and its error body (FastAPI's ``detail`` plus a code)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from omniembed.errors import OmniEmbedError
from omniembed.service.schemas import ErrorBody


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
