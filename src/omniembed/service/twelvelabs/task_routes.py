"""TwelveLabs' embedding task routes, durable in the job store (``tasks.py``).

v1 (``client.embed.tasks``): ``POST /v1.3/embed/tasks`` (multipart: ``model_name``, ``video_file`` or
``video_url``, ``video_start_offset_sec``, ``video_end_offset_sec``, ``video_clip_length``,
``video_embedding_scope`` (repeated: ``clip``, ``video``), ``video_embedding_option`` (repeated: ``visual``,
``audio``; omniembed's)) -> ``{_id}``; ``GET /v1.3/embed/tasks/{id}/status``; ``GET /v1.3/embed/tasks/{id}``
(``embedding_option`` filters the segments); ``GET /v1.3/embed/tasks`` (``page``, ``page_limit``,
``status``, ``started_at``, ``ended_at``).

v2 (``client.embed.v_2.tasks``): ``POST /v1.3/embed-v2/tasks`` (JSON) -> ``{_id, status}``;
``GET /v1.3/embed-v2/tasks/{id}``; ``GET /v1.3/embed-v2/tasks``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic.json_schema import SkipJsonSchema

from omniembed.errors import ParameterInvalid, ParameterNotProvided
from omniembed.service.errors import NotFound
from omniembed.service.twelvelabs.embed_v2 import EmbedV2TaskRequest, check_clip, plan_task, video_models
from omniembed.service.twelvelabs.forms import (
    NAMED,
    NOT_NEGATIVE,
    URL,
    FormRoute,
    any_of_fields,
    each_of,
    no_null,
    one_of,
)
from omniembed.service.twelvelabs.routes import get_face, model_header
from omniembed.service.twelvelabs.tasks import (
    TASK_V1,
    TASK_V2,
    MediaPlan,
    TwelveLabsFace,
    page_info,
    served_models,
    v1_task,
    v2_task,
)

router = APIRouter(prefix="/v1.3", tags=["twelvelabs"], route_class=FormRoute)
Face = Annotated[TwelveLabsFace, Depends(get_face)]


def _answer(face: TwelveLabsFace, body: dict[str, Any], rows: list[dict[str, Any]]) -> JSONResponse:
    names = [m for row in rows for m in served_models(row)]
    return JSONResponse(body, headers=model_header(face.state, names) if names else None)


async def _row(face: TwelveLabsFace, task: str, task_id: str, request: Request) -> dict[str, Any]:
    row = await face.get_task(task, task_id, request)
    if row is None:
        raise NotFound(f"The embedding task {task_id} does not exist (or has expired).")
    return row


_RFC3339 = re.compile(r"(\d{4})(-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _when(value: str | None, param: str) -> float | None:
    """An RFC 3339 time as a timestamp: any form it allows (``t``/``z`` in lower case, a leap second, year
    0000, which no task predates: read as year 1), or any other form Python's ``fromisoformat`` reads."""
    if value is None:
        return None
    try:
        rfc = _RFC3339.fullmatch(value.strip())
        if rfc is None:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        year, date, minutes, seconds, fraction, zone = rfc.groups()
        leap = seconds == "60"
        text = (f"{max(int(year), 1):04d}{date}T{minutes}:{'59' if leap else seconds}{(fraction or '')[:7]}"
                f"{'+00:00' if zone in 'Zz' else zone}")
        return datetime.fromisoformat(text).timestamp() + (1.0 if leap else 0.0)
    except (ValueError, OverflowError):
        raise ParameterInvalid(f"The {param} parameter is invalid. Use RFC 3339 (YYYY-MM-DDTHH:mm:ssZ).",
                               param=param) from None


async def _list(face: TwelveLabsFace, task: str, request: Request, page: int, page_limit: int, status: str | None,
                started_at: str | None, ended_at: str | None) -> JSONResponse:
    if status is not None and status not in ("processing", "ready", "failed"):
        raise ParameterInvalid("The status parameter is invalid. Use processing, ready or failed.", param="status")
    rows, total = await face.list_tasks(task, request, page=page, limit=page_limit, status=status,
                                        started_at=_when(started_at, "started_at"),
                                        ended_at=_when(ended_at, "ended_at"))
    shape = (lambda r: v1_task(r, segments=False)) if task == TASK_V1 else (lambda r: v2_task(r, full=False))
    body = {"data": [shape(r) for r in rows], "page_info": page_info(page, page_limit, total)}
    return _answer(face, body, rows)


Page = Annotated[int, Query(ge=1, le=1_000_000)]
PageLimit = Annotated[int, Query(ge=1, le=50)]
Status = Annotated[str | None, Query(json_schema_extra=one_of("processing", "ready", "failed"))]
When = Annotated[str | None, Query(json_schema_extra={"format": "date-time"})]


# -- v1 --------------------------------------------------------------------------------------------------


_NONE = SkipJsonSchema[None]


@router.post("/embed/tasks", responses={200: {"description": "The task was created: `{_id}`."}},
             openapi_extra=any_of_fields("multipart/form-data", "video_url", "video_file"))
async def create_v1_task(
    request: Request,
    face: Face,
    model_name: Annotated[str, Form(json_schema_extra=NAMED)],
    video_file: Annotated[UploadFile | None, File(json_schema_extra=no_null)] = None,
    video_url: Annotated[str | _NONE, Form(json_schema_extra=URL)] = None,
    video_start_offset_sec: Annotated[float | _NONE, Form(json_schema_extra=NOT_NEGATIVE)] = None,
    video_end_offset_sec: Annotated[float | _NONE, Form(json_schema_extra={"exclusiveMinimum": 0})] = None,
    video_clip_length: Annotated[float | _NONE, Form(json_schema_extra={"minimum": 2, "maximum": 10})] = None,
    video_embedding_scope: Annotated[list[str] | _NONE, Form(json_schema_extra=each_of("clip", "video"))] = None,
    video_embedding_option: Annotated[list[str] | _NONE, Form(json_schema_extra=each_of("visual", "audio"))] = None,
) -> JSONResponse:
    """Create a video embedding task (the SDK's ``client.embed.tasks.create``)."""
    if not model_name or not model_name.strip():
        raise ParameterNotProvided("The model_name parameter is required but was not provided.", param="model_name")
    if not video_url and video_file is None:
        raise ParameterNotProvided("Provide video_url or video_file.", param="video_file")
    check_clip(video_clip_length, video_start_offset_sec, video_end_offset_sec,
               ("video_clip_length", "video_start_offset_sec", "video_end_offset_sec"))
    scopes = list(dict.fromkeys(video_embedding_scope or ["clip"]))
    if any(s not in ("clip", "video") for s in scopes):
        raise ParameterInvalid("The video_embedding_scope parameter is invalid. Use clip and/or video.",
                               param="video_embedding_scope")
    await face.joint_model()
    models, defaulted = video_models(face, model_name, video_embedding_option, "video_embedding_option")
    plan = MediaPlan(model_name, "video", models, scopes, url=video_url or None,
                     clip_sec=video_clip_length or 6.0, start_sec=video_start_offset_sec or 0.0,
                     end_sec=video_end_offset_sec, defaulted_audio=defaulted)
    if plan.url is None and video_file is not None:
        plan.filename = video_file.filename or "upload"
        plan.upload = await face.save_upload(video_file.file)
    task_id = await face.create_task(TASK_V1, plan, request)
    return JSONResponse({"_id": task_id}, headers=model_header(face.state, list(models.values())))


@router.get("/embed/tasks/{task_id}/status", responses={200: {"description": "processing, ready or failed."}})
async def v1_task_status(task_id: str, request: Request, face: Face) -> JSONResponse:
    row = await _row(face, TASK_V1, task_id, request)
    body = v1_task(row, segments=False)
    return _answer(face, body, [row])


@router.get("/embed/tasks/{task_id}", responses={200: {"description": "The task and, once ready, its segments."}})
async def v1_task_retrieve(
    task_id: str, request: Request, face: Face,
    embedding_option: Annotated[list[str] | None, Query()] = None,
) -> JSONResponse:
    row = await _row(face, TASK_V1, task_id, request)
    return _answer(face, v1_task(row, segments=True, options=embedding_option), [row])


@router.get("/embed/tasks", responses={200: {"description": "`data` (newest first) and `page_info`."}})
async def v1_task_list(
    request: Request, face: Face, page: Page = 1, page_limit: PageLimit = 10, status: Status = None,
    started_at: When = None, ended_at: When = None,
) -> JSONResponse:
    return await _list(face, TASK_V1, request, page, page_limit, status, started_at, ended_at)


# -- v2 --------------------------------------------------------------------------------------------------


@router.post("/embed-v2/tasks", responses={200: {"description": "The task was created: `{_id, status}`."}})
async def create_v2_task(body: EmbedV2TaskRequest, request: Request, face: Face) -> JSONResponse:
    """Create an embedding task for a video, an audio file or an image (``client.embed.v_2.tasks.create``)."""
    plan, data = await plan_task(face, body)
    if data is not None:
        plan.upload = await face.save_upload(data)
    task_id = await face.create_task(TASK_V2, plan, request)
    return JSONResponse({"_id": task_id, "status": "processing", "data": None},
                        headers=model_header(face.state, list(plan.models.values())))


@router.get("/embed-v2/tasks/{task_id}", responses={200: {"description": "The task and, once ready, `data`."}})
async def v2_task_retrieve(task_id: str, request: Request, face: Face) -> JSONResponse:
    row = await _row(face, TASK_V2, task_id, request)
    return _answer(face, v2_task(row, full=True), [row])


@router.get("/embed-v2/tasks", responses={200: {"description": "`data` (newest first) and `page_info`."}})
async def v2_task_list(
    request: Request, face: Face, page: Page = 1, page_limit: PageLimit = 10, status: Status = None,
    started_at: When = None, ended_at: When = None,
) -> JSONResponse:
    return await _list(face, TASK_V2, request, page, page_limit, status, started_at, ended_at)
