"""HTTP mapping of omniembed errors: the error body each protocol expects, and the OpenAPI documentation of
both. The statuses are the error classes' own (``omniembed.errors`` declares each class's code, status and
TwelveLabs code); nothing here is a second table of them.

OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}`` (under ``/v1/``; an item's error
names ``input[i]``, from its ``index``); TwelveLabs clients ``{"code", "message"}`` (``/v1.3/``, with
TwelveLabs' code where it has its own); feature-extraction-server clients ``{"detail", "code"}`` (``/api/``);
the other routes answer ``{"error": {"code", "message", ...}}``. The face is chosen by the request path.
Validation errors are 400 (never FastAPI's 422). No stack trace and no server file path ever reaches a
response body: an error's ``detail`` is log-only, an unexpected exception is logged with its traceback under
an incident id that the client sees, and missing or broken weights are reported by their ``model`` and
``hint`` fields.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from omniembed.errors import (
    ApiKeyInvalid,
    InternalError,
    MethodNotAllowed,
    ModelLoadFailed,
    NotFound,
    OmniEmbedError,
    ParameterInvalid,
    ParameterNotProvided,
    RequestTimeout,
    TooManyRequests,
    WeightsNotFound,
    class_for_code,
    status_map,
)
from omniembed.service.fes.schemas import FESErrorResponse
from omniembed.service.openai.schemas import OpenAIErrorResponse
from omniembed.service.schemas import ErrorBody, ErrorResponse, ReadyStatus
from omniembed.service.twelvelabs.schemas import TwelveLabsErrorResponse

__all__ = [
    "ApiKeyInvalid",
    "MethodNotAllowed",
    "NotFound",
    "RequestTimeout",
    "TooManyRequests",
    "FACES",
    "document_errors",
    "error_response",
    "face_of",
    "install_handlers",
    "public_message",
    "status_of",
]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Routes that answer without an API key (liveness and readiness probes)."""


def status_of(exc: OmniEmbedError) -> int:
    """The HTTP status of ``exc``: its class declares it (``omniembed.errors``), so there is no default."""
    return exc.status


# -- what a client may read -------------------------------------------------------------------------

_LOGGED: set[str] = set()


def _operator_fix(exc: OmniEmbedError) -> str:
    if exc.hint:
        return f"`{exc.hint}`"
    return f"`omniembed models prepare {exc.model or 'NAME'}`"


def public_message(exc: OmniEmbedError) -> str:
    """The message a remote client gets, formatted from the error's fields, never from its text: missing or
    broken weights name the model (``model``) and the operator's fix (``hint``) instead of what the server
    looked at; any other error shows its message. ``detail`` (server paths, exception text) never reaches a
    client: a server-side problem's is logged, once per distinct problem."""
    named = f"model {exc.model!r}" if exc.model else "the model"
    if isinstance(exc, WeightsNotFound):
        public = (f"the weights of {named} are not installed on this server. The server's operator can install "
                  f"them with {_operator_fix(exc)} (the server log lists where they were looked for).")
    elif isinstance(exc, ModelLoadFailed):
        public = (f"{named} could not be loaded on this server: its weight files are incomplete or do not "
                  f"match. The server's operator can reinstall them with {_operator_fix(exc)}; the server log "
                  "has the details.")
    else:
        public = exc.message
    if exc.status >= 500 and (exc.detail or public != exc.message) and not isinstance(exc, InternalError):
        key = str(exc)
        if key not in _LOGGED:
            if len(_LOGGED) >= 256:
                _LOGGED.clear()
            _LOGGED.add(key)  # once per distinct problem, not once per request
            log.warning("%s\n(clients are told: %s)", exc, public)
    return public


FACES: tuple[tuple[str, type[ErrorBody]], ...] = (
    ("/v1.3/", TwelveLabsErrorResponse), ("/v1/", OpenAIErrorResponse), ("/api/", FESErrorResponse),
)
"""Each protocol's path prefix and its error body (``ErrorResponse`` for every other route)."""


def face_of(path: str) -> type[ErrorBody]:
    """The error body of the protocol that serves ``path``."""
    return next((model for prefix, model in FACES if path.startswith(prefix)), ErrorResponse)


def _body(exc: OmniEmbedError, path: str, status: int) -> dict[str, Any]:
    return face_of(path).body(exc, public_message(exc), status)


def error_response(
    exc: OmniEmbedError, path: str, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The calling protocol's error body for ``exc`` (``status``: override the class's, for an HTTP status
    that Starlette raised and no omniembed error declares; ``headers``: extra response headers, such as the
    ``Allow`` of a 405)."""
    status = status or status_of(exc)
    headers = dict(headers or {})
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = "1"
    return JSONResponse(_body(exc, path, status), status_code=status, headers=headers or None)


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
    elif isinstance(cause, (OverflowError, MemoryError)) or "integer string conversion" in str(cause):
        why = "a number in it is too large"
    elif isinstance(cause, ValueError) and str(cause):  # the parser's own words (json's say where)
        why = str(cause).splitlines()[0][:200]
    else:
        why = "it could not be parsed"
    return f"the request body is not {kind}: {why}"


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _branch(part: Any) -> bool:
    """Whether a location part names a branch of a union (pydantic's ``str``, ``list[int]``...), not a field."""
    return isinstance(part, str) and ("[" in part or part in _TYPE_TAGS)


def _where(loc: Sequence[Any]) -> str:
    """``("body", "input", "list[str]", 1)`` -> ``input[1]``: fields joined by dots, list positions indexed."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _branch(part):
            out += f".{part}" if out else str(part)
    return out


def _union_error(errors: Sequence[Any]) -> tuple[dict[str, Any], str | None]:
    """The error to report and, where no branch of a union got past the value's type, the accepted types.

    A union reports one error per branch (``input.str``, ``input.list[str].1``, ...); the branch that went
    deepest into the value is the one the client meant (``["a", 1]``: a list of texts whose item 1 is not a
    text)."""
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    loc = tuple(first.get("loc", ()))
    head = tuple(p for p in loc if not _branch(p))
    if len(head) == len(loc):  # not a union
        return first, None
    branches = [dict(e) for e in errors if tuple(e.get("loc", ()))[:len(loc) - 1] == loc[:-1]
                and any(_branch(p) for p in e.get("loc", ()))]
    depth = [len([p for p in e["loc"] if not _branch(p)]) for e in branches]
    best = max(range(len(branches)), key=depth.__getitem__)
    if depth[best] > len(head):
        return branches[best], None
    tags = [next(p for p in e["loc"] if _branch(p)) for e in branches]
    return first, ", ".join(dict.fromkeys(tags))


def _validation_error(exc: RequestValidationError, path: str) -> ParameterInvalid | ParameterNotProvided:
    first, accepted = _union_error(exc.errors())
    kind = str(first.get("type", ""))
    loc = [str(p) if not isinstance(p, int) else p for p in first.get("loc", ())]
    if kind == "json_invalid":
        error = (first.get("ctx") or {}).get("error", "JSON decode error")
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return ParameterInvalid(f"the request body is not valid JSON: {error}{where}", param=None)
    fields = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "form") else loc
    param = ".".join(str(p) for p in fields if not isinstance(p, int) and not _branch(p)) or None
    msg = str(first.get("msg", "invalid value")) if accepted is None else f"expected one of: {accepted}"
    if param is None:  # the body as a whole
        if kind == "missing":
            return ParameterInvalid("the request body is missing; send a JSON object", param=None)
        return ParameterInvalid(f"the request body must be a JSON object (Content-Type: application/json): {msg}")
    if kind == "missing":
        return ParameterNotProvided(face_of(path).missing_field(param), param=param)
    if "UploadFile" in msg:
        msg = "Send it as a file (a multipart part with a filename), not as a text field"
    return ParameterInvalid(face_of(path).invalid_field(_where(fields), msg), param=param)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str | None:
    """The methods some route takes at the request's path, found by Starlette's own matching (its ``Allow``
    names only the first route it tried, so a path with a GET route and a POST route would list one)."""
    routes = request.app.router.routes
    allowed = [m for m in _METHODS
               if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]
    return ", ".join(allowed) or None


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
        if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the path takes (every route on it)
            allow = _allowed_methods(request) or (exc.headers or {}).get("Allow")
            takes = f"; it takes {allow}" if allow else ""
            return error_response(MethodNotAllowed(f"{path} does not take {request.method} requests{takes}"), path,
                                  headers={"Allow": allow} if allow else None)
        if exc.status_code == 400:  # FastAPI/Starlette could not read the body
            content_type = request.headers.get("content-type", "")
            if exc.detail == _PARSE_FAILED:
                message = _not_parsed(exc.__cause__, content_type)
            else:
                message = f"the request body is not a valid multipart form: {exc.detail}"
            return error_response(ParameterInvalid(message), path)
        other = ParameterInvalid(str(exc.detail)) if exc.status_code < 500 else InternalError(str(exc.detail))
        return error_response(other, path, exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc, request.url.path)


# -- OpenAPI ----------------------------------------------------------------------------------------------

def _descriptions() -> dict[int, str]:
    """Each status's codes and what they mean, from the error classes' own docstrings."""
    out: dict[int, list[str]] = {}
    for code, status in status_map().items():
        cls = class_for_code(code)
        also = f" (TwelveLabs: `{cls.twelvelabs_code}`)" if cls.twelvelabs_code else ""
        what = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
        out.setdefault(status, []).append(f"`{code}`{also}: {what}")
    return {status: " ".join(parts) for status, parts in out.items()}


BATCHED_ROUTES = ("/v1/embeddings", "/v1.3/embed", "/api/legacy/")
"""Routes that wait for the batcher: they can also answer 429 (full queue) and 504 (deadline)."""


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
    models: list[type[BaseModel]] = [*(model for _, model in FACES), ErrorResponse, ReadyStatus]
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    descriptions = _descriptions()
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            ref = {"$ref": f"#/components/schemas/{face_of(path).__name__}"}
            for status in _statuses(path, method, operation):
                entry = responses.setdefault(str(status), {"description": descriptions[status]})
                entry.setdefault("content", {"application/json": {"schema": ref}})
                if status == 429:
                    entry["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                                        "schema": {"type": "string"}}}
    if path_ready := schema.get("paths", {}).get("/ready", {}).get("get"):
        ready = {"application/json": {"schema": {"$ref": "#/components/schemas/ReadyStatus"}}}
        path_ready["responses"]["200"] = {"description": "`ready`: every start-up model is loaded; `degraded`: "
                                          "some failed and the server serves the others (--allow-missing-models; "
                                          "`failed` names them).", "content": ready}
        path_ready["responses"]["503"] = {"description": "`loading`: start-up models are still loading; `failed`: "
                                          "one failed and the server is stopping (`failed` says why).",
                                          "content": ready}
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 bodies, unless still used
        removed = components.pop(name, None)
        if removed is not None and f'"#/components/schemas/{name}"' in json.dumps(schema):
            components[name] = removed
    return schema
