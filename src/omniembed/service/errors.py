"""HTTP mapping of omniembed errors: one status table, and the error body each protocol expects.

OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}``; TwelveLabs clients
``{"code", "message"}``; feature-extraction-server clients ``{"detail": ...}``. The face is chosen by
the request path. No stack trace ever reaches a response body.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from omniembed.errors import OmniEmbedError, ParameterInvalid

__all__ = ["ApiKeyInvalid", "RequestTimeout", "TooManyRequests", "error_response", "install_handlers"]

log = logging.getLogger(__name__)


class TooManyRequests(OmniEmbedError):
    """The model's queue is full: retry after a moment."""

    code = "too_many_requests"


class ApiKeyInvalid(OmniEmbedError):
    """No or a wrong API key."""

    code = "api_key_invalid"


class RequestTimeout(OmniEmbedError):
    """The embedding did not finish within the per-request deadline."""

    code = "request_timeout"


class NotFound(OmniEmbedError):
    """A route or a job that does not exist."""

    code = "resource_not_exist"


STATUS = {
    "parameter_invalid": 400,
    "parameter_not_provided": 400,
    "input_unreadable": 400,
    "input_too_large": 413,
    "api_key_invalid": 401,
    "model_not_found": 404,
    "resource_not_exist": 404,
    "too_many_requests": 429,
    "weights_not_found": 503,
    "runtime_unavailable": 503,
    "model_load_failed": 500,
    "request_timeout": 504,
    "internal_error": 500,
}
# TwelveLabs names an unknown resource "resource_not_exist".
TWELVELABS_CODES = {"model_not_found": "resource_not_exist"}


def status_of(exc: OmniEmbedError) -> int:
    return STATUS.get(exc.code, 500)


def error_response(exc: OmniEmbedError, path: str) -> JSONResponse:
    status = status_of(exc)
    headers = {"Retry-After": "1"} if exc.code == "too_many_requests" else None
    if path.startswith("/v1.3/"):
        body: dict[str, object] = {"code": TWELVELABS_CODES.get(exc.code, exc.code), "message": exc.message}
    elif path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}}
    elif path.startswith("/api/"):
        body = {"detail": exc.message, "code": exc.code}
    else:
        body = {"error": exc.to_dict()}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    param = ".".join(loc) or None
    return f"{param or 'request'}: {first.get('msg', 'invalid request')}", param


def install_handlers(app: object) -> None:
    """Register the handlers that turn every error into the calling protocol's error body."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)

    @app.exception_handler(OmniEmbedError)
    async def _omni(request: Request, exc: OmniEmbedError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(ParameterInvalid(message, param=param), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"no such route: {request.url.path}"), request.url.path)
        error = OmniEmbedError(str(exc.detail))
        response = error_response(error, request.url.path)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(OmniEmbedError("internal error; see the server log"), request.url.path)
