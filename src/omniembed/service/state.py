"""What every route needs: the engine, the batcher, the job store and runner, metrics, settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from omniembed.api import Engine
from omniembed.service.batcher import Batcher
from omniembed.service.jobs import JobRunner, JobStore
from omniembed.service.metrics import Metrics
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
    loaded: list[str] = field(default_factory=list)

    def require_batcher(self) -> Batcher:
        assert self.batcher is not None, "the service has not started"
        return self.batcher


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.omniembed
    return state
