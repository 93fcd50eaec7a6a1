"""TwelveLabs-compatible ``POST /v1.3/embed`` (multipart form) and ``POST /v1.3/embed-v2`` (JSON), for the
official ``twelvelabs`` SDK. Every answer names the models that served it in ``X-OmniEmbed-Model``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic.json_schema import SkipJsonSchema

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError
from omniembed.service.errors import public_message
from omniembed.service.openai.schemas import TEXT
from omniembed.service.state import ServiceState, get_state
from omniembed.service.twelvelabs.embed import Fitted, TwelveLabsRequest, create_embedding, fit_with_engine
from omniembed.service.twelvelabs.embed_v2 import EmbedV2Request, embed_now
from omniembed.service.twelvelabs.forms import NAMED, NOT_NEGATIVE, URL, FormRoute, any_of_fields, no_null, one_of
from omniembed.service.twelvelabs.schemas import EmbeddingResponse
from omniembed.service.twelvelabs.tasks import MODEL_HEADER, TwelveLabsFace

router = APIRouter(prefix="/v1.3", tags=["twelvelabs"], route_class=FormRoute)


async def _read(upload: UploadFile | None) -> tuple[bytes | None, str | None]:
    if upload is None:
        return None, None
    return await upload.read(), upload.filename


def get_face(request: Request) -> TwelveLabsFace:
    face: TwelveLabsFace = request.app.state.twelvelabs
    return face


def model_header(state: ServiceState, names: list[str]) -> dict[str, str]:
    """``X-OmniEmbed-Model``: the canonical names of the models that served a call, in order."""
    canonical = []
    for name in names:
        try:
            canonical.append(state.engine.served_spec(name).name)
        except OmniEmbedError:
            canonical.append(name)
    return {MODEL_HEADER: ", ".join(dict.fromkeys(canonical))}


_INPUTS = ("text", "image_url", "image_file", "audio_url", "audio_file")
_NONE = SkipJsonSchema[None]


@router.post("/embed", responses={200: {"model": EmbeddingResponse, "description": "The embeddings."}},
             openapi_extra=any_of_fields("multipart/form-data", *_INPUTS))
async def embed(
    state: Annotated[ServiceState, Depends(get_state)],
    face: Annotated[TwelveLabsFace, Depends(get_face)],
    model_name: Annotated[str, Form(json_schema_extra=NAMED)],
    text: Annotated[str | _NONE, Form(json_schema_extra=TEXT)] = None,
    text_truncate: Annotated[str | _NONE, Form(json_schema_extra=one_of("none", "start", "end"))] = None,
    image_url: Annotated[str | _NONE, Form(json_schema_extra=URL)] = None,
    image_file: Annotated[UploadFile | None, File(json_schema_extra=no_null)] = None,
    audio_url: Annotated[str | _NONE, Form(json_schema_extra=URL)] = None,
    audio_file: Annotated[UploadFile | None, File(json_schema_extra=no_null)] = None,
    audio_start_offset_sec: Annotated[float | _NONE, Form(json_schema_extra=NOT_NEGATIVE)] = None,
) -> JSONResponse:
    """Embed a text, an image and/or audio (at least one of them)."""
    image_bytes, image_name = await _read(image_file)
    audio_bytes, audio_name = await _read(audio_file)
    request = TwelveLabsRequest(
        model_name=model_name, text=text, text_truncate=text_truncate,
        image_url=image_url or None, image_file=image_bytes, image_filename=image_name,
        audio_url=audio_url or None, audio_file=audio_bytes, audio_filename=audio_name,
        audio_start_offset_sec=audio_start_offset_sec,
    )
    batcher = state.require_batcher()

    async def run(model: str, modality: Modality, items: list[Any], options: dict[str, Any]) -> list[Any]:
        model = face.serving(model, modality)
        results: list[Embedding | OmniEmbedError] = await batcher.embed(model, modality, items, **options)
        return results

    async def fit(model: str, text: str, cap: int | None, truncate: str) -> Fitted | None:
        name = state.engine.served_spec(model).name  # in memory: a client's name is never a path or a hub id
        fitted: Fitted | None = await batcher.run_sync(fit_with_engine, state.engine, name, text, cap, truncate)
        return fitted

    served: list[str] = []
    response = await create_embedding(request, run, state.settings, fit=fit, describe=public_message,
                                      joint=await face.joint_model(), served=served)
    return JSONResponse(response.to_json(), headers=model_header(state, served))


@router.post("/embed-v2", responses={200: {"description": "The embeddings (`data`) and the input's `metadata`."}})
async def embed_v2(
    body: EmbedV2Request,
    state: Annotated[ServiceState, Depends(get_state)],
    face: Annotated[TwelveLabsFace, Depends(get_face)],
) -> JSONResponse:
    """Embed v2: text, image, text_image, audio, video or multi_input, answered at once."""
    response, served = await embed_now(face, body)
    return JSONResponse(response, headers=model_header(state, served))
