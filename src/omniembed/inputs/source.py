"""Encoded media from any kind of input: the one reader behind audio and video loading.

``read_source`` takes a local path, an http(s) URL (through the one guarded fetcher, capped at the
modality's byte limit), bytes, a binary file object, a base64 data URL, or, where local paths are not
accepted (the HTTP faces), bare base64 text. The encoded size is checked against the modality's limit
(``max_audio_bytes``, ``max_video_bytes``) before more than that is read. It returns the bytes (or, on
request, the local file itself, for a decoder that reads it in place), a short description for the
embedding's metadata, and what to call the input in a message ("the video at URL", "the audio file
NAME"); an item's position is never in the text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.inputs.encoded import B64, decode_base64, split_data_url
from omniembed.inputs.fetch import FetchPolicy, fetch, is_url
from omniembed.settings import Settings

__all__ = ["Source", "read_source"]

Kind = Literal["audio", "video"]


@dataclass(frozen=True)
class Source:
    """An input's encoded bytes (or its local file), its description, and what to call it in a message."""

    data: bytes | Path
    description: str
    what: str


@dataclass(frozen=True)
class _Limits:
    setting: str
    """The ``Settings`` field with the byte limit."""
    env: str
    types: tuple[str, ...]
    """Media types a data URL may declare (besides none)."""
    noun: str
    """The input in "the data URL holds text/plain, not ..."."""
    also: str
    """What else the modality accepts, for the message about an unsupported type."""


_KINDS: dict[str, _Limits] = {
    "audio": _Limits("max_audio_bytes", "OMNIEMBED_MAX_AUDIO_BYTES", ("audio/", "video/", "application/octet-stream"),
                     "audio", ", a base64 data URL or a (numpy array, sample_rate) pair"),
    "video": _Limits("max_video_bytes", "OMNIEMBED_MAX_VIDEO_BYTES", ("video/", "application/octet-stream"),
                     "a video", " or a base64 data URL"),
}


def _too_big(what: str, size: int, limit: int, env: str, kind: str) -> InputTooLarge:
    return InputTooLarge(f"{what} is {size:,} bytes; the limit is {limit:,} bytes ({env}).", param=kind)


def _inline(text: str, allow_paths: bool) -> tuple[str, str] | None:
    """A data URL's (type, payload); or, where paths are not allowed, bare base64 text as ("data", text)."""
    found = split_data_url(text.strip())
    if found is None and not allow_paths and len(text) >= 16 and B64.match(text):
        return "data", text
    return found


def read_source(item: Any, settings: Settings, *, kind: Kind, allow_paths: bool = True,
                keep_files: bool = False) -> Source:
    """The encoded media of ``item`` (see the module docstring); ``keep_files``: a local file is returned as
    its ``Path``, checked but not read. InputUnreadable / InputTooLarge / ParameterInvalid on failure."""
    k = _KINDS[kind]
    limit: int = getattr(settings, k.setting)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data, description, what = bytes(item), f"{len(item):,} bytes", f"the {kind} data"
    elif is_url(item):
        policy = FetchPolicy.from_settings(settings)
        policy = replace(policy, max_bytes=min(policy.max_bytes, limit))
        data, description, what = fetch(item, policy).content, str(item)[:200], f"the {kind} at {str(item)[:200]}"
    elif isinstance(item, str) and (inline := _inline(item, allow_paths)) is not None:
        media, payload = inline
        if not media.lower().startswith(k.types) and media != "data":
            raise InputUnreadable(f"the data URL holds {media}, not {k.noun}", param=kind)
        description = f"base64 {kind}" if media == "data" else f"data URL ({media})"
        what = f"the base64 {kind}" if media == "data" else f"the {kind} data URL ({media})"
        data = decode_base64(payload, what, limit, k.env)
    elif isinstance(item, (str, Path)):
        if not allow_paths:
            raise ParameterInvalid(
                f"local file paths are not accepted here; send the {kind} itself (bytes / base64) or an http(s) URL",
                param=kind,
            )
        path = Path(item).expanduser()
        try:
            if not path.is_file():
                raise InputUnreadable(f"there is no {kind} file at {str(item)[:200]}", param=kind)
            size = path.stat().st_size
        except (OSError, ValueError):
            raise InputUnreadable(f"there is no readable {kind} file at {str(item)[:200]}", param=kind) from None
        what = f"the {kind} file {path.name}"
        if size > limit:
            raise _too_big(what, size, limit, k.env, kind)
        if size == 0:
            raise InputUnreadable(f"{what} is empty (0 bytes)", param=kind)
        return Source(path if keep_files else path.read_bytes(), path.name, what)
    elif hasattr(item, "read"):
        data = item.read(limit + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ParameterInvalid(f"the {kind} file object is open in text mode; open it with 'rb'", param=kind)
        name = getattr(item, "name", None)
        named = isinstance(name, (str, Path))
        description = Path(str(name)).name if named else "file object"
        what = f"the {kind} file {description}" if named else f"the {kind} file object"
    else:
        raise ParameterInvalid(
            f"cannot read {k.noun} from a {type(item).__name__}; pass a file path, an http(s) URL, bytes, a binary "
            f"file object{k.also}",
            param=kind,
        )
    if len(data) > limit:
        raise _too_big(what, len(data), limit, k.env, kind)
    if not data:
        raise InputUnreadable(f"{what} is empty (0 bytes)", param=kind)
    return Source(bytes(data), description, what)
