"""Operations: liveness, readiness (the start-up models are loaded), Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from omniembed.service.state import ServiceState, get_state

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: ServiceState = Depends(get_state)) -> JSONResponse:
    body, status = state.readiness()
    return JSONResponse(body.model_dump(), status_code=status)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: ServiceState = Depends(get_state)) -> Response:
    """Prometheus metrics. The job counts come from the job store: while it does not answer, the metrics
    still do, with ``omniembed_job_store_up 0`` and no job counts (rather than stale ones)."""
    try:
        counts = await asyncio.to_thread(state.store.counts)
    except Exception as exc:  # the store is down or unreachable: report it, do not fail the scrape
        log.warning("job store unavailable for /metrics: %s", type(exc).__name__)
        state.metrics.job_store_up.set(0)
        state.metrics.jobs.clear()
    else:
        state.metrics.job_store_up.set(1)
        for status in ("starting", "running", "complete", "failed"):
            state.metrics.jobs.labels(status).set(counts.get(status, 0))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
