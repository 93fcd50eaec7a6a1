"""What rs-embed's export manifests are made of (key names, digests, status rules), and the request
fingerprint that decides whether a finished item may be reused by ``resume=True``.

- ``array_key``: rs-embed's array-name suffix for a model (runs of characters other than letters, digits
  and ``_`` become one ``_``), so ``embedding__<key>`` / ``input_chw__<key>`` are the names rs-embed uses.
- ``digest``: rs-embed's ``sha1`` of an array as it records it in manifests (dtype, shape, then the first
  2,000,000 bytes of the C-ordered data).
- ``models_status`` / ``models_summary``: ``ok`` / ``partial`` / ``failed`` over the model entries, and the
  ``total_models``, ``ok_models``, ``failed_models``, ``partial_models`` counts.
- ``request_fingerprint``: a SHA-1 of everything that decides an item's vector (model, its settings, the
  region, the window, sensor/fetch/modality, output, input preparation, backend), not of runtime knobs
  (device, chunking, retries, format).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["array_key", "digest", "jsonable", "models_status", "models_summary", "request_fingerprint", "utc_now"]

DIGEST_BYTES = 2_000_000


def array_key(model: str) -> str:
    key = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]+", "_", model)).strip("_")
    return key or "item"


def digest(arr: np.ndarray, limit: int | None = DIGEST_BYTES) -> str:
    """rs-embed's manifest ``sha1`` (``limit`` bytes of data); ``limit=None`` hashes every byte (what a request
    fingerprint needs: two arrays that differ only past the first 2 MB are other requests). No copy is made of
    a C-contiguous array."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha1(str(arr.dtype).encode())
    h.update(str(tuple(arr.shape)).encode())
    raw = arr.reshape(-1).view(np.uint8)
    h.update((raw if limit is None else raw[:limit]).data)
    return h.hexdigest()


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def jsonable(obj: Any, *, whole_arrays: bool = False) -> Any:
    """``obj`` as JSON values: specs through their ``to_dict`` (else their fields), arrays as their digest
    (so a backend holding an array is identified by its pixels: every byte with ``whole_arrays``, else
    rs-embed's first 2 MB), enums by value, anything else by ``repr``."""
    def again(value: Any) -> Any:
        return jsonable(value, whole_arrays=whole_arrays)

    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {"array_sha1": digest(obj, None if whole_arrays else DIGEST_BYTES), "shape": list(obj.shape),
                "dtype": str(obj.dtype)}
    if isinstance(obj, Mapping):
        return {str(k): again(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [again(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return again(obj.value)
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return again(to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: again(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return repr(obj)


def request_fingerprint(request: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(jsonable(request), sort_keys=True).encode()).hexdigest()


def models_status(entries: Sequence[Mapping[str, Any]]) -> str:
    """rs-embed's rule: ``ok`` when no entry failed or is partial, ``failed`` when every entry failed,
    else ``partial``."""
    states = [str(e.get("status", "")).lower() for e in entries]
    failed = states.count("failed")
    if not failed and "partial" not in states:
        return "ok"
    return "failed" if failed == len(states) else "partial"


def models_summary(entries: Sequence[Mapping[str, Any]], *, partial: bool = True) -> dict[str, int]:
    """The ``summary`` of a manifest (rs-embed's combined summary has ``partial_models``, its per-item one
    does not: a per-item entry is ``ok`` or ``failed``)."""
    failed = sum(e.get("status") == "failed" for e in entries)
    part = sum(e.get("status") == "partial" for e in entries)
    out = {"total_models": len(entries), "failed_models": failed, "ok_models": len(entries) - failed - part}
    if partial:
        out["partial_models"] = part
    return out
