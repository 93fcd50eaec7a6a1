"""OpenAI-compatible ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{id}``.

Extension: ``modality`` = ``image`` or ``audio`` with URLs or data URLs as inputs (audio answers the
pooled vector of the clip). ``encoding_format=base64`` is little-endian float32, as OpenAI's clients decode it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, Depends, Response

from omniembed.embedding import Embedding, Modality
from omniembed.errors import InputTooLarge, ModelNotFound, OmniEmbedError, ParameterInvalid
from omniembed.registry import ModelSpec
from omniembed.service.openai import token_ids
from omniembed.service.openai.schemas import OpenAIEmbeddingsRequest, OpenAIEmbeddingsResponse
from omniembed.service.state import ServiceState, get_state

router = APIRouter(prefix="/v1", tags=["openai"])

_OPENAI_MODALITIES = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO})
_PLURAL = {Modality.TEXT: "texts", Modality.IMAGE: "images", Modality.AUDIO: "audio"}


def _inputs(body: OpenAIEmbeddingsRequest, limit: int) -> list[str]:
    """The request's texts. Token-id inputs (what LangChain's defaults send) are decoded with the tiktoken
    encoding the client used (token_ids.py)."""
    items: list[Any] = [body.input] if isinstance(body.input, str) else body.input
    if not items:
        raise ParameterInvalid("input must not be empty", param="input")
    if isinstance(items[0], int):  # one input as token ids (the schema makes a list all one form)
        items = [items]
    if len(items) > limit:  # first: nothing below looks at each item of a list over the limit
        raise InputTooLarge(
            f"input has {len(items)} items; the limit is {limit} per request (OMNIEMBED_MAX_ITEMS_PER_REQUEST)",
            param="input",
        )
    return [i if isinstance(i, str) else token_ids.decode(i, body.model, index=n) for n, i in enumerate(items)]


def _media_of(item: str) -> Modality | None:
    """The modality an input looks like: a data URL's media type, or the file type of an http(s) URL's path."""
    head = item[:256].lower()
    if head.startswith("data:"):
        kind = head[5:].split("/", 1)[0]
    elif head.startswith(("http://", "https://")):
        kind = (mimetypes.guess_type(urlsplit(item[:4096]).path)[0] or "").split("/", 1)[0]
    else:
        return None
    return {"image": Modality.IMAGE, "audio": Modality.AUDIO}.get(kind)


def _check_modality(spec: ModelSpec, modality: Modality, items: list[str]) -> None:
    """A model that does not embed the request's modality is not served for it: 404 with ``param``
    ``model``, as OpenAI answers a model that exists but does not serve the endpoint ("This is a chat model
    and not supported in the v1/embeddings endpoint"). The message says which ``modality`` would do, from the
    model's modalities and what the inputs look like (an image sent without ``"modality": "image"``)."""
    if modality in spec.modalities:
        return
    takes = [m for m in spec.modalities if m in _OPENAI_MODALITIES]
    looks = next((m for m in map(_media_of, items) if m is not None), None)
    fix = looks if looks in takes else takes[0] if len(takes) == 1 else None
    message = (f"model {spec.name!r} does not embed {_PLURAL.get(modality, modality)} (it takes: "
               f"{', '.join(map(str, spec.modalities))})")
    if looks is not None and looks is not modality:
        message += f"; the input looks like {'an image' if looks is Modality.IMAGE else 'audio'} (a URL or data URL)"
    if fix is Modality.TEXT:
        message += '. To embed texts, leave "modality" out (or set "modality": "text").'
    elif fix is not None:
        message += (f'. To embed {_PLURAL[fix]}, set "modality": "{fix}" in the request, with URLs or data URLs '
                    "as the inputs.")
    else:
        message += ". GET /v1/models lists each model's modalities."
    raise ModelNotFound(message, param="model", model=spec.name)


def _check_dimensions(vector: np.ndarray, dimensions: int | None, model: str) -> None:
    """No registered model is trained for shortened (Matryoshka) vectors, so only the full size is accepted."""
    if dimensions is None or dimensions == vector.shape[-1]:
        return
    raise ParameterInvalid(
        f"model {model!r} produces {vector.shape[-1]} dimensions and does not support shortening them "
        f"(dimensions={dimensions}); omit dimensions",
        param="dimensions",
    )


@router.post("/embeddings", response_model=OpenAIEmbeddingsResponse)
async def create_embeddings(body: OpenAIEmbeddingsRequest, state: ServiceState = Depends(get_state)) -> Response:
    """The answer is serialised directly (the schema documents it): validating thousands of floats per
    request again would cost more than the embedding."""
    limit = state.settings.max_items_per_request
    if isinstance(body.input, str) or not body.input or isinstance(body.input[0], str):
        items = _inputs(body, limit)
    else:  # token ids: the encoding's table loads once (~0.3 s) and decoding is work per id: off the event loop
        items = await asyncio.to_thread(_inputs, body, limit)
    modality = Modality(body.modality)
    _check_modality(state.engine.served_spec(body.model, modality), modality, items)
    options: dict[str, Any] = {"truncate": body.truncate} if modality is Modality.TEXT else {}
    results = await state.require_batcher().embed(body.model, modality, items, **options)
    data: list[dict[str, Any]] = []
    tokens = 0
    for index, result in enumerate(results):
        if isinstance(result, OmniEmbedError):  # OpenAI answers one error per request: the first bad input's
            raise result  # its index is shown as input[i] (service/errors.py formats OpenAI's body)
        assert isinstance(result, Embedding)
        vector = result.vector
        _check_dimensions(vector, body.dimensions, body.model)
        if modality is Modality.TEXT:
            tokens += result.meta.input.length or 0
        payload: list[float] | str = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": payload})
    model = results[0].meta.model if isinstance(results[0], Embedding) else body.model
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    content = json.dumps({"object": "list", "data": data, "model": model, "usage": usage}, separators=(",", ":"))
    return Response(content, media_type="application/json")



def _model_object(spec: ModelSpec) -> dict[str, object]:
    """OpenAI's model object, plus what an embedding client wants to know."""
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": "omniembed",
            "modalities": [str(m) for m in spec.modalities], "dimensions": spec.dim, "aliases": list(spec.aliases)}


async def _runnable(state: ServiceState) -> list[ModelSpec]:
    """Models this server can run over /v1/embeddings: weights on this machine (a disk scan, off the event
    loop and cached by the engine) and a text, image or audio modality."""
    specs = await asyncio.to_thread(state.engine.available_specs)
    return [s for s in specs if _OPENAI_MODALITIES.intersection(s.modalities)]


@router.get("/models")
async def list_models(state: ServiceState = Depends(get_state)) -> dict[str, object]:
    """The models this server can run now (registered models whose weights are missing are left out)."""
    return {"object": "list", "data": [_model_object(s) for s in await _runnable(state)]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, state: ServiceState = Depends(get_state)) -> dict[str, object]:
    """One model object by name or alias (what ``client.models.retrieve(id)`` calls); 404 otherwise."""
    spec = state.engine.served_spec(model_id)
    if spec.name not in {s.name for s in await _runnable(state)}:
        raise ModelNotFound(
            f"model {spec.name!r} cannot run on this server: its weights are not on this machine, or it does "
            "not embed text, images or audio. GET /v1/models lists the models it runs.",
            param="model", model=spec.name,
        )
    return _model_object(spec)
