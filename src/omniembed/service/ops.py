"""Operations: liveness, readiness (the start-up models are loaded), Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from omniembed.service.state import ServiceState, get_state

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: ServiceState = Depends(get_state)) -> JSONResponse:
    body = {"status": "ready" if state.ready else "loading", "models": state.loaded}
    return JSONResponse(body, status_code=200 if state.ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: ServiceState = Depends(get_state)) -> Response:
    counts = await asyncio.to_thread(state.store.counts)
    for status in ("starting", "running", "complete", "failed"):
        state.metrics.jobs.labels(status).set(counts.get(status, 0))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
