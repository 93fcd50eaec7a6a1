"""``omniembed.Client``: TwelveLabs' ``client.embed.create(...)`` call shape, in-process or over HTTP.

    client = omniembed.Client()                                   # in-process: no server
    client = omniembed.Client("http://127.0.0.1:8000", api_key=...)  # over HTTP, against `omniembed serve`
    res = client.embed.create(model_name="minilm", text="a cat")
    res.text_embedding.segments[0].float_

Both modes return the same response objects and raise the same ``OmniEmbedError`` subclasses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO, Any

from omniembed import errors
from omniembed.api import Engine
from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError
from omniembed.service.schemas import EmbeddingResponse
from omniembed.service.twelvelabs import Fitted, TwelveLabsRequest, create_embedding, fit_with_engine, resolve_joint
from omniembed.settings import Settings

__all__ = ["Client"]

FileInput = str | Path | bytes | IO[bytes] | None
_BY_CODE: dict[str, type[OmniEmbedError]] = {
    cls.code: cls
    for cls in (
        errors.ParameterInvalid, errors.ParameterNotProvided, errors.ModelNotFound, errors.WeightsNotFound,
        errors.ModelLoadFailed, errors.RuntimeUnavailable, errors.InputUnreadable, errors.InputTooLarge,
    )
}
_BY_CODE["resource_not_exist"] = errors.ModelNotFound


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
            kwargs: dict[str, Any] = {f"{modality}s": items, **options}
            results: list[Embedding | OmniEmbedError] = engine.embed_batch(model, errors="return", **kwargs)
            return results

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
            try:
                body = response.json()
            except ValueError:
                body = {"code": "internal_error", "message": response.text[:500]}
            raise _BY_CODE.get(body.get("code", ""), OmniEmbedError)(str(body.get("message", body)))
        return EmbeddingResponse.model_validate(response.json())
