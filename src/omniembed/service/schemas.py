"""Bodies shared by every protocol: the error body's contract (``ErrorBody``: each protocol's error
response model says how an error is written in its terms), the readiness answer, and the error body of the
routes outside the protocols. Each protocol's own request and response bodies are in its folder
(``openai/schemas.py``, ``twelvelabs/schemas.py``, ``fes/schemas.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from omniembed.errors import OmniEmbedError

__all__ = ["ErrorBody", "ErrorDetail", "ErrorResponse", "ReadyStatus"]


class ErrorBody(BaseModel):
    """A protocol's error response: the model documents the body in OpenAPI, ``body`` writes it."""

    @classmethod
    def body(cls, exc: OmniEmbedError, message: str, status: int) -> dict[str, Any]:
        """The JSON body for ``exc`` answered with ``status``; ``message`` is what the client may read."""
        raise NotImplementedError

    @classmethod
    def invalid_field(cls, param: str, reason: str) -> str:
        """The message for a request field that failed validation, in the protocol's wording."""
        return f"{param}: {reason}"

    @classmethod
    def missing_field(cls, param: str) -> str:
        """The message for a required request field that was not sent, in the protocol's wording."""
        return f"{param}: this field is required"


class ModelFailure(BaseModel):
    """A start-up model that could not be loaded, and why (the error's code and message)."""

    model: str
    code: str
    reason: str


class ReadyStatus(BaseModel):
    """``GET /ready``: 503 ``loading`` while the start-up models load; then 200 ``ready`` (all loaded) or
    ``degraded`` (with ``allow_missing_models``: the others loaded, ``failed`` says which could not be and why);
    503 ``failed`` when a start-up model could not be loaded without that opt-in (``omniembed serve`` exits)."""

    status: Literal["loading", "ready", "degraded", "failed"]
    models: list[str]
    """The start-up models loaded so far."""
    failed: list[ModelFailure]


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None
    index: int | None = None
    incident: str | None = None
    """For ``internal_error``: the id under which the server log holds the traceback."""


class ErrorResponse(ErrorBody):
    """Errors of the routes outside the three protocols (``/metrics`` ...)."""

    error: ErrorDetail

    @classmethod
    def body(cls, exc: OmniEmbedError, message: str, status: int) -> dict[str, Any]:
        return {"error": {**exc.to_dict(), "message": message}}
