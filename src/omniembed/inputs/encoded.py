"""Media sent inline as text: ``data:<mime>;base64,...`` URLs and bare base64, for every modality.

Sizes are checked from the text's length before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
import re

from omniembed.errors import InputTooLarge, InputUnreadable

__all__ = ["B64", "decode_base64", "decoder_reason", "split_data_url"]

B64 = re.compile(r"^[A-Za-z0-9+/_\-\s]*={0,2}\s*$")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[\w.-]+)*);base64,", re.IGNORECASE)
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def decoder_reason(exc: BaseException) -> str:
    """A decoder's complaint for a user's message: its text without the Python object reprs it may hold
    (``<_io.BytesIO object at 0x...>``) and without its exception class (that goes in the error's ``detail``)."""
    text = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    text = _REPR.sub("the data", str(text)).strip().rstrip(".")
    return text[:160] or "no reason given"


def split_data_url(text: str) -> tuple[str, str] | None:
    """``(mime type or "data", base64 payload)`` of a base64 data URL; None when ``text`` is not a data URL."""
    match = _DATA_URL.match(text)
    if match:
        return match.group(1) or "data", text[match.end() :]
    if text[:5].lower() == "data:":
        raise InputUnreadable("the data URL is not base64-encoded; expected data:<type>;base64,<data>")
    return None


def decode_base64(text: str, where: str, max_bytes: int, limit_name: str) -> bytes:
    """Decode standard or URL-safe base64 (whitespace ignored, padding optional), refusing oversize data
    before decoding it."""
    cleaned = "".join(text.split())
    estimate = len(cleaned) * 3 // 4
    if estimate > max_bytes:
        raise InputTooLarge(
            f"{where} decodes to about {estimate:,} bytes; the limit is {max_bytes:,} bytes ({limit_name})"
        )
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned.encode("ascii"))
        return base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InputUnreadable(f"{where} is not valid base64") from None
