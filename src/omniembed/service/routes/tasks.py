"""feature-extraction-server task routes: durable jobs, batched jobs, and the legacy blocking route.

- ``POST /api/tasks/{task}/{model}/jobs`` with ``{"image"|"text"|"audio": ..., "config": {...}}`` → ``{id, status}``
- ``GET /api/tasks/{task}/jobs/{id}`` → ``{status}``, ``{status: "complete", result: {embedding}}`` or
  ``{status: "failed", reason, code}``
- ``POST /api/tasks/{task}/batched/{model}/jobs`` (lists) and ``GET /api/tasks/{task}/batched/jobs/{id}``
  (``result`` is a list of ``{embedding}``)
- ``POST /api/legacy/tasks/{task}/{model}/jobs`` answers ``{embedding}`` directly.
Images and audio come as data URLs (or http(s) URLs). Model names may use FES's snake_case or kebab-case.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Body, Depends

from omniembed.embedding import Embedding, Modality
from omniembed.errors import ModelNotFound, OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.service.errors import NotFound
from omniembed.service.jobs import TASKS, embedding_payload, job_options
from omniembed.service.schemas import JobResult, JobStatus
from omniembed.service.state import ServiceState, get_state

router = APIRouter(prefix="/api", tags=["feature-extraction-server"])


def _modality(task: str) -> Modality:
    if task not in TASKS:
        raise NotFound(f"no task {task!r}; tasks: {', '.join(TASKS)}")
    return TASKS[task]


def _model(state: ServiceState, name: str, modality: Modality) -> str:
    try:
        spec = state.engine.spec(name)
    except ModelNotFound:
        spec = state.engine.spec(name.replace("-", "_"))
    if modality not in spec.modalities:
        raise ParameterInvalid(f"model {spec.name!r} does not support the {modality}-embedding task", param="model")
    return spec.name


def _inputs(body: dict[str, Any], modality: Modality, batched: bool, limit: int) -> tuple[list[Any], dict[str, Any]]:
    key = str(modality)
    if key not in body:
        raise ParameterNotProvided(f"the request body needs {key!r}", param=key)
    value = body[key]
    items = value if batched else [value]
    if not isinstance(items, list) or not items:
        raise ParameterInvalid(f"{key!r} must be {'a non-empty list' if batched else 'one value'}", param=key)
    if len(items) > limit:
        raise ParameterInvalid(f"{len(items)} items; the limit is {limit} per request", param=key)
    if not all(isinstance(i, str) for i in items):
        raise ParameterInvalid(f"{key!r} items must be strings (text, data URLs or URLs)", param=key)
    config = body.get("config") or {}
    if isinstance(config, list):  # FES batched config: one per item; omniembed applies the first
        config = config[0] if config else {}
    if not isinstance(config, dict):
        raise ParameterInvalid("config must be an object", param="config")
    return items, config


async def _create(state: ServiceState, task: str, model: str, body: dict[str, Any], batched: bool) -> JobStatus:
    modality = _modality(task)
    canonical = _model(state, model, modality)
    items, config = _inputs(body, modality, batched, state.settings.max_items_per_request)
    payload = {"inputs": items, "config": config}
    job_id = await asyncio.to_thread(state.store.create, task, canonical, batched, payload)
    if state.runner is not None:
        state.runner.wake.set()
    return JobStatus(id=job_id, status="starting")


async def _result(state: ServiceState, task: str, job: str, batched: bool) -> JobResult:
    _modality(task)
    row = await asyncio.to_thread(state.store.get, job)
    if row is None or row["task"] != task or bool(row["batched"]) != batched:
        raise NotFound(f"no job {job!r} for task {task!r}{' (batched)' if batched else ''}; it may have expired")
    if row["status"] == "complete":
        return JobResult(status="complete", result=json.loads(row["result"]))
    if row["status"] == "failed":
        error = json.loads(row["error"])
        return JobResult(status="failed", reason=error["message"], code=error["code"])
    return JobResult(status=row["status"])


@router.post("/tasks/{task}/{model}/jobs", response_model=JobStatus)
async def new_job(task: str, model: str, body: dict[str, Any] = Body(...),
                  state: ServiceState = Depends(get_state)) -> JobStatus:
    return await _create(state, task, model, body, batched=False)


@router.get("/tasks/{task}/jobs/{job}", response_model=JobResult, response_model_exclude_none=True)
async def job_result(task: str, job: str, state: ServiceState = Depends(get_state)) -> JobResult:
    return await _result(state, task, job, batched=False)


@router.post("/tasks/{task}/batched/{model}/jobs", response_model=JobStatus)
async def new_batched_job(task: str, model: str, body: dict[str, Any] = Body(...),
                          state: ServiceState = Depends(get_state)) -> JobStatus:
    return await _create(state, task, model, body, batched=True)


@router.get("/tasks/{task}/batched/jobs/{job}", response_model=JobResult, response_model_exclude_none=True)
async def batched_job_result(task: str, job: str, state: ServiceState = Depends(get_state)) -> JobResult:
    return await _result(state, task, job, batched=True)


@router.post("/legacy/tasks/{task}/{model}/jobs")
async def legacy_job(task: str, model: str, body: dict[str, Any] = Body(...),
                     state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    modality = _modality(task)
    canonical = _model(state, model, modality)
    items, config = _inputs(body, modality, False, 1)
    result = (await state.require_batcher().embed(canonical, modality, items, **job_options(config)))[0]
    if isinstance(result, OmniEmbedError):
        raise result
    assert isinstance(result, Embedding)
    return embedding_payload(result)


@router.get("/tasks")
async def list_tasks() -> list[str]:
    return list(TASKS)


@router.get("/models")
async def list_task_models(state: ServiceState = Depends(get_state)) -> list[str]:
    return [s.name for s in state.engine.registry]
