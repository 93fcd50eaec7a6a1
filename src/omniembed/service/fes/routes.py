"""feature-extraction-server task routes: durable jobs, batched jobs, the legacy blocking route, and the
task/model listings.

- ``POST /api/tasks/{task}/{model}/jobs`` with ``{"image"|"text"|"audio": ..., "config": {...}}`` → ``{id, status}``
- ``GET /api/tasks/{task}/jobs/{id}`` → ``{status}``, ``{status: "complete", result: {embedding}}`` or
  ``{status: "failed", reason, code}``
- ``POST /api/tasks/{task}/batched/{model}/jobs`` (lists) and ``GET /api/tasks/{task}/batched/jobs/{id}``
  (``result`` is a list of ``{embedding}``; a failed item gives ``reason: "item I: ..."`` and ``index: I``).
  The plain job route finds batched jobs too (and answers their list).
- ``POST /api/legacy/tasks/{task}/{model}/jobs`` answers ``{embedding}`` directly.
- ``GET /api/tasks``, ``/api/models``, ``/api/tasks/{task}/models``, ``/api/models/{model}/tasks`` and
  ``/api/models/{model}/status`` (``{status, jobs: [{id, status}]}``), as FES's base API.
Images and audio come as data URLs (or http(s) URLs). Model names may use FES's snake_case or kebab-case,
and resolve only against the models this server serves (never a path or a hub id). With API keys on, a job
is visible only to the key that created it: another key gets the same 404 as an unknown job.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel

from omniembed.contract import Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import InputTooLarge, ModelNotFound, OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.registry import ModelSpec
from omniembed.service.errors import NotFound
from omniembed.service.fes.schemas import JobResult, JobStatus, job_body
from omniembed.service.jobs import _CONFIG_KEYS, TASKS, embedding_payload, job_options, key_hash
from omniembed.service.state import ServiceState, get_state

router = APIRouter(prefix="/api", tags=["feature-extraction-server"])


class ModelStatus(BaseModel):
    """FES's model status: ``running`` once loaded, ``loading`` while a start-up model loads, else
    ``uninitialized`` (it loads with its first job); ``jobs`` are its unfinished jobs."""

    status: Literal["loading", "running", "uninitialized"]
    jobs: list[JobStatus]


def _modality(task: str) -> Modality:
    if task not in TASKS:
        raise NotFound(f"no task {task!r}; tasks: {', '.join(TASKS)}")
    return TASKS[task]


def _spec(state: ServiceState, name: str, modality: Modality | None = None) -> ModelSpec:
    """The served model under this name, or FES's snake_case/kebab-case spelling of it (in memory only:
    never a path or a hub id, so it is safe on the event loop)."""
    first: ModelNotFound | None = None
    for candidate in dict.fromkeys((name, name.replace("-", "_"), name.replace("_", "-"))):
        try:
            return state.engine.served_spec(candidate, modality)
        except ModelNotFound as exc:
            first = first or exc
    assert first is not None
    raise first


def _model(state: ServiceState, name: str, modality: Modality) -> str:
    """The model of a task route. FES registers a route per task and model, so a model that does not do the
    task has no route there: 404, naming the tasks it does."""
    spec = _spec(state, name, modality)
    if modality not in spec.modalities:
        tasks = [task for task, m in TASKS.items() if m in spec.modalities]
        raise ModelNotFound(f"model {spec.name!r} does not do the {modality}-embedding task (its tasks: "
                            f"{', '.join(tasks) or 'none'}); GET /api/tasks/{modality}-embedding/models lists the "
                            "models that do", param="model", model=spec.name)
    return spec.name


async def _runnable(state: ServiceState) -> list[ModelSpec]:
    """Served models whose weights are on this machine and that do at least one task (a disk scan, off
    the event loop and cached by the engine)."""
    specs = await asyncio.to_thread(state.engine.available_specs)
    return [s for s in specs if any(m in TASKS.values() for m in s.modalities)]


def _inputs(body: dict[str, Any], modality: Modality, batched: bool, limit: int) -> tuple[list[Any], dict[str, Any]]:
    key = str(modality)
    if key not in body:
        raise ParameterNotProvided(f"the request body needs {key!r}", param=key)
    value = body[key]
    items = value if batched else [value]
    if not isinstance(items, list) or not items:
        raise ParameterInvalid(f"{key!r} must be {'a non-empty list' if batched else 'one value'}", param=key)
    if len(items) > limit:
        raise InputTooLarge(f"{len(items)} items; the limit is {limit} per request (OMNIEMBED_MAX_ITEMS_PER_REQUEST)",
                            param=key)
    if not all(isinstance(i, str) for i in items):
        raise ParameterInvalid(f"{key!r} items must be strings (text, data URLs or URLs)", param=key)
    # what the route's schema says (job_body), checked when the job is submitted rather than when it runs
    empty = next((n for n, i in enumerate(items) if not (i.strip() if modality is Modality.TEXT else i)), None)
    if empty is not None:
        what = "empty or only whitespace; send text to embed" if modality is Modality.TEXT else \
            "empty; send a data URL or an http(s) URL"
        raise ParameterInvalid(f"{key!r}{f' item {empty}' if batched else ''} is {what}", param=key)
    return items, _config(body.get("config"), len(items), modality)


def _config(value: Any, items: int, modality: Modality) -> dict[str, Any]:
    """A job's ``config``, checked when the job is submitted: an object with only the keys a job may set
    (``_CONFIG_KEYS``), each of the right type and value (``Options``). FES's batched jobs may send a list, one
    per item; a job applies one config to all its items, so they must be equal."""
    if value is None:
        return {}
    if not isinstance(value, list):
        return _one_config(value, "config", modality)
    if len(value) > items:
        raise ParameterInvalid(f"config has {len(value)} entries for {items} items: send one config object, or "
                               "one per item", param="config")
    configs = [_one_config(c, f"config[{i}]", modality) for i, c in enumerate(value)]
    differs = next((i for i, c in enumerate(configs) if c != configs[0]), None)
    if differs is not None:
        raise ParameterInvalid(f"config[{differs}] differs from config[0]: a job applies one config to all its items; "
                               "send one config object, or the same one for each item", param=f"config[{differs}]")
    return configs[0] if configs else {}


def _one_config(config: Any, where: str, modality: Modality) -> dict[str, Any]:
    """One config object, refused by the key at fault (``param``: ``config.truncate``)."""
    if not isinstance(config, dict):
        raise ParameterInvalid(f"{where} must be an object such as {{\"truncate\": \"end\"}}, not "
                               f"{json.dumps(config)[:60]}", param=where)
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ParameterInvalid(f"{where} has an unknown key {unknown[0]!r}; a job's config may set: "
                               f"{', '.join(_CONFIG_KEYS)}", param=f"{where}.{unknown[0]}")
    given = {k: v for k, v in config.items() if v is not None}
    try:
        Options.of(**given).check_for(modality)
    except ParameterInvalid as exc:
        param = f"{where}.{exc.param}" if exc.param else where
        raise ParameterInvalid(f"{param}: {exc.message}", param=param) from None
    return given


async def _create(state: ServiceState, request: Request, task: str, model: str, body: dict[str, Any],
                  batched: bool) -> JobStatus:
    modality = _modality(task)
    canonical = _model(state, model, modality)
    items, config = _inputs(body, modality, batched, state.settings.max_items_per_request)
    job_id = await state.submit_job(request, task, canonical, batched, {"inputs": items, "config": config})
    return JobStatus(id=job_id, status="starting")


async def _result(state: ServiceState, request: Request, task: str, job: str, batched: bool) -> JobResult:
    _modality(task)
    row = await state.visible_job(request, task, job)
    if row is None:
        raise NotFound(f"no job {job!r} for task {task!r}{' (batched)' if batched else ''}; it may have expired")
    if row["status"] == "complete":
        return JobResult(status="complete", result=json.loads(row["result"]))
    if row["status"] == "failed":
        error = json.loads(row["error"])
        extra = {k: error[k] for k in ("index", "incident") if error.get(k) is not None}
        reason = error["message"] if "index" not in extra else f"item {extra['index']}: {error['message']}"
        return JobResult(status="failed", reason=reason, code=error["code"], **extra)
    return JobResult(status=row["status"])


def _job_routes(task: str, modality: Modality) -> None:
    """One route per task, as feature-extraction-server registers them, each with its own body: a task
    that does not exist is no route (404), and a body that the schema allows is one the task takes."""
    key = str(modality)
    one, many = job_body(key, batched=False), job_body(key, batched=True)

    @router.post(f"/tasks/{task}/{{model}}/jobs", response_model=JobStatus, name=f"new_{key}_job")
    async def new_job(model: str, request: Request,
                      body: dict[str, Any] = Body(..., json_schema_extra=one),
                      state: ServiceState = Depends(get_state)) -> JobStatus:
        return await _create(state, request, task, model, body, batched=False)

    @router.post(f"/tasks/{task}/batched/{{model}}/jobs", response_model=JobStatus, name=f"new_batched_{key}_job")
    async def new_batched_job(model: str, request: Request,
                              body: dict[str, Any] = Body(..., json_schema_extra=many),
                              state: ServiceState = Depends(get_state)) -> JobStatus:
        return await _create(state, request, task, model, body, batched=True)

    @router.post(f"/legacy/tasks/{task}/{{model}}/jobs", name=f"legacy_{key}_job")
    async def legacy_job(model: str, body: dict[str, Any] = Body(..., json_schema_extra=one),
                         state: ServiceState = Depends(get_state)) -> dict[str, Any]:
        canonical = _model(state, model, modality)
        items, config = _inputs(body, modality, False, 1)
        result = (await state.require_batcher().embed(canonical, modality, items, **job_options(config)))[0]
        if isinstance(result, OmniEmbedError):
            raise result
        assert isinstance(result, Embedding)
        return embedding_payload(result)


for _task, _modality_of_task in TASKS.items():
    _job_routes(_task, _modality_of_task)


@router.post("/tasks/{task}/{model}/jobs", include_in_schema=False)
@router.post("/tasks/{task}/batched/{model}/jobs", include_in_schema=False)
@router.post("/legacy/tasks/{task}/{model}/jobs", include_in_schema=False)
async def unknown_task(task: str) -> None:
    """Any other task: no such route, said in FES's terms (the task routes above match first)."""
    raise NotFound(f"no task {task!r}; tasks: {', '.join(TASKS)}")


@router.get("/tasks/{task}/jobs/{job}", response_model=JobResult, response_model_exclude_none=True)
async def job_result(task: str, job: str, request: Request, state: ServiceState = Depends(get_state)) -> JobResult:
    """A job's status and result; batched jobs are found here too (their ``result`` is a list)."""
    return await _result(state, request, task, job, batched=False)


@router.get("/tasks/{task}/batched/jobs/{job}", response_model=JobResult, response_model_exclude_none=True)
async def batched_job_result(task: str, job: str, request: Request,
                             state: ServiceState = Depends(get_state)) -> JobResult:
    return await _result(state, request, task, job, batched=True)


@router.get("/tasks")
async def list_tasks() -> list[str]:
    return list(TASKS)


@router.get("/models")
async def list_task_models(state: ServiceState = Depends(get_state)) -> list[str]:
    """The models this server can run, for any task."""
    return [s.name for s in await _runnable(state)]


@router.get("/tasks/{task}/models")
async def list_models_for_task(task: str, state: ServiceState = Depends(get_state)) -> list[str]:
    """The models that can do this task."""
    modality = _modality(task)
    return [s.name for s in await _runnable(state) if modality in s.modalities]


@router.get("/models/{model}/tasks")
async def list_tasks_for_model(model: str, state: ServiceState = Depends(get_state)) -> list[str]:
    """The tasks this model can do."""
    spec = _spec(state, model)
    return [task for task, modality in TASKS.items() if modality in spec.modalities]


@router.get("/models/{model}/status", response_model=ModelStatus)
async def model_status(model: str, request: Request, state: ServiceState = Depends(get_state)) -> ModelStatus:
    spec = _spec(state, model)
    loaded = any(key.model == spec.name for key in state.engine.loaded())
    starting = not state.ready and spec.name not in state.loaded and any(
        name in spec.names() for name in state.settings.serve_models
    )
    key = key_hash(request, state.settings)
    rows = await asyncio.to_thread(state.store.active, spec.name)
    jobs = [JobStatus(id=r["id"], status=r["status"]) for r in rows
            if not state.settings.api_keys or r["key_hash"] == key]
    return ModelStatus(status="running" if loaded else "loading" if starting else "uninitialized", jobs=jobs)
