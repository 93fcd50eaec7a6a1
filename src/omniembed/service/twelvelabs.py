"""TwelveLabs ``embed.create`` semantics, independent of HTTP (the route and ``omniembed.Client`` share it).

- At least one modality; none is ``parameter_not_provided``.
- For image and audio, the URL takes precedence over the file when both are given.
- ``text_truncate``: ``start``, ``end`` (default) or ``none``; anything else is ``parameter_invalid``.
- When one modality of a multi-modality call fails, the others still answer and the failed one carries
  ``error_message``; when every requested modality fails, the first error is the answer.
- A TwelveLabs model name (``Marengo-retrieval-2.7``, ``marengo3.0`` ...) maps to the configured default
  model of each modality; any omniembed model name is used for every modality it supports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.inputs.text import check_truncate
from omniembed.service.schemas import (
    AudioEmbeddingResult,
    AudioSegment,
    EmbeddingMetadata,
    EmbeddingResponse,
    ImageEmbeddingResult,
    Segment,
    TextEmbeddingResult,
)
from omniembed.settings import Settings

__all__ = ["Runner", "TwelveLabsRequest", "create_embedding"]

Runner = Callable[[str, Modality, list[Any], dict[str, Any]], Awaitable[list[Embedding | OmniEmbedError]]]


@dataclass
class TwelveLabsRequest:
    model_name: str | None
    text: str | None = None
    text_truncate: str | None = None
    image_url: str | None = None
    image_file: bytes | None = None
    image_filename: str | None = None
    audio_url: str | None = None
    audio_file: bytes | None = None
    audio_filename: str | None = None
    audio_start_offset_sec: float | None = None


def model_for(model_name: str, modality: Modality, settings: Settings) -> str:
    if model_name.strip().lower().startswith("marengo"):
        return {
            Modality.TEXT: settings.default_text_model,
            Modality.IMAGE: settings.default_image_model,
            Modality.AUDIO: settings.default_audio_model,
        }[modality]
    return model_name


def _metadata(url: str | None, filename: str | None) -> EmbeddingMetadata:
    return EmbeddingMetadata(input_url=url) if url else EmbeddingMetadata(input_filename=filename or "upload")


def _segment(vector: Any) -> Segment:
    return Segment.model_validate({"float": vector.tolist()})


def _audio_segments(e: Embedding, offset: float) -> list[AudioSegment]:
    if e.data.ndim == 1:
        return [AudioSegment.model_validate({"float": e.data.tolist(), "start_offset_sec": offset})]
    return [
        AudioSegment.model_validate(
            {"float": row.tolist(), "start_offset_sec": seg.start_sec, "end_offset_sec": seg.end_sec}
        )
        for row, seg in zip(e.data, e.meta.segments, strict=True)
    ]


async def _one(run: Runner, model: str, modality: Modality, item: Any, options: dict[str, Any]) -> Any:
    try:
        return (await run(model, modality, [item], options))[0]
    except OmniEmbedError as exc:
        return exc


async def create_embedding(req: TwelveLabsRequest, run: Runner, settings: Settings) -> EmbeddingResponse:
    if not req.model_name or not req.model_name.strip():
        raise ParameterNotProvided("The model_name parameter is required.", param="model_name")
    try:
        truncate = check_truncate(req.text_truncate)
    except ParameterInvalid as exc:
        raise ParameterInvalid(
            "The text_truncate parameter is invalid. You should use one of the following values: none, start, end.",
            param="text_truncate",
        ) from exc
    offset = 0.0 if req.audio_start_offset_sec is None else req.audio_start_offset_sec
    if offset < 0:
        raise ParameterInvalid(
            "The audio_start_offset_sec parameter is invalid. It must be 0 or more.", param="audio_start_offset_sec"
        )
    jobs: dict[str, Awaitable[Any]] = {}
    if req.text is not None:
        model = model_for(req.model_name, Modality.TEXT, settings)
        jobs["text"] = _one(run, model, Modality.TEXT, req.text, {"truncate": truncate})
    if req.image_url or req.image_file is not None:
        model = model_for(req.model_name, Modality.IMAGE, settings)
        jobs["image"] = _one(run, model, Modality.IMAGE, req.image_url or req.image_file, {})
    if req.audio_url or req.audio_file is not None:
        model = model_for(req.model_name, Modality.AUDIO, settings)
        options = {"start_offset_sec": offset} if offset else {}
        jobs["audio"] = _one(run, model, Modality.AUDIO, req.audio_url or req.audio_file, options)
    if not jobs:
        raise ParameterNotProvided(
            "Provide at least one input: text, image_url or image_file, audio_url or audio_file.", param="text"
        )
    results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    errors = [r for r in results.values() if isinstance(r, OmniEmbedError)]
    if len(errors) == len(results):
        raise errors[0]
    response = EmbeddingResponse(model_name=req.model_name)
    if "text" in results:
        r = results["text"]
        response.text_embedding = (
            TextEmbeddingResult(error_message=r.message)
            if isinstance(r, OmniEmbedError)
            else TextEmbeddingResult(segments=[_segment(r.vector)])
        )
    if "image" in results:
        r = results["image"]
        meta = _metadata(req.image_url, req.image_filename)
        response.image_embedding = (
            ImageEmbeddingResult(error_message=r.message, metadata=meta)
            if isinstance(r, OmniEmbedError)
            else ImageEmbeddingResult(segments=[_segment(r.vector)], metadata=meta)
        )
    if "audio" in results:
        r = results["audio"]
        meta = _metadata(req.audio_url, req.audio_filename)
        response.audio_embedding = (
            AudioEmbeddingResult(error_message=r.message, metadata=meta)
            if isinstance(r, OmniEmbedError)
            else AudioEmbeddingResult(segments=_audio_segments(r, offset), metadata=meta)
        )
    return response
