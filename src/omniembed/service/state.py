"""What every route needs: the engine, the batcher, the job store and runner, metrics, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Request

from omniembed.api import Engine
from omniembed.service.batcher import Batcher
from omniembed.service.jobs import JobRunner, JobStore, key_hash
from omniembed.service.metrics import Metrics
from omniembed.service.schemas import ModelFailure, ReadyStatus
from omniembed.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    metrics: Metrics
    store: JobStore
    batcher: Batcher | None = None
    runner: JobRunner | None = None
    ready: bool = False
    """Every start-up model was tried (and, without ``allow_missing_models``, each loaded)."""
    loaded: list[str] = field(default_factory=list)
    failed: list[ModelFailure] = field(default_factory=list)
    """Start-up models that could not be loaded, with the error's code and message."""
    on_fatal: Callable[[], None] | None = None
    """Called when a start-up model fails without ``allow_missing_models``: ``omniembed serve`` stops the
    server (it then exits non-zero); an app run otherwise keeps answering /ready 503 ``failed``."""

    def readiness(self) -> tuple[ReadyStatus, int]:
        """``GET /ready``'s body and status: 503 while loading or after a fatal start-up failure, 200 once
        every start-up model was tried and each loaded (``ready``) or the operator allowed failures
        (``degraded``)."""
        status: Literal["loading", "ready", "degraded", "failed"]
        if self.failed and not self.settings.allow_missing_models:
            status, code = "failed", 503
        elif not self.ready:
            status, code = "loading", 503
        else:
            status, code = ("degraded" if self.failed else "ready"), 200
        return ReadyStatus(status=status, models=list(self.loaded), failed=list(self.failed)), code

    def require_batcher(self) -> Batcher:
        assert self.batcher is not None, "the service has not started"
        return self.batcher

    async def submit_job(self, request: Request, task: str, model: str, batched: bool, payload: Any) -> str:
        """Store a durable job under the caller's API key (the only key that will see it) and wake the job
        runner; the job's id. Every protocol's job or task creation goes through here."""
        job_id: str = await asyncio.to_thread(
            self.store.create, task, model, batched, payload, key_hash(request, self.settings)
        )
        if self.runner is not None:
            self.runner.wake.set()
        return job_id

    async def visible_job(self, request: Request, task: str, job_id: str) -> dict[str, Any] | None:
        """The job's row when it exists (not expired), is of ``task`` and was made with the caller's API key
        (with keys off: by anyone); else None, so a job of another key looks as absent as a missing one."""
        row = await asyncio.to_thread(self.store.get, job_id)
        if row is None or row["task"] != task:
            return None
        if self.settings.api_keys and row["key_hash"] != key_hash(request, self.settings):
            return None
        return row


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.omniembed
    return state
