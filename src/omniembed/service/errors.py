"""HTTP mapping of omniembed errors: one status table, the error body each protocol expects, and the
OpenAPI documentation of both.

OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}`` (under ``/v1/``); TwelveLabs
clients ``{"code", "message"}`` (``/v1.3/``); feature-extraction-server clients ``{"detail", "code"}``
(``/api/``); the other routes answer ``{"error": {"code", "message", ...}}``. The face is chosen by the
request path. Validation errors are 400 (never FastAPI's 422). No stack trace and no server file path ever
reaches a response body: an unexpected exception is logged with its traceback under an incident id that the
client sees, and missing or broken weights are reported by model name, with the details in the log.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from omniembed.errors import InternalError, OmniEmbedError, ParameterInvalid

__all__ = [
    "ApiKeyInvalid",
    "MethodNotAllowed",
    "NotFound",
    "RequestTimeout",
    "TooManyRequests",
    "document_errors",
    "error_response",
    "install_handlers",
    "public_message",
    "status_of",
]

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


class MethodNotAllowed(OmniEmbedError):
    """The route exists, but not for this HTTP method."""

    code = "method_not_allowed"


STATUS = {
    "parameter_invalid": 400,
    "parameter_not_provided": 400,
    "input_unreadable": 400,
    "input_too_large": 413,
    "api_key_invalid": 401,
    "model_not_found": 404,
    "resource_not_exist": 404,
    "method_not_allowed": 405,
    "too_many_requests": 429,
    "weights_not_found": 503,
    "runtime_unavailable": 503,
    "backend_auth_failed": 503,
    "model_load_failed": 500,
    "request_timeout": 504,
    "internal_error": 500,
}
# TwelveLabs names an unknown resource "resource_not_exist".
TWELVELABS_CODES = {"model_not_found": "resource_not_exist"}
OPEN_PATHS = frozenset({"/health", "/ready"})
"""Routes that answer without an API key (liveness and readiness probes)."""


def status_of(exc: OmniEmbedError) -> int:
    return STATUS.get(exc.code, 500)


# -- what a client may read -------------------------------------------------------------------------

_MODEL_NAME = re.compile(r"model '([^']+)'")
_PIP_INSTALL = re.compile(r"\((pip install [^)]+)\)")
_LOGGED: set[str] = set()
_ABS_PATH = re.compile(r"(?<![\w:/.])(?:~|/)[\w.@+-]+(?:/[\w.@+-]+)+/?")


def public_message(exc: OmniEmbedError) -> str:
    """The message a remote client gets: the error's own, except that a server-side problem (missing or
    broken weights, an unavailable runtime) names the model and the operator's fix instead of the server's
    file paths; the full message goes to the server log."""
    if status_of(exc) < 500 or exc.code in ("internal_error", "request_timeout"):
        return exc.message
    found = _MODEL_NAME.search(exc.message)
    name = found.group(1) if found else None
    model = f"model {name!r}" if name else "the model"
    prepare = f"`omniembed models prepare {name}`" if name else "`omniembed models prepare NAME`"
    if package := _PIP_INSTALL.search(exc.message):
        prepare = f"`{package.group(1)}` and then {prepare}"
    if exc.code == "weights_not_found":
        public = (f"the weights of {model} are not installed on this server. The server's operator can "
                  f"install them with {prepare} (the server log lists where they were looked for).")
    elif exc.code == "model_load_failed":
        public = (f"{model} could not be loaded on this server: its weight files are incomplete or do not "
                  f"match. The server's operator can reinstall them with {prepare}; the server log has "
                  "the details.")
    else:
        public = _ABS_PATH.sub("<server path>", exc.message)
    if public != exc.message and exc.message not in _LOGGED:
        if len(_LOGGED) >= 256:
            _LOGGED.clear()
        _LOGGED.add(exc.message)  # once per distinct problem, not once per request
        log.warning("%s\n(clients are told: %s)", exc, public)
    return public


def _body(exc: OmniEmbedError, path: str, status: int) -> dict[str, Any]:
    message = public_message(exc)
    if path.startswith("/v1.3/"):
        return {"code": TWELVELABS_CODES.get(exc.code, exc.code), "message": message}
    if path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "param": exc.param, "code": exc.code}}
    if path.startswith("/api/"):
        return {"detail": message, "code": exc.code}
    return {"error": {**exc.to_dict(), "message": message}}


def error_response(exc: OmniEmbedError, path: str, status: int | None = None) -> JSONResponse:
    """The calling protocol's error body for ``exc`` (``status``: override the table's, e.g. for 405)."""
    status = status or status_of(exc)
    headers = {"Retry-After": "1"} if exc.code == "too_many_requests" else None
    return JSONResponse(_body(exc, path, status), status_code=status, headers=headers)


def internal_error(exc: BaseException, path: str, request_id: str | None = None) -> JSONResponse:
    """500 for an exception nobody expected: the traceback goes to the log under an incident id."""
    what = f"request {path}" + (f" (X-Request-ID {request_id})" if request_id else "")
    return error_response(InternalError.from_exception(exc, what, logger=log), path)


# -- request parsing and validation --------------------------------------------------------------------

_PARSE_FAILED = "There was an error parsing the body"


def _not_parsed(cause: BaseException | None, content_type: str) -> str:
    """Why FastAPI could not read the body, in the client's terms."""
    kind = "a valid multipart form" if "multipart" in content_type or "form" in content_type else "valid JSON"
    if isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        why = f"it is not UTF-8 text (byte {cause.start})"
    elif cause is not None:
        why = f"{type(cause).__name__}: {str(cause)[:200]}"
    else:
        why = "it could not be parsed"
    return f"the request body is not {kind}: {why}"


def _validation_error(exc: RequestValidationError, path: str) -> ParameterInvalid:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    kind = str(first.get("type", ""))
    loc = [str(p) for p in first.get("loc", ())]
    if kind == "json_invalid":
        error = (first.get("ctx") or {}).get("error", "JSON decode error")
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return ParameterInvalid(f"the request body is not valid JSON: {error}{where}", param=None)
    fields = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "form") else loc
    param = ".".join(fields) or None
    msg = str(first.get("msg", "invalid value"))
    if param is None:  # the body as a whole
        if kind == "missing":
            return ParameterInvalid("the request body is missing; send a JSON object", param=None)
        return ParameterInvalid(f"the request body must be a JSON object (Content-Type: application/json): {msg}")
    if "UploadFile" in msg:
        msg = "Send it as a file (a multipart part with a filename), not as a text field"
    if path.startswith("/v1.3/"):  # TwelveLabs' wording
        return ParameterInvalid(f"The {param} parameter is invalid. {msg.rstrip('.')}.", param=param)
    return ParameterInvalid(f"{param}: {msg}", param=param)


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into the calling protocol's error body."""

    @app.exception_handler(OmniEmbedError)
    async def _omni(request: Request, exc: OmniEmbedError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc, request.url.path), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 404:
            return error_response(NotFound(f"no such route: {request.method} {path}"), path)
        if exc.status_code == 405:
            refused = MethodNotAllowed(f"{path} does not take {request.method} requests")
            return error_response(refused, path, 405)
        if exc.status_code == 400:  # FastAPI/Starlette could not read the body
            content_type = request.headers.get("content-type", "")
            if exc.detail == _PARSE_FAILED:
                message = _not_parsed(exc.__cause__, content_type)
            else:
                message = f"the request body is not a valid multipart form: {exc.detail}"
            return error_response(ParameterInvalid(message), path)
        other = ParameterInvalid(str(exc.detail)) if exc.status_code < 500 else OmniEmbedError(str(exc.detail))
        return error_response(other, path, exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc, request.url.path)


# -- OpenAPI ----------------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "Invalid request: `parameter_invalid`, `parameter_not_provided` or `input_unreadable`.",
    401: "`api_key_invalid`: no or a wrong API key (only when the server has OMNIEMBED_API_KEYS).",
    404: "`model_not_found` (TwelveLabs: `resource_not_exist`) or `resource_not_exist` (an unknown task or job).",
    413: "`input_too_large`: the body, an item or the item count is over a limit; the message names it.",
    429: "`too_many_requests`: the model's queue is full; retry after `Retry-After` seconds.",
    500: "`internal_error` (the message holds an incident id that the server log has the traceback under) "
         "or `model_load_failed`.",
    503: "`weights_not_found` or `runtime_unavailable`: the model cannot run on this server until its "
         "operator installs it.",
    504: "`request_timeout`: the embedding did not finish within OMNIEMBED_REQUEST_TIMEOUT_SEC.",
}
BATCHED_ROUTES = ("/v1/embeddings", "/v1.3/embed", "/api/legacy/")
"""Routes that wait for the batcher: they can also answer 429 (full queue) and 504 (deadline)."""


def _error_model(path: str) -> type[BaseModel]:
    from omniembed.service import schemas

    if path.startswith("/v1.3/"):
        return schemas.TwelveLabsErrorResponse
    if path.startswith("/v1/"):
        return schemas.OpenAIErrorResponse
    if path.startswith("/api/"):
        return schemas.FESErrorResponse
    return schemas.ErrorResponse


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    out = {500}
    if path not in OPEN_PATHS:
        out.add(401)
    params = operation.get("parameters", [])
    if "requestBody" in operation:
        out |= {400, 413}
    if params:
        out.add(400)
    if any(p.get("in") == "path" for p in params) or method == "post":
        out.add(404)  # a named model, task or job that does not exist
    if method == "post":
        out.add(503)  # the model is known, but its weights or runtime are missing here
    if path.startswith(BATCHED_ROUTES):
        out |= {429, 503, 504}
    return sorted(out)


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Document, for each operation of an OpenAPI ``schema``, the statuses it can answer and its face's
    error body; remove FastAPI's 422 (validation errors are 400 here). Changes ``schema`` in place."""
    from omniembed.service import schemas

    models: list[type[BaseModel]] = [
        schemas.OpenAIErrorResponse, schemas.TwelveLabsErrorResponse, schemas.FESErrorResponse,
        schemas.ErrorResponse, schemas.ReadyStatus,
    ]
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            ref = {"$ref": f"#/components/schemas/{_error_model(path).__name__}"}
            for status in _statuses(path, method, operation):
                entry = responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
                entry.setdefault("content", {"application/json": {"schema": ref}})
                if status == 429:
                    entry["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                                        "schema": {"type": "string"}}}
    if path_ready := schema.get("paths", {}).get("/ready", {}).get("get"):
        ready = {"application/json": {"schema": {"$ref": "#/components/schemas/ReadyStatus"}}}
        path_ready["responses"]["200"] = {"description": "All start-up models are loaded.", "content": ready}
        path_ready["responses"]["503"] = {"description": "Start-up models are still loading (or failed to).",
                                          "content": ready}
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 bodies, unless still used
        removed = components.pop(name, None)
        if removed is not None and f'"#/components/schemas/{name}"' in json.dumps(schema):
            components[name] = removed
    return schema
