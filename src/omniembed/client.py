"""``omniembed.Client``: TwelveLabs' ``client.embed.create(...)`` call shape, in-process or over HTTP.

    client = omniembed.Client()                                   # in-process: no server
    client = omniembed.Client("http://127.0.0.1:8000", api_key=...)  # over HTTP, against `omniembed serve`
    res = client.embed.create(model_name="minilm", text="a cat")
    res.text_embedding.segments[0].float_

Both modes return the same response objects and raise the same ``OmniEmbedError`` subclasses.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import IO, Any

from omniembed.api import Engine
from omniembed.contract import Options
from omniembed.embedding import Modality
from omniembed.errors import InternalError, OmniEmbedError, class_for_code
from omniembed.service.twelvelabs.embed import (
    Fitted,
    TwelveLabsRequest,
    create_embedding,
    fit_with_engine,
    resolve_joint,
)
from omniembed.service.twelvelabs.schemas import EmbeddingResponse
from omniembed.settings import Settings

__all__ = ["Client"]

FileInput = str | Path | bytes | IO[bytes] | None
def _read(file: FileInput) -> tuple[bytes | None, str | None]:
    if file is None:
        return None, None
    if isinstance(file, (str, Path)):
        path = Path(file)
        return path.read_bytes(), path.name
    if isinstance(file, bytes):
        return file, "upload"
    return file.read(), Path(getattr(file, "name", "upload")).name


class _Embed:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        model_name: str,
        *,
        text: str | None = None,
        text_truncate: str | None = None,
        image_url: str | None = None,
        image_file: FileInput = None,
        audio_url: str | None = None,
        audio_file: FileInput = None,
        audio_start_offset_sec: float | None = None,
    ) -> EmbeddingResponse:
        image_bytes, image_name = _read(image_file)
        audio_bytes, audio_name = _read(audio_file)
        request = TwelveLabsRequest(
            model_name=model_name, text=text, text_truncate=text_truncate,
            image_url=image_url, image_file=image_bytes, image_filename=image_name,
            audio_url=audio_url, audio_file=audio_bytes, audio_filename=audio_name,
            audio_start_offset_sec=audio_start_offset_sec,
        )
        if self._client.base_url is None:
            return self._client._local(request)
        return self._client._remote(request)


class Client:
    """In-process when ``base_url`` is None, else an HTTP client of an omniembed server."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        settings: Settings | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = None if base_url is None else base_url.rstrip("/").removesuffix("/v1.3")
        self.api_key = api_key
        self.timeout = timeout
        self._engine = Engine(settings) if base_url is None else None
        self._joint: list[str | None] = []  # resolved on first use, as the server does at start
        self.embed = _Embed(self)

    def _local(self, request: TwelveLabsRequest) -> EmbeddingResponse:
        engine = self._engine
        assert engine is not None

        async def run(model: str, modality: Modality, items: list[Any], options: dict[str, Any]) -> list[Any]:
            return engine.run(model, modality, items, Options.of(**options), errors="return")

        async def fit(model: str, text: str, cap: int | None, truncate: str) -> Fitted | None:
            return fit_with_engine(engine, model, text, cap, truncate)

        if not self._joint:
            self._joint.append(resolve_joint(engine))
        return asyncio.run(create_embedding(request, run, engine.settings, fit=fit, joint=self._joint[0]))

    def _remote(self, request: TwelveLabsRequest) -> EmbeddingResponse:
        import httpx

        data = {
            k: str(v)
            for k, v in {
                "model_name": request.model_name, "text": request.text, "text_truncate": request.text_truncate,
                "image_url": request.image_url, "audio_url": request.audio_url,
                "audio_start_offset_sec": request.audio_start_offset_sec,
            }.items()
            if v is not None
        }
        files = {}
        if request.image_file is not None:
            files["image_file"] = (request.image_filename or "image", request.image_file)
        if request.audio_file is not None:
            files["audio_file"] = (request.audio_filename or "audio", request.audio_file)
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        response = httpx.post(
            f"{self.base_url}/v1.3/embed", data=data, files=files or None, headers=headers, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise _error(response.status_code, response.text)
        return EmbeddingResponse.model_validate(response.json())


def _error(status: int, text: str) -> OmniEmbedError:
    """The error a TwelveLabs error body (``{"code", "message"}``) stands for, as the class its code names
    (derived from the error tree: ``resource_not_exist`` is ``ModelNotFound`` there). An answer that is not
    such a body (a proxy's page) or a code this version does not know is an ``InternalError`` that says so."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return InternalError(f"the server answered HTTP {status} without an omniembed error body: {text[:500]}")
    code, message = body["code"], str(body.get("message", ""))
    try:
        cls = class_for_code(code, face="twelvelabs")
    except KeyError:
        return InternalError(f"the server answered HTTP {status} with the error code {code!r}, which this "
                             f"version of omniembed does not know: {message}")
    return cls(message)
