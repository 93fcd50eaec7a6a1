"""``create_app(settings)``: the FastAPI application. Nothing happens at import; the lifespan starts the
batcher and the job runner, resumes interrupted jobs, and loads the start-up models in the background
(``/health`` answers at once, ``/ready`` once they are loaded). Shutdown stops accepting work, gives
running jobs ``shutdown_grace_sec`` to finish and puts the rest back in the durable queue.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniembed.api import Engine
from omniembed.errors import InputTooLarge
from omniembed.service.batcher import Batcher
from omniembed.service.errors import ApiKeyInvalid, error_response, install_handlers
from omniembed.service.jobs import JobRunner, JobStore
from omniembed.service.metrics import Metrics
from omniembed.service.routes import openai, ops, tasks, twelvelabs
from omniembed.service.state import ServiceState
from omniembed.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("omniembed.service")
OPEN_PATHS = {"/health", "/ready"}


class BodyLimit:
    """Refuses request bodies over the limit, by Content-Length or while streaming (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.limit:,} bytes (OMNIEMBED_MAX_BODY_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(InputTooLarge(message), scope["path"])(scope, receive, send)
            return
        received = 0
        answered = False

        async def limited() -> Message:
            nonlocal received, answered
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    if not answered:
                        answered = True
                        await error_response(InputTooLarge(message), scope["path"])(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
            return msg

        async def guarded_send(msg: Message) -> None:
            if not answered:
                await send(msg)

        await self.app(scope, limited, guarded_send)


def _authorized(headers: dict[bytes, bytes], keys: list[str]) -> bool:
    given = headers.get(b"x-api-key", b"").decode("latin-1")
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)


class Gate:
    """API keys and request metrics, as plain ASGI (no per-request task or body copying)."""

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
        keys = self.state.settings.api_keys
        if keys and path not in OPEN_PATHS and not _authorized(dict(scope["headers"]), keys):
            error = ApiKeyInvalid("missing or invalid API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'")
            response = error_response(error, path)
            status = response.status_code
            await response(scope, receive, send)
        else:

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, send_status)
        route: Any = scope.get("route")
        label = getattr(route, "path", "unmatched")
        self.state.metrics.requests.labels(label, str(status)).inc()
        self.state.metrics.latency.labels(label).observe(time.perf_counter() - started)


async def _preload(state: ServiceState) -> None:
    batcher = state.require_batcher()
    for name in state.settings.serve_models:
        try:
            spec = state.engine.spec(name)
            await batcher.run_sync(state.engine.load, spec.name)
            state.loaded.append(spec.name)
            log.info("model %s loaded", spec.name)
        except Exception as exc:  # the server stays up; /ready tells what is missing
            log.error("could not load model %s: %s", name, exc)
            return
    state.ready = True


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. ``settings`` default to ``Settings()`` (the environment) at this call."""
    settings = settings if settings is not None else Settings()
    state = ServiceState(settings=settings, engine=Engine(settings), metrics=Metrics(),
                         store=JobStore(settings.jobs_url, settings.job_result_ttl_sec))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.batcher = Batcher(state.engine, state.metrics)
        state.runner = JobRunner(state.store, state.batcher, settings.job_concurrency, settings.shutdown_grace_sec)
        await state.runner.start()
        preload = asyncio.get_running_loop().create_task(_preload(state))
        try:
            yield
        finally:
            preload.cancel()
            await state.runner.stop()
            await state.batcher.close()

    app = FastAPI(
        title="omniembed",
        version="0.1.0",
        summary="Embeddings over the OpenAI, TwelveLabs and feature-extraction-server protocols.",
        lifespan=lifespan,
    )
    app.state.omniembed = state
    install_handlers(app)
    for router in (openai.router, twelvelabs.router, tasks.router, ops.router):
        app.include_router(router)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(Gate, state=state)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
