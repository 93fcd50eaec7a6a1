"""Request-body limits, enforced before the app reads a body, so that no body costs work in proportion to
its size before it is refused.

- ``BodyLimit``: the body's bytes (``OMNIEMBED_MAX_BODY_BYTES``), by Content-Length or while streaming.
- ``JsonLimits``: the shape of a JSON body. A JSON body over ``SCAN_ABOVE_BYTES`` is read whole and walked
  by a streaming parser (ijson's C backend) on a worker thread that stops at the first limit exceeded: the
  nesting depth (``OMNIEMBED_MAX_JSON_DEPTH``), the elements of one array or members of one object
  (``OMNIEMBED_MAX_JSON_ITEMS``) and the values in the whole body (``OMNIEMBED_MAX_JSON_VALUES``). The walk
  runs Python at every event and offers the GIL after every 64 KiB, so the event loop gets it within
  milliseconds and ``/health`` keeps answering while it runs. A body over a limit is answered 413 ``input_too_large``; a
  body within them is passed on unchanged, and the app then parses at most that much (``json.loads`` holds
  the GIL: 32 million numbers would stall every request for seconds). A body that is not valid JSON is
  passed on too: the app says what is wrong with it.

The parser never sees a long token: strings are found with a regular expression (in bounded windows) and
handed on as ``""`` (or as they are, when short and plain ASCII), and every number becomes ``0``. yajl re-reads
a token that spans its input chunks from its start, so a 40 MB data URL fed as it is would cost seconds;
and what it is handed is valid JSON whenever the body is valid for Python's ``json`` (which also reads
``NaN``, ``Infinity`` and numbers too large for a double), so a body cannot slip past the walk as "not
JSON" and then be parsed by the app. A bare value (outside a string) longer than ``MAX_BARE_CHARS`` is
refused: no number is that long.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import ijson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniembed.errors import InputTooLarge, OmniEmbedError, ParameterInvalid
from omniembed.service.errors import error_response
from omniembed.settings import Settings

__all__ = ["MAX_BARE_CHARS", "SCAN_ABOVE_BYTES", "BodyLimit", "JsonLimits", "Limits", "check_json"]

SCAN_ABOVE_BYTES = 256 * 1024
"""JSON bodies up to this size are passed on without a walk: parsing one costs a few milliseconds."""
MAX_BARE_CHARS = 1024
"""Longest value outside a string (a number, ``true`` ...) in a walked body."""
_FEED = 64 * 1024  # bytes handed to the parser at a time: at most ~32k events between two limit checks
_WINDOW = 256 * 1024  # bytes of one string matched at a time (a few milliseconds with the GIL held)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)  # a string's content, up to its closing quote
_PLAIN = re.compile(rb"[ !#-\[\]-~]{0,256}")  # short printable ASCII without quote or backslash: kept as is
_NUMBER = re.compile(rb"-?[0-9][0-9.eE+-]*")
_BARE_RUN = re.compile(rb'[^\s,:\[\]{}"]{%d}' % (MAX_BARE_CHARS + 1))
_DELIMITERS = tuple(bytes([c]) for c in b" \t\r\n,:[]{}")
_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Limits:
    """The shape a walked JSON body may have."""

    depth: int
    items: int
    values: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        # an array of max_items_per_request inputs is always allowed, whatever max_json_items says
        return cls(depth=settings.max_json_depth, items=max(settings.max_json_items, settings.max_items_per_request),
                   values=settings.max_json_values)


# -- the walk -----------------------------------------------------------------------------------------------

def _path(labels: list[str | int | None]) -> str | None:
    """``input``, ``input[3]``, ``config[0].truncate`` from the labels of the containers walked into."""
    out = ""
    for label in labels:
        if isinstance(label, int):
            out += f"[{label}]"
        elif label is not None:
            out += f".{label}" if out else label
    return out or None


class _Walk:
    """Counts a body's parse events against the limits. A frame is ``[label, count, key, is_array]``: the
    container's name in its parent, its elements (members) so far, and for an object the current key."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stack: list[list[Any]] = []
        self.values = 0

    def _where(self, extra: str | int | None = None) -> str | None:
        return _path([frame[0] for frame in self.stack] + [extra])

    def _too_many_items(self) -> InputTooLarge:
        where = self._where()
        what = where or "the request body"
        kind = "elements" if self.stack[-1][3] else "members"
        limit = self.limits.items
        return InputTooLarge(
            f"{what} has more than {limit:,} {kind}: a JSON array or object in a request body may hold at most "
            f"{limit:,} (OMNIEMBED_MAX_JSON_ITEMS). Send fewer items per request.", param=where,
        )

    def take(self, events: list[tuple[str, Any]]) -> None:
        limits, stack = self.limits, self.stack
        for event, value in events:
            if event == "map_key":
                top = stack[-1]
                top[1] += 1
                if top[1] > limits.items:
                    raise self._too_many_items()
                top[2] = value
                continue
            if event == "end_map" or event == "end_array":
                stack.pop()
                continue
            label: str | int | None = None  # a value: a scalar, or the start of an object or array
            if stack:
                top = stack[-1]
                if top[3]:
                    label = top[1]
                    top[1] += 1
                    if top[1] > limits.items:
                        raise self._too_many_items()
                else:
                    label = top[2]
            self.values += 1
            if self.values > limits.values:
                first = stack[1][0] if len(stack) > 1 else label if stack else None
                raise InputTooLarge(
                    f"the request body holds more than {limits.values:,} values (numbers, strings, lists, objects): "
                    f"the limit is {limits.values:,} per request (OMNIEMBED_MAX_JSON_VALUES). Send fewer items or "
                    "token ids per request.", param=first if isinstance(first, str) else None,
                )
            if event == "start_map" or event == "start_array":
                if len(stack) >= limits.depth:
                    where = self._where(label)
                    raise InputTooLarge(
                        f"the request body is nested more than {limits.depth} levels deep (at {where}): the limit "
                        "is OMNIEMBED_MAX_JSON_DEPTH", param=where,
                    )
                stack.append([label, 0, None, event == "start_array"])


def _bare(piece: bytes) -> bytes:
    """Values outside strings as the parser sees them: every number ``0`` (``1E400`` or 300 digits are valid
    for Python's json, not for yajl), ``NaN`` and ``Infinity`` (which Python's json reads) too."""
    if b"N" in piece or b"I" in piece:
        piece = piece.replace(b"Infinity", b"0").replace(b"NaN", b"0")
    return _NUMBER.sub(b"0", piece)


def _string_end(body: bytes, start: int) -> int:
    """The index of the quote that closes the string whose content starts at ``start``; -1 if none does."""
    n, i = len(body), start
    quote = body.find(b'"', start)
    if quote >= 0 and body.find(b"\\", start, quote) < 0:  # no escape before the next quote: it closes the
        return quote  # string (a data URL's base64 has none), found at memchr's speed
    while True:
        end = _STRING_REST.match(body, i, min(n, i + _WINDOW)).end()  # type: ignore[union-attr]  # always matches
        if end < n and body[end] == 0x22:  # '"': the content stops only there, at the window's end or at a
            return end  # backslash whose escaped character is past the window
        if end == i or end >= n:
            return -1
        i = end


def _pieces(body: bytes, pos: int) -> Iterator[bytes]:
    """The body as the parser is fed it (see the module's doc), about ``_FEED`` bytes at a time; a bare value
    is never cut between two pieces."""
    n = len(body)
    out = bytearray()
    while pos < n:
        quote = body.find(b'"', pos)
        stop = n if quote < 0 else quote
        while pos < stop:  # outside strings
            end = min(stop, pos + _FEED)
            if end < stop:
                end = max(body.rfind(d, pos, end) for d in _DELIMITERS) + 1
                if end <= pos:
                    end = min(stop, pos + _FEED)
            if _BARE_RUN.search(body, pos, end):
                raise InputTooLarge(
                    f"the request body holds a value longer than {MAX_BARE_CHARS:,} characters outside a string "
                    "(a number that long is not accepted)"
                )
            out += _bare(body[pos:end])
            pos = end
            if len(out) >= _FEED:
                yield bytes(out)
                out.clear()
        if quote < 0:
            break
        end = _string_end(body, quote + 1)
        if end < 0:  # unterminated: the parser says the body is not JSON
            out += b'"'
            break
        kept = _PLAIN.fullmatch(body, quote + 1, end)
        out += body[quote:end + 1] if kept else b'""'
        pos = end + 1
        if len(out) >= _FEED:
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)


def check_json(body: bytes, limits: Limits) -> None:
    """Raise ``InputTooLarge`` at the first limit ``body`` exceeds, having read no further. Returns when the
    body is within them, or is not JSON at all (the app then answers what is wrong with it)."""
    encoding = json.detect_encoding(body[:4])
    if encoding not in ("utf-8", "utf-8-sig"):
        raise ParameterInvalid(f"the request body is {encoding.upper()}; send JSON as UTF-8", param=None)
    walk = _Walk(limits)
    events = ijson.sendable_list()
    parser = ijson.basic_parse_coro(events, use_float=True)
    try:
        for piece in _pieces(body, len(codecs.BOM_UTF8) if encoding == "utf-8-sig" else 0):
            parser.send(piece)
            walk.take(events)
            del events[:]
            time.sleep(0)  # hand the GIL to the event loop now, if it waits, rather than at the switch interval
        parser.close()
    except (ijson.JSONError, ValueError):  # not JSON: within the limits up to where it breaks
        return
    walk.take(events)


# -- the middlewares ----------------------------------------------------------------------------------------

def _is_json(headers: dict[bytes, bytes]) -> bool:
    """Whether FastAPI would parse this body as JSON: no content type, or ``application/json`` or
    ``application/*+json``."""
    value = headers.get(b"content-type")
    if value is None:
        return True
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


class JsonLimits:
    """Walks large JSON bodies on a worker thread before the app sees them (see the module's doc); other
    requests, and bodies up to ``SCAN_ABOVE_BYTES``, pass straight through. Goes inside ``BodyLimit``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limits = Limits.of(settings)
        # one thread: walks are CPU work under the GIL, so more threads would only take it from the event loop
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniembed-json-limits")

    def _read(self, chunks: list[bytes]) -> bytes:
        body = b"".join(chunks)
        if len(body) > SCAN_ABOVE_BYTES:
            check_json(body, self.limits)
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        declared = headers.get(b"content-length")
        if (scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(headers)
                or (declared is not None and declared.isdigit() and int(declared) <= SCAN_ABOVE_BYTES)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left, or BodyLimit refused the body
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            body = await asyncio.get_running_loop().run_in_executor(self.executor, self._read, chunks)
        except OmniEmbedError as exc:
            await error_response(exc, scope["path"])(scope, receive, send)
            return
        chunks.clear()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class BodyLimit:
    """Refuses request bodies over the limit, by Content-Length or while streaming (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.limit:,} bytes (OMNIEMBED_MAX_BODY_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(InputTooLarge(message), scope["path"])(scope, receive, send)
            return
        received = 0
        answered = False

        async def limited() -> Message:
            nonlocal received, answered
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    if not answered:
                        answered = True
                        await error_response(InputTooLarge(message), scope["path"])(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
            return msg

        async def guarded_send(msg: Message) -> None:
            if not answered:
                await send(msg)

        await self.app(scope, limited, guarded_send)
