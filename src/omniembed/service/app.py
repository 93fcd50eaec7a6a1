"""``create_app(settings)``: the FastAPI application. Nothing happens at import; the lifespan starts the
batcher and the job runner, resumes interrupted jobs, and loads the start-up models in the background
(``/health`` answers at once, ``/ready`` once they are loaded). Shutdown stops accepting work, gives
running jobs ``shutdown_grace_sec`` to finish and puts the rest back in the durable queue.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniembed.api import Engine
from omniembed.errors import ModelLoadFailed, OmniEmbedError
from omniembed.service import docs, ops, playground
from omniembed.service.batcher import Batcher
from omniembed.service.errors import (
    OPEN_PATHS,
    ApiKeyInvalid,
    document_errors,
    error_response,
    install_handlers,
    internal_error,
)
from omniembed.service.fes import routes as fes
from omniembed.service.jobs import JobRunner, JobStore
from omniembed.service.limits import BodyLimit, JsonLimits
from omniembed.service.metrics import Metrics
from omniembed.service.openai import routes as openai
from omniembed.service.schemas import ModelFailure
from omniembed.service.state import ServiceState
from omniembed.service.twelvelabs import routes as twelvelabs
from omniembed.service.twelvelabs import task_routes as twelvelabs_tasks
from omniembed.service.twelvelabs.tasks import TwelveLabsFace
from omniembed.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("omniembed.service")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _accepted_key(headers: dict[bytes, bytes], keys: list[str]) -> str | None:
    """The API key the request sent (``Authorization: Bearer`` wins over ``x-api-key``) if it is one of
    ``keys``, else None."""
    given = headers.get(b"x-api-key", b"").decode("latin-1")
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    ok = bool(given) and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)
    return given if ok else None


class Gate:
    """API keys, request metrics, an ``X-Request-ID`` on every answer (the client's own when it sent a sane
    one), and the last line of defence: an exception that escapes a route becomes a logged 500 with an
    incident id. Plain ASGI (no per-request task or body copying)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        status = 500
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        answered = False

        async def send_status(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"x-request-id", request_id.encode())]}
            await send(message)

        keys = self.state.settings.api_keys
        try:
            key = _accepted_key(headers, keys) if keys else None
            if key is not None:  # routes that keep per-key state (FES jobs) read the key the gate accepted
                scope.setdefault("state", {})["api_key"] = key
            if keys and path not in OPEN_PATHS and not playground.is_public(path) and key is None:
                error = ApiKeyInvalid(
                    "missing or invalid API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'"
                )
                await error_response(error, path)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        except Exception as exc:
            if answered:  # the answer has started: nothing better to send; the server logs it
                raise
            await internal_error(exc, path, request_id)(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.state.metrics.requests.labels(label, str(status)).inc()
            self.state.metrics.latency.labels(label).observe(time.perf_counter() - started)


async def _preload(state: ServiceState) -> None:
    """Load the operator's start-up models. Each may be a registered name, a local folder or a hub id;
    resolving one reads the disk or downloads, so it runs on the preparation thread, never on the event loop;
    loading it runs on its own inference thread, so requests for models already loaded are answered meanwhile.
    Clients can then name it (``Engine.serve``); a model name from a request is never resolved on disk.

    A model that cannot be loaded is recorded (/ready names it, with the error's code and message). Without
    ``allow_missing_models`` that ends the start-up: /ready answers 503 ``failed`` and ``state.on_fatal``
    (``omniembed serve``: stop the server, exit non-zero) is called; with it, the others are loaded."""
    batcher = state.require_batcher()
    engine = state.engine
    await asyncio.to_thread(len, engine.registry)  # plugin entry points are read now, off the event loop
    for name in state.settings.serve_models:
        try:
            spec = await batcher.run_sync(engine.serve, name)
            await batcher.run_model(spec.name, engine.load, spec.name)
        except Exception as exc:
            if isinstance(exc, OmniEmbedError):
                code, reason = exc.code, exc.message
                log.error("could not load model %s: [%s] %s", name, code, reason)
            else:  # a message of no error class of ours may hold paths: the log has it, the client a summary
                code, reason = ModelLoadFailed.code, "the model could not be loaded; the server log says why"
                log.exception("could not load model %s", name)
            state.failed.append(ModelFailure(model=name, code=code, reason=reason))
            if not state.settings.allow_missing_models:
                if state.on_fatal is not None:
                    state.on_fatal()
                return
            continue
        state.loaded.append(spec.name)
        log.info("model %s loaded", spec.name)
    state.ready = True


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. ``settings`` default to ``Settings()`` (the environment) at this call."""
    settings = settings if settings is not None else Settings()
    state = ServiceState(settings=settings, engine=Engine(settings), metrics=Metrics(),
                         store=JobStore(settings.jobs_url, settings.job_result_ttl_sec))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.batcher = Batcher(state.engine, state.metrics)
        twelvelabs_face = TwelveLabsFace(state)  # resolves its joint model in the background; its routes wait
        _app.state.twelvelabs = twelvelabs_face
        resolving = asyncio.get_running_loop().create_task(twelvelabs_face.start())
        state.runner = JobRunner(state.store, state.batcher, settings.job_concurrency, settings.shutdown_grace_sec,
                                 handlers=twelvelabs_face.handlers(),
                                 lease_sec=settings.job_lease_sec, timeout_sec=settings.job_timeout_sec)
        await state.runner.start()
        preload = asyncio.get_running_loop().create_task(_preload(state))
        try:
            yield
        finally:
            preload.cancel()
            resolving.cancel()
            await state.runner.stop()
            await state.batcher.close()

    app = FastAPIOffline(  # /docs and /redoc load Swagger UI and ReDoc from the package: they work offline
        title="omniembed",
        version="0.1.0",
        redoc_url=None,  # service/docs.py serves /redoc, without the one image ReDoc's bundle loads from a CDN
        summary="Embeddings over the OpenAI, TwelveLabs and feature-extraction-server protocols.",
        lifespan=lifespan,
    )
    app.state.omniembed = state
    install_handlers(app)
    for router in (openai.router, twelvelabs.router, twelvelabs_tasks.router, fes.router, ops.router,
                   playground.router, docs.router):
        app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:  # every status and error body a route can answer; no 422
        if app.openapi_schema is None:
            document_errors(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(JsonLimits, settings=settings)  # large JSON bodies are walked off the event loop
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Gate, state=state)  # outermost: every answer, a 413 too, gets counted and an X-Request-ID
    return app
