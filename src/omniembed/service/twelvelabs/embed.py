"""TwelveLabs ``embed.create`` semantics, independent of HTTP (the route and ``omniembed.Client`` share it).

- At least one modality; none is ``parameter_not_provided``.
- For image and audio, the URL takes precedence over the file when both are given.
- ``text_truncate``: ``start``, ``end`` (default) or ``none``; anything else is ``parameter_invalid``.
- When one modality of a multi-modality call fails, the others still answer and the failed one carries
  ``error_message``; when every requested modality fails, the first error is the answer.
- A TwelveLabs model name (``Marengo-retrieval-2.7``, ``marengo3.0`` ...) maps text, images (and video
  frames) to the joint text-image model (``OMNIEMBED_JOINT_MODEL``, ``resolve_joint``), so they share one
  space as Marengo's do; without one, and for audio, to the configured default model of each modality. Any
  omniembed model name is used for every modality it supports.
- Text limits. A Marengo name takes at most 77 tokens, as TwelveLabs documents, whatever model serves it;
  another name takes its model's own limit. Tokens are counted with the serving model's tokenizer, special
  tokens included. A longer text is cut to the limit (``end`` keeps its beginning, ``start`` its end) or,
  with ``text_truncate=none``, refused with ``parameter_invalid`` (HTTP 400, as TwelveLabs answers a bad
  parameter).
- Messages name TwelveLabs' parameters (``text_truncate``, ``audio_start_offset_sec``). One call holds one
  item per modality, so an item's error is shown as it is: the modality it belongs to names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.inputs.text import check_truncate
from omniembed.service.twelvelabs.schemas import (
    AudioEmbeddingResult,
    AudioSegment,
    EmbeddingMetadata,
    EmbeddingResponse,
    ImageEmbeddingResult,
    Segment,
    TextEmbeddingResult,
)
from omniembed.settings import Settings

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = [
    "MARENGO_MAX_TOKENS",
    "Fitted",
    "Runner",
    "TextFitter",
    "fit_request_text",
    "TwelveLabsRequest",
    "create_embedding",
    "fit_text",
    "fit_with_engine",
    "is_marengo",
    "joint_warning",
    "model_for",
    "resolve_joint",
]

log = logging.getLogger(__name__)
Runner = Callable[[str, Modality, list[Any], dict[str, Any]], Awaitable[list[Embedding | OmniEmbedError]]]
MARENGO_MAX_TOKENS = 77
"""TwelveLabs' documented limit of a Marengo text embedding, in tokens."""


@dataclass(frozen=True)
class Fitted:
    """A text cut to ``limit`` tokens of the serving model's tokenizer (``tokens``: its count before)."""

    text: str
    tokens: int
    limit: int


TextFitter = Callable[[str, str, "int | None", str], Awaitable["Fitted | None"]]
"""``(model, text, cap, truncate)``: the text fitted to ``min(cap, the model's own limit)`` tokens with
``fit_text``, or None when the model has no tokenizer to count with (the engine then applies its own limit)."""


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


def is_marengo(model_name: str) -> bool:
    return model_name.strip().lower().startswith("marengo")


def model_for(model_name: str, modality: Modality, settings: Settings, joint: str | None = None) -> str:
    """The model that serves ``modality`` under a client's ``model_name`` (``joint``: the resolved joint
    model, or None); video frames are served as ``Modality.IMAGE``."""
    if is_marengo(model_name):
        if joint is not None and modality in (Modality.TEXT, Modality.IMAGE):
            return joint
        return {
            Modality.TEXT: settings.default_text_model,
            Modality.IMAGE: settings.default_image_model,
            Modality.AUDIO: settings.default_audio_model,
        }[modality]
    return model_name


def resolve_joint(engine: Engine) -> str | None:
    """The joint text-image model Marengo names map to, by ``settings.joint_model``: a model name or folder
    (``Engine.serve``), ``auto`` (a model embedding both text and images whose weights are here: CLIP first,
    then the operator's start-up models) or ``none``. None when there is none; the server then warns. Reads
    the disk: call it off the event loop."""
    settings = engine.settings
    wanted = settings.joint_model.strip()
    if wanted.lower() in ("", "none", "off"):
        return None
    if wanted.lower() != "auto":
        try:
            spec = engine.serve(wanted)
        except OmniEmbedError as exc:
            log.error("OMNIEMBED_JOINT_MODEL=%s cannot be used: %s", wanted, exc.message)
            return None
        if not {Modality.TEXT, Modality.IMAGE} <= set(spec.modalities):
            log.error("OMNIEMBED_JOINT_MODEL=%s embeds %s, not both text and images; it is not used", wanted,
                      ", ".join(map(str, spec.modalities)))
            return None
        if not engine.weights_available(spec):
            log.error("OMNIEMBED_JOINT_MODEL=%s: the weights of %s are not on this machine "
                      "(`omniembed models prepare %s`); it is not used", wanted, spec.name, spec.name)
            return None
        return spec.name
    started: set[str] = set()
    for name in settings.serve_models:  # the operator's start-up models and folders (a CLIP folder, say)
        if engine.registry.get(name) is None and not Path(name).expanduser().is_dir():
            continue  # a hub id: never downloaded here (name it in OMNIEMBED_JOINT_MODEL to use it)
        with contextlib.suppress(OmniEmbedError):  # the start-up load reports it
            started.add(engine.serve(name).name)
    joint = [s for s in engine.available_specs(max_age_sec=0) if {Modality.TEXT, Modality.IMAGE} <= set(s.modalities)]
    joint.sort(key=lambda s: (not s.loader.startswith("omniembed.models.clip:"), s.name not in started, s.name))
    return joint[0].name if joint else None


def joint_warning(settings: Settings) -> str:
    """What the server logs at start when Marengo names have no joint model to map to."""
    s = settings
    return (
        f"no joint text-image model (OMNIEMBED_JOINT_MODEL={s.joint_model}): TwelveLabs' Marengo names map text "
        f"to {s.default_text_model}, images and video to {s.default_image_model} and audio to "
        f"{s.default_audio_model}, separate embedding spaces, so a text cannot retrieve images or video. "
        "Cross-modal similarity needs a joint model: install CLIP (`omniembed models prepare clip-vit-b32`) or "
        "set OMNIEMBED_JOINT_MODEL."
    )


# -- text limits ----------------------------------------------------------------------------------------


def fit_text(tokenizer: Any, text: str, limit: int, truncate: str) -> Fitted:
    """``text`` cut at a token boundary so that ``tokenizer`` (a Hugging Face fast tokenizer) makes at most
    ``limit`` tokens of it, special tokens included: ``end`` keeps the beginning, ``start`` the end. With
    ``none``, or when it fits, the text is returned whole (``tokens`` tells whether it fits)."""

    def count(s: str) -> int:
        return len(tokenizer(s, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    enc = tokenizer(text, add_special_tokens=True, truncation=False, return_offsets_mapping=True,
                    return_special_tokens_mask=True, verbose=False)
    n = len(enc["input_ids"])
    if n <= limit or truncate == "none":
        return Fitted(text, n, limit)
    content = [k for k, special in enumerate(enc["special_tokens_mask"]) if not special]
    offsets = enc["offset_mapping"]
    budget = limit - (n - len(content))
    while budget > 0:  # a cut that re-tokenises into more tokens (rare) is cut one token shorter
        cut = text[: offsets[content[budget - 1]][1]] if truncate == "end" else text[offsets[content[-budget]][0]:]
        if count(cut) <= limit:
            return Fitted(cut, n, limit)
        budget -= 1
    return Fitted(text, n, limit)  # the special tokens alone are over the limit: the engine decides


def fit_with_engine(engine: Engine, model: str, text: str, cap: int | None, truncate: str) -> Fitted | None:
    """``fit_text`` with ``model``'s own tokenizer and limit (capped at ``cap``). Loads the model: blocking,
    so the server runs it off the event loop (the batcher's preparation thread, ``run_sync``)."""
    spec = engine.spec(model)
    if Modality.TEXT not in spec.modalities or not isinstance(text, str) or not text.strip():
        return None
    if len(text) > engine.settings.max_text_chars or not _encodable(text):
        return None  # the engine refuses it with its own, clearer error
    preparer = engine.load(spec.name).preparers.get(Modality.TEXT)
    tokenizer, own = getattr(preparer, "tokenizer", None), getattr(preparer, "max_tokens", None)
    if tokenizer is None or not isinstance(own, int):
        return None
    try:
        return fit_text(tokenizer, text, own if cap is None else min(cap, own), truncate)
    except Exception:  # a tokenizer failing here fails again in the engine, which reports it as the item's error
        log.warning("counting the tokens of a text for %s failed; the engine applies its own limit", spec.name,
                    exc_info=True)
        return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- errors in TwelveLabs' terms ----------------------------------------------------------------------------

_OWN_PARAMS = {"truncate": "text_truncate", "start_offset_sec": "audio_start_offset_sec"}
"""The engine's parameter names -> TwelveLabs' (a message that names its parameter is re-worded with it)."""


def _own_terms(exc: OmniEmbedError) -> OmniEmbedError:
    """``exc`` with its ``param`` field in TwelveLabs' terms (the engine's are ``truncate``,
    ``start_offset_sec``)."""
    own = _OWN_PARAMS.get(exc.param or "")
    return exc if own is None else exc.replace(param=own)


def _too_long(fitted: Fitted, model_name: str, served: str, param: str, fix: str) -> ParameterInvalid:
    if is_marengo(model_name) and fitted.limit == MARENGO_MAX_TOKENS:
        limit = (f"{model_name} takes at most {fitted.limit} tokens (counted with the tokenizer of {served}, "
                 "the model that serves it here)")
    else:
        limit = f"model {served!r} takes at most {fitted.limit} tokens"
    return ParameterInvalid(
        f"The {param} parameter is invalid. The text is {fitted.tokens} tokens long and {limit}. "
        f"Shorten the text, or {fix}.",
        param=param,
    )


async def fit_request_text(fit: TextFitter, model_name: str, model: str, text: str, truncate: str, *,
                           param: str = "text", fix: str = "set text_truncate to end or start") -> str:
    """``text`` as the serving ``model`` will embed it for a request naming ``model_name``: cut to the
    Marengo limit (``MARENGO_MAX_TOKENS``) or the model's own, at the end or start as ``truncate`` says. With
    ``truncate="none"`` a text over the limit is refused (``ParameterInvalid`` naming ``param`` and how to
    ``fix`` it in the request's own terms); a model without a tokenizer gets the text as it is."""
    fitted = await fit(model, text, MARENGO_MAX_TOKENS if is_marengo(model_name) else None, truncate)
    if fitted is None:
        return text
    if fitted.tokens > fitted.limit and truncate == "none":
        raise _too_long(fitted, model_name, model, param, fix)
    return fitted.text


# -- the call ------------------------------------------------------------------------------------------


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


async def _text(req: TwelveLabsRequest, run: Runner, model: str, truncate: str, fit: TextFitter | None) -> Any:
    assert req.text is not None and req.model_name is not None
    text = req.text
    if fit is not None:
        try:
            text = await fit_request_text(fit, req.model_name, model, text, truncate)
        except OmniEmbedError as exc:
            return exc
    return await _one(run, model, Modality.TEXT, text, {"truncate": truncate})


async def create_embedding(
    req: TwelveLabsRequest,
    run: Runner,
    settings: Settings,
    fit: TextFitter | None = None,
    describe: Callable[[OmniEmbedError], str] | None = None,
    joint: str | None = None,
    served: list[str] | None = None,
) -> EmbeddingResponse:
    """Answer one TwelveLabs embed call. ``fit`` applies the text limits (without it, only the engine's
    own); ``describe`` words a failed modality's ``error_message`` (default: the error's message); ``joint``
    is the joint model for Marengo names (``model_for``); the models that serve the call are appended to
    ``served``."""
    if not req.model_name or not req.model_name.strip():
        raise ParameterNotProvided("The model_name parameter is required but was not provided.", param="model_name")
    try:
        truncate = check_truncate(req.text_truncate)
    except ParameterInvalid as exc:
        raise ParameterInvalid(
            "The text_truncate parameter is invalid. You should use one of the following values: none, start, end.",
            param="text_truncate",
        ) from exc
    offset = 0.0 if req.audio_start_offset_sec is None else float(req.audio_start_offset_sec)
    if not math.isfinite(offset) or offset < 0:
        raise ParameterInvalid(
            "The audio_start_offset_sec parameter is invalid. It must be a number of seconds, 0 or more.",
            param="audio_start_offset_sec",
        )
    jobs: dict[str, Awaitable[Any]] = {}
    served = served if served is not None else []
    if req.text is not None:
        served.append(model := model_for(req.model_name, Modality.TEXT, settings, joint))
        jobs["text"] = _text(req, run, model, truncate, fit)
    if req.image_url or req.image_file is not None:
        served.append(model := model_for(req.model_name, Modality.IMAGE, settings, joint))
        jobs["image"] = _one(run, model, Modality.IMAGE, req.image_url or req.image_file, {})
    if req.audio_url or req.audio_file is not None:
        served.append(model := model_for(req.model_name, Modality.AUDIO, settings, joint))
        options = {"start_offset_sec": offset} if offset else {}
        jobs["audio"] = _one(run, model, Modality.AUDIO, req.audio_url or req.audio_file, options)
    if not jobs:
        raise ParameterNotProvided(
            "Provide at least one input: text, image_url or image_file, audio_url or audio_file.", param="text"
        )
    gathered = await asyncio.gather(*jobs.values())
    results = {k: _own_terms(r) if isinstance(r, OmniEmbedError) else r for k, r in zip(jobs, gathered, strict=True)}
    errors = [r for r in results.values() if isinstance(r, OmniEmbedError)]
    if len(errors) == len(results):
        raise errors[0].at_index(None)  # one item per modality: no position to name
    words = describe or (lambda e: e.message)
    response = EmbeddingResponse(model_name=req.model_name)
    if "text" in results:
        r = results["text"]
        response.text_embedding = (
            TextEmbeddingResult(error_message=words(r))
            if isinstance(r, OmniEmbedError)
            else TextEmbeddingResult(segments=[_segment(r.vector)])
        )
    if "image" in results:
        r = results["image"]
        meta = _metadata(req.image_url, req.image_filename)
        response.image_embedding = (
            ImageEmbeddingResult(error_message=words(r), metadata=meta)
            if isinstance(r, OmniEmbedError)
            else ImageEmbeddingResult(segments=[_segment(r.vector)], metadata=meta)
        )
    if "audio" in results:
        r = results["audio"]
        meta = _metadata(req.audio_url, req.audio_filename)
        response.audio_embedding = (
            AudioEmbeddingResult(error_message=words(r), metadata=meta)
            if isinstance(r, OmniEmbedError)
            else AudioEmbeddingResult(segments=_audio_segments(r, offset), metadata=meta)
        )
    return response
