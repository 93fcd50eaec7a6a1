"""TwelveLabs Embed v2 (``POST /v1.3/embed-v2`` and its tasks) and the checks its video tasks share with v1.

- **Input types.** ``text``, ``image``, ``text_image``, ``audio``, ``video`` and ``multi_input`` (text and
  images) are embedded now; ``/embed-v2/tasks`` takes ``video``, ``audio`` and ``image``. ``text_image`` and
  a ``multi_input`` of text and images need one model for both (the joint model under a Marengo name): its
  answer is the normalised mean of the parts' unit vectors. An input type that no configured model can
  serve (``document``, speech ``transcription``, text with images but no joint model) is refused with
  ``parameter_invalid`` (400), in TwelveLabs' error shape.
- **Media.** ``media_source`` is ``url`` (the guarded fetcher) or ``base64_string``; there is no asset
  store, so ``asset_id`` is refused. Clips are ``segmentation.fixed.duration_sec`` long (also inside
  Marengo 3.5's ``temporal`` object; default 6 s); ``dynamic`` segmentation is refused (clips here are fixed).
  ``embedding_option`` ``visual`` and ``audio``: the default asks for both, and a video without a sound
  track is then embedded without it. ``embedding_scope`` ``clip`` (``local``) and ``asset``.
- **Text.** At most 77 tokens under a Marengo name, counted with the serving model's tokenizer;
  ``auto_truncate: false`` refuses a longer text, otherwise it is cut at the end.
- ``embedding_dimension`` must be the serving model's own dimension (omniembed does not shorten vectors);
  ``embedding_uncertainty`` and ``fused_embedding`` are refused.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.service.openai.schemas import TEXT
from omniembed.service.twelvelabs.embed import Fitted, fit_request_text, fit_with_engine
from omniembed.service.twelvelabs.forms import BASE64, NAMED, NOT_NEGATIVE, URL, each_of, one_of
from omniembed.service.twelvelabs.tasks import MediaPlan, TwelveLabsFace, run_plan, v2_data, v2_metadata

__all__ = ["EmbedV2Request", "EmbedV2TaskRequest", "check_clip", "embed_now", "plan_task", "video_models"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _required_by_type(*kinds: str) -> dict[str, Any]:
    """The body's schema beside its fields: the object named by ``input_type`` is required (JSON Schema
    2020-12, as OpenAPI 3.1 reads it). The routes check it themselves, in TwelveLabs' words."""
    return {"anyOf": [{"properties": {"input_type": {"const": kind}, kind: {"type": "object"}}, "required": [kind]}
                      for kind in kinds]}


_NO_NULL = SkipJsonSchema[None]
_FIXED: dict[str, Any] = {
    "type": "object", "required": ["fixed"],
    "properties": {"strategy": {"const": "fixed"},
                   "fixed": {"type": "object", "required": ["duration_sec"],
                             "properties": {"duration_sec": {"type": "number", "minimum": 2, "maximum": 10}}}},
}
_SEGMENTATION: dict[str, Any] = {"anyOf": [
    {"type": "object", "maxProperties": 0},
    {**_FIXED, "properties": {**_FIXED["properties"], "temporal": False}},
    {"type": "object", "required": ["temporal"], "properties": {"temporal": _FIXED}},
]}
"""Clips of a fixed length (2 to 10 s), also inside Marengo 3.5's ``temporal`` object; ``{}``: 6 s."""


class MediaSource(_In):
    """A URL or base64 bytes (``asset_id`` is refused with its own message: this server keeps no assets)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["url"]}, {"required": ["base64_string"]}]})

    url: str | _NO_NULL = Field(None, json_schema_extra=URL)
    base64_string: str | _NO_NULL = Field(None, json_schema_extra=BASE64)
    asset_id: SkipJsonSchema[str | None] = None


class TextInput(_In):
    input_text: str = Field(json_schema_extra=TEXT)


class ImageInput(_In):
    media_source: MediaSource


class TextImageInput(_In):
    media_source: MediaSource
    input_text: str = Field(json_schema_extra=TEXT)


_NOT_FUSED: dict[str, Any] = {"items": {"type": "string", "not": {"const": "fused_embedding"}}}


class MediaInput(_In):
    """Audio or video: the source, the span, the clips and what to embed."""

    media_source: MediaSource
    start_sec: float | None = Field(None, json_schema_extra=NOT_NEGATIVE)
    end_sec: float | None = Field(None, json_schema_extra={"exclusiveMinimum": 0})
    segmentation: dict[str, Any] | None = Field(None, json_schema_extra=_SEGMENTATION)
    embedding_option: list[str] | None = Field(None, json_schema_extra=each_of("visual", "audio"))
    embedding_scope: list[str] | None = Field(None, json_schema_extra=each_of("clip", "local", "asset"))
    embedding_type: list[str] | None = Field(None, json_schema_extra=_NOT_FUSED)


class AudioInput(MediaInput):
    """Audio: embedded from ``start_sec`` to its end, with the ``audio`` option only."""

    end_sec: SkipJsonSchema[float | None] = None
    embedding_option: list[str] | None = Field(None, json_schema_extra=each_of("audio"))


class MultiSource(MediaSource):
    name: str | None = None
    media_type: str = Field(json_schema_extra=one_of("image"))


class MultiInput(_In):
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"input_text": {"type": "string"}}, "required": ["input_text"]},
        {"properties": {"media_sources": {"type": "array"}}, "required": ["media_sources"]}]})

    input_text: str | None = Field(None, json_schema_extra=TEXT)
    media_sources: list[MultiSource] | None = Field(None, json_schema_extra={"minItems": 1, "maxItems": 10})


class EmbedV2TaskRequest(_In):
    model_config = ConfigDict(json_schema_extra=_required_by_type("video", "audio", "image"))

    input_type: str = Field(json_schema_extra=one_of("video", "audio", "image"))
    model_name: str = Field(json_schema_extra=NAMED)
    embedding_uncertainty: bool | None = Field(None, json_schema_extra={"enum": [False, None]})
    embedding_dimension: int | None = Field(None, json_schema_extra={"minimum": 1})
    audio: AudioInput | None = None
    video: MediaInput | None = None
    image: ImageInput | None = None
    document: SkipJsonSchema[dict[str, Any] | None] = None


class EmbedV2Request(EmbedV2TaskRequest):
    model_config = ConfigDict(json_schema_extra=_required_by_type(
        "text", "image", "text_image", "audio", "video", "multi_input"))

    input_type: str = Field(json_schema_extra=one_of("text", "image", "text_image", "audio", "video", "multi_input"))
    auto_truncate: bool | None = None
    text: TextInput | None = None
    text_image: TextImageInput | None = None
    multi_input: MultiInput | None = None


def _invalid(message: str, param: str) -> ParameterInvalid:
    return ParameterInvalid(message, param=param)


def source_of(media: MediaSource, param: str) -> tuple[str | None, bytes | None]:
    """``(url, None)`` or ``(None, the decoded bytes)``."""
    if media.asset_id is not None and media.url is None and media.base64_string is None:
        raise _invalid(f"The {param}.asset_id parameter is not supported: this server keeps no assets. "
                       "Send url or base64_string instead.", f"{param}.asset_id")
    if media.url:
        return media.url, None
    if media.base64_string:
        try:
            return None, base64.b64decode(media.base64_string, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"The {param}.base64_string parameter is not valid base64.",
                           f"{param}.base64_string") from None
    raise ParameterNotProvided(f"The {param} needs url or base64_string.", param=param)


def check_clip(value: float | None, start: float | None, end: float | None, names: tuple[str, str, str]) -> None:
    """TwelveLabs' bounds: a clip of 2 to 10 s, offsets >= 0, the end after the start."""
    clip, first, last = names
    if value is not None and not (math.isfinite(value) and 2 <= value <= 10):
        raise _invalid(f"The {clip} parameter is invalid. It must be between 2 and 10 seconds.", clip)
    if start is not None and not (math.isfinite(start) and start >= 0):
        raise _invalid(f"The {first} parameter is invalid. It must be 0 or more.", first)
    if end is not None and not (math.isfinite(end) and end > (start or 0)):
        raise _invalid(f"The {last} parameter is invalid. It must be greater than {first}.", last)


def video_models(face: TwelveLabsFace, model_name: str, options: list[str] | None, param: str,
                 audio_input: bool = False) -> tuple[dict[str, str], bool]:
    """The model of each embedding option, and whether ``audio`` was only defaulted (not asked for)."""
    allowed = ("audio",) if audio_input else ("visual", "audio")
    wanted = list(dict.fromkeys(options)) if options else list(allowed)
    for option in wanted:
        if option == "transcription":
            raise _invalid(f"The {param} value transcription is not supported: omniembed has no speech "
                           f"transcription model. Use {' or '.join(allowed)}.", param)
        if option not in allowed:
            raise _invalid(f"The {param} parameter is invalid. Use {' or '.join(allowed)}.", param)
    models: dict[str, str] = {}
    defaulted = not options and not audio_input
    first: OmniEmbedError | None = None
    for option in wanted:
        modality = Modality.IMAGE if option == "visual" else Modality.AUDIO
        try:
            models[option] = face.model(model_name, modality)
        except OmniEmbedError as exc:
            if not defaulted:
                raise
            first = first or exc  # not asked for: the options the named model serves are embedded
    if not models:
        assert first is not None
        raise first
    return models, defaulted and "audio" in models and "visual" in models


def _scopes(scopes: list[str] | None, param: str) -> list[str]:
    out = ["clip" if s == "local" else s for s in (scopes or ["clip", "asset"])]
    if not out or any(s not in ("clip", "asset") for s in out):
        raise _invalid(f"The {param} parameter is invalid. Use clip (or local) and/or asset.", param)
    return list(dict.fromkeys(out))


def _clip_sec(segmentation: dict[str, Any] | None, param: str) -> float:
    if not segmentation:
        return 6.0
    seg = segmentation.get("temporal", segmentation)
    seg = seg if isinstance(seg, dict) else {}
    strategy = seg.get("strategy") or ("fixed" if "fixed" in seg else "dynamic" if "dynamic" in seg else None)
    if strategy != "fixed":
        raise _invalid(f"The {param}.strategy {strategy!r} is not supported: omniembed cuts fixed clips. Use "
                       "strategy fixed with fixed.duration_sec.", f"{param}.strategy")
    fixed = seg.get("fixed")
    value = fixed.get("duration_sec") if isinstance(fixed, dict) else None
    if not isinstance(value, (int, float)):
        raise ParameterNotProvided(f"The {param}.fixed.duration_sec parameter is required.", param=param)
    check_clip(float(value), None, None, (f"{param}.fixed.duration_sec", "", ""))
    return float(value)


def _media_plan(face: TwelveLabsFace, req: EmbedV2TaskRequest) -> tuple[MediaPlan, bytes | None]:
    kind = req.input_type
    if kind == "image" and req.image is not None:
        url, data = source_of(req.image.media_source, "image.media_source")
        plan = MediaPlan(req.model_name, "image", {"visual": face.model(req.model_name, Modality.IMAGE)},
                         ["asset"], url=url)
        return plan, data
    media = req.video if kind == "video" else req.audio if kind == "audio" else None
    if media is None:
        raise ParameterNotProvided(f"The {kind} parameter is required when input_type is {kind}.", param=kind)
    url, data = source_of(media.media_source, f"{kind}.media_source")
    if kind == "audio" and media.end_sec is not None:
        raise _invalid("The audio.end_sec parameter is not supported: omniembed embeds audio from start_sec "
                       "to its end. Leave end_sec out.", "audio.end_sec")
    check_clip(None, media.start_sec, media.end_sec, ("", f"{kind}.start_sec", f"{kind}.end_sec"))
    if "fused_embedding" in (media.embedding_type or []):
        raise _invalid(f"The {kind}.embedding_type value fused_embedding is not supported. Use "
                       "separate_embedding.", f"{kind}.embedding_type")
    models, defaulted = video_models(face, req.model_name, media.embedding_option, f"{kind}.embedding_option",
                                     audio_input=kind == "audio")
    plan = MediaPlan(req.model_name, kind, models, _scopes(media.embedding_scope, f"{kind}.embedding_scope"),
                     url=url, clip_sec=_clip_sec(media.segmentation, f"{kind}.segmentation"),
                     start_sec=float(media.start_sec or 0.0), end_sec=media.end_sec, defaulted_audio=defaulted)
    return plan, data


def _check_request(req: EmbedV2TaskRequest, kinds: tuple[str, ...]) -> None:
    if not req.model_name.strip():
        raise ParameterNotProvided("The model_name parameter is required but was not provided.", param="model_name")
    if req.input_type == "document":
        raise _invalid("The input_type document is not supported: no model on this server embeds documents.",
                       "input_type")
    if req.input_type not in kinds:
        raise _invalid(f"The input_type parameter is invalid. Use one of: {', '.join(kinds)}.", "input_type")
    if req.embedding_uncertainty:
        raise _invalid("The embedding_uncertainty parameter is not supported: omniembed's models give no "
                       "uncertainty. Leave it out.", "embedding_uncertainty")


def _check_dimension(face: TwelveLabsFace, req: EmbedV2TaskRequest, models: list[str]) -> None:
    if req.embedding_dimension is None:
        return
    for model in models:
        dim = face.state.engine.served_spec(model).dim
        if dim and dim != req.embedding_dimension:
            raise _invalid(f"The embedding_dimension parameter is invalid: {model}, which serves this request, "
                           f"gives {dim} dimensions. Leave it out or set it to {dim}.", "embedding_dimension")


async def plan_task(face: TwelveLabsFace, req: EmbedV2TaskRequest) -> tuple[MediaPlan, bytes | None]:
    """A v2 task's plan and its uploaded bytes (to be kept until it runs)."""
    await face.joint_model()
    _check_request(req, ("video", "audio", "image"))
    plan, data = _media_plan(face, req)
    _check_dimension(face, req, list(plan.models.values()))
    return plan, data


# -- embedding now -------------------------------------------------------------------------------------------


async def _vector(face: TwelveLabsFace, model: str, modality: Modality, item: Any, **options: Any) -> np.ndarray:
    result = (await face.state.require_batcher().embed(model, modality, [item], **options))[0]
    if isinstance(result, OmniEmbedError):
        raise result.at_index(None)
    assert isinstance(result, Embedding)
    return np.asarray(result.vector, dtype=np.float64)


async def _text_vector(face: TwelveLabsFace, req: EmbedV2Request, model: str, text: str) -> np.ndarray:
    truncate = "none" if req.auto_truncate is False else "end"

    async def fit(name: str, body: str, cap: int | None, how: str) -> Fitted | None:
        fitted: Fitted | None = await face.state.require_batcher().run_sync(fit_with_engine, face.state.engine,
                                                                            name, body, cap, how)
        return fitted

    text = await fit_request_text(fit, req.model_name, model, text, truncate, param="text.input_text",
                                  fix="set auto_truncate to true")
    return await _vector(face, model, Modality.TEXT, text, truncate=truncate)


def _joined(vectors: list[np.ndarray]) -> list[float]:
    total = sum(v / (np.linalg.norm(v) or 1.0) for v in vectors)
    out = np.asarray(total) / (np.linalg.norm(total) or 1.0)
    return [float(x) for x in out]


def _one_model(face: TwelveLabsFace, req: EmbedV2Request, what: str) -> str:
    text, image = face.model(req.model_name, Modality.TEXT), face.model(req.model_name, Modality.IMAGE)
    if text != image:
        raise _invalid(f"The input_type {req.input_type} ({what}) needs one model that embeds text and images in "
                       f"one space, and this server has none for {req.model_name} (text: {text}, images: "
                       f"{image}). Its operator can set OMNIEMBED_JOINT_MODEL (e.g. a CLIP model).", "input_type")
    return text


async def embed_now(face: TwelveLabsFace, req: EmbedV2Request) -> tuple[dict[str, Any], list[str]]:
    """Answer ``POST /embed-v2``: the response body and the models that served it."""
    await face.joint_model()
    _check_request(req, ("text", "image", "text_image", "audio", "video", "multi_input"))
    kind = req.input_type
    if kind in ("video", "audio", "image"):
        plan, data = _media_plan(face, req)
        _check_dimension(face, req, list(plan.models.values()))
        result = await run_plan(face.state, plan, data if data is not None else plan.url)
        return {"data": v2_data(result, kind), "metadata": v2_metadata(plan, result)}, result["models"]
    if kind == "text":
        if req.text is None:
            raise ParameterNotProvided("The text parameter is required when input_type is text.", param="text")
        model = face.model(req.model_name, Modality.TEXT)
        _check_dimension(face, req, [model])
        vector = await _text_vector(face, req, model, req.text.input_text)
        return {"data": [{"embedding": [float(x) for x in vector]}]}, [model]
    if kind == "text_image":
        if req.text_image is None:
            raise ParameterNotProvided("The text_image parameter is required when input_type is text_image.",
                                       param="text_image")
        model = _one_model(face, req, "text and an image")
        _check_dimension(face, req, [model])
        url, data = source_of(req.text_image.media_source, "text_image.media_source")
        vectors = [await _text_vector(face, req, model, req.text_image.input_text),
                   await _vector(face, model, Modality.IMAGE, url or data)]
        meta = {"input_type": "text_image", **({"input_url": url} if url else {})}
        return {"data": [{"embedding": _joined(vectors)}], "metadata": meta}, [model]
    return await _multi(face, req)


async def _multi(face: TwelveLabsFace, req: EmbedV2Request) -> tuple[dict[str, Any], list[str]]:
    multi = req.multi_input
    if multi is None or (not multi.input_text and not multi.media_sources):
        raise ParameterNotProvided("The multi_input parameter needs input_text, media_sources or both.",
                                   param="multi_input")
    sources = multi.media_sources or []
    for k, s in enumerate(sources):
        if s.media_type != "image":
            raise _invalid(f"The multi_input.media_sources[{k}].media_type {s.media_type!r} is not supported: "
                           "omniembed combines text with images only.", f"multi_input.media_sources[{k}]")
    if len(sources) > 10:
        raise _invalid("The multi_input.media_sources parameter takes at most 10 media sources.",
                       "multi_input.media_sources")
    if multi.input_text and sources:
        model = _one_model(face, req, "text with images")
    else:
        model = face.model(req.model_name, Modality.TEXT if multi.input_text else Modality.IMAGE)
    _check_dimension(face, req, [model])
    vectors = [await _text_vector(face, req, model, multi.input_text)] if multi.input_text else []
    for k, s in enumerate(sources):
        url, data = source_of(s, f"multi_input.media_sources[{k}]")
        vectors.append(await _vector(face, model, Modality.IMAGE, url or data))
    return {"data": [{"embedding": _joined(vectors)}], "metadata": {"input_type": "multi_input"}}, [model]
