"""TwelveLabs' form routes read their text fields as UTF-8 or refuse them.

Starlette reads a multipart text field that is not valid in its charset (UTF-8 unless the form says
otherwise) as Latin-1, and a URL-encoded field's bytes with replacement characters: a text that is not
UTF-8 would be embedded as other text. Under ``FormRoute`` (the ``route_class`` of the TwelveLabs routers)
such a field is refused with ``parameter_invalid`` naming it, before the route runs. File parts are bytes
and are not checked; every other part of the parsing (limits, files, errors) is Starlette's own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from omniembed.errors import ParameterInvalid
from omniembed.service.openai.schemas import TEXT_PATTERN

__all__ = ["BASE64", "NAMED", "NOT_NEGATIVE", "URL", "FormRoute", "any_of_fields", "each_of", "no_null", "one_of"]

NAMED: dict[str, Any] = {"pattern": TEXT_PATTERN}
"""Schema hint of a name the routes require (``model_name``): not empty, not only spaces (as ``str.strip``
counts them)."""
BASE64: dict[str, Any] = {"pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"}
"""Schema hint of base64 bytes: not empty, in the standard alphabet, padded."""
NOT_NEGATIVE: dict[str, Any] = {"minimum": 0}
URL: dict[str, Any] = {"minLength": 1}
"""Schema hint of a media URL: an empty one is the same as none."""


def no_null(schema: dict[str, Any]) -> None:
    """Schema hint (a ``json_schema_extra`` callable) of an optional file part: sent or left out, never null,
    since a form has no null (``UploadFile | None`` keeps FastAPI's reading of file parts and their errors)."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])


def any_of_fields(content_type: str, *fields: str) -> dict[str, Any]:
    """A route's ``openapi_extra`` saying that its body needs at least one of ``fields`` (JSON Schema 2020-12,
    as OpenAPI 3.1 reads it: the ``anyOf`` applies beside the body's ``$ref``). A form has no null: a field
    is sent or left out, so the form fields are declared without one (``SkipJsonSchema[None]``)."""
    any_of = [{"required": [field]} for field in fields]
    return {"requestBody": {"required": True, "content": {content_type: {"schema": {"anyOf": any_of}}}}}


def one_of(*values: str) -> dict[str, Any]:
    """Schema hint of a field that takes one of ``values``. The routes check it themselves, in TwelveLabs'
    words; the schema says it too, so that what the schema allows is what they accept."""
    return {"enum": list(values)}


def each_of(*values: str) -> dict[str, Any]:
    """Schema hint of a list field whose items are each one of ``values``."""
    return {"items": {"enum": list(values)}}


def _utf8(data: bytes, name: str) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterInvalid(
            f"The {name} parameter is invalid. It is not UTF-8 text (byte {exc.start} is not valid UTF-8): "
            "send text fields encoded as UTF-8.",
            param=name,
        ) from None


class _Parts(MultiPartParser):
    """Starlette's multipart parser; a text part (no file name) in UTF-8 (the form's charset) must be UTF-8."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None and self._charset == "utf-8":
            _utf8(bytes(part.data), part.field_name[:100])
        super().on_part_end()


class _Fields(FormParser):
    """Starlette's URL-encoded form parser; a value's bytes (raw or %-escaped) must be UTF-8."""

    def on_field_end(self) -> None:
        name = unquote_to_bytes(bytes(self._field_name).replace(b"+", b" ")).decode("utf-8", "replace")
        _utf8(unquote_to_bytes(bytes(self._field_value).replace(b"+", b" ")), name[:100])
        super().on_field_end()


class _Utf8FormRequest(Request):
    """A request whose form is parsed by ``_Parts``/``_Fields``; a field that is not UTF-8 is kept in
    ``refused`` (FastAPI answers any error while parsing a body with its own generic 400)."""

    refused: ParameterInvalid | None = None

    async def _get_form(self, *, max_files: int | float = 1000, max_fields: int | float = 1000,
                        max_part_size: int = 1024 * 1024) -> FormData:
        if self._form is None:
            kind = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
            try:
                async with aclosing(self.stream()) as stream:
                    if kind == "multipart/form-data":
                        self._form = await _Parts(self.headers, stream, max_files=max_files, max_fields=max_fields,
                                                  max_part_size=max_part_size).parse()
                    elif kind == "application/x-www-form-urlencoded":
                        self._form = await _Fields(self.headers, stream, max_fields=max_fields,
                                                   max_part_size=max_part_size).parse()
                    else:
                        self._form = FormData()
            except MultiPartException as exc:  # as Starlette answers it
                raise HTTPException(status_code=400, detail=exc.message) from None
            except ParameterInvalid as exc:
                self.refused = exc
                raise
        return self._form


class FormRoute(APIRoute):
    """An ``APIRoute`` whose form fields must be UTF-8 (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def utf8_forms(request: Request) -> Response:
            strict = _Utf8FormRequest(request.scope, request.receive)
            try:
                return await handler(strict)
            except HTTPException:
                if strict.refused is not None:
                    raise strict.refused from None
                raise

        return utf8_forms
