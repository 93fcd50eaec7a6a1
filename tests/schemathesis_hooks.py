"""Schemathesis CLI hooks of tests/test_openapi_schemathesis.py (``SCHEMATHESIS_HOOKS=schemathesis_hooks``).

One hook: ``filter_failure`` drops a "schema-valid request rejected" finding (ST202, ``positive_data_acceptance``)
only where the 400 is about something no JSON schema can judge, each named below with its reason: bytes or a
URL that must be fetched or decoded to be judged, a value that must match the serving model (its dimension), or
a relation between two fields (an end after a start) that JSON Schema cannot state. Every other finding stays,
and so does every finding of every other check. Each dropped finding is written, one JSON line, to the file
``OMNIEMBED_ST_RUNTIME_LOG`` names, so that the test counts and reports them.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis

RUNTIME_JUDGED: tuple[tuple[str, str, str], ...] = (
    # (error code, message pattern, why no schema can judge it)
    ("input_unreadable", "", "the input is fetched (a URL) or decoded (data URL, base64 bytes, token ids): only "
                             "reading it tells whether it is an image, audio, a video or text"),
    ("parameter_invalid", r"resolves to \S+, an? [a-z -]+ address; fetching it is refused",
     "a URL whose host resolves to a private address (the server refuses to fetch it): only resolving the host "
     "tells"),
    ("parameter_invalid", r"local file paths are not accepted here",
     "a media string is read as an http(s) URL, a data URL or base64 bytes; one that is none of them (read as a "
     "file path, which the server refuses) is told apart only by reading it"),
    ("parameter_invalid", r"(produces|gives) \d+ dimensions",
     "dimensions must equal the serving model's own (no model shortens vectors); the schema cannot know which "
     "model a name resolves to"),
    ("parameter_invalid", r"(?i)token id \d+ is not a token|text is empty or only whitespace",
     "token ids are decoded with the encoding the model name implies; only decoding tells which text they spell"),
    ("parameter_invalid", r"(?i)must be greater than|end_offset_sec must be a number > start_offset_sec|"
                          r"overlap_sec must be shorter than segment_sec",
     "an end after its start, an overlap shorter than its segment: a relation between two fields"),
    ("parameter_invalid", r"(?i)config\[\d+\] differs from config\[0\]|config has \d+ entries for \d+ items",
     "a batched job's per-item configs must be equal and no more than its items: a relation between items"),
)


def _error(response: Any) -> tuple[str, str]:
    """The error code and message of any of the three faces' error bodies."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return "", ""
    inner = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else body
    if not isinstance(inner, dict):
        return "", ""
    message = inner.get("message") or inner.get("detail") or ""
    return str(inner.get("code") or ""), str(message)


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    if getattr(failure, "code", None) != "ST202" or response.status_code != 400:
        return True
    code, message = _error(response)
    for wanted, pattern, why in RUNTIME_JUDGED:
        if code == wanted and re.search(pattern, message):
            log = os.environ.get("OMNIEMBED_ST_RUNTIME_LOG")
            if log:
                with open(log, "a", encoding="utf-8") as out:
                    out.write(json.dumps({"operation": f"{case.method} {case.operation.path}", "code": code,
                                          "message": message[:300], "why": why}) + "\n")
            return False
    return True
