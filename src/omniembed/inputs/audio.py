"""Audio inputs: one loader (path, http(s) URL, bytes, file object, ``(array, sample_rate)``), limits, segments.

Encoded inputs are read by ``inputs.source.read_source`` (shared with video). Decoding is libsndfile
through ``soundfile`` (WAV, FLAC, OGG/Vorbis, MP3 in libsndfile >= 1.1); several channels are averaged
to mono; audio is resampled to the model's rate with ``soxr`` (HQ). Limits come from settings:
``max_audio_bytes`` (encoded size) and ``max_audio_seconds`` (checked from the header before decoding,
and again after).

Segments (``AudioPreparer``): from ``start_offset_sec`` to the end, either the model's own windows (no
``segment_sec``: one segment per window, e.g. GE2E's 1.6 s partials every 0.77 s) or ``segment_sec``-long
segments (optionally overlapping), each embedded from its own audio as the mean of the model's windows
inside it. Segment times are absolute, in seconds from the start of the file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniembed.contract import Prepared
from omniembed.embedding import InputInfo, Segment
from omniembed.errors import InputTooLarge, InputUnreadable, OmniEmbedError, ParameterInvalid
from omniembed.inputs.audio_frontend import Windower, WindowSet
from omniembed.inputs.encoded import decoder_reason as _reason
from omniembed.inputs.source import read_source
from omniembed.settings import Settings

__all__ = ["AudioPreparer", "Clip", "load_audio", "plan_segments", "resample"]

FORMATS = "WAV, FLAC, OGG/Vorbis or MP3"


@dataclass(frozen=True)
class Clip:
    """Decoded audio: mono float32 samples at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    description: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def _too_long(where: str, seconds: float, settings: Settings) -> InputTooLarge:
    return InputTooLarge(
        f"{where} is {seconds:,.1f} s long; the limit is {settings.max_audio_seconds:,.0f} s "
        "(OMNIEMBED_MAX_AUDIO_SECONDS). Cut the audio or raise the limit.",
        param="audio",
    )


def _refuse_non_finite(samples: np.ndarray, rate: int, what: str) -> None:
    """InputUnreadable when ``samples`` hold NaN or infinity (a float WAV, FLAC or array can): a model given
    them answers NaN vectors, so they are refused where the audio is read, saying how many and where."""
    finite = np.isfinite(samples)
    if finite.all():
        return
    bad = ~finite.reshape(len(samples), -1).all(axis=1)  # per frame: any channel
    first = int(np.argmax(bad))
    raise InputUnreadable(
        f"{what} holds {int(bad.sum()):,} NaN or infinite samples (the first at {first / rate:.3f} s); audio "
        "samples must be finite numbers: fix or re-encode the audio",
        param="audio",
    )


def _decode(data: bytes, description: str, what: str, settings: Settings) -> Clip:
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:
        raise InputUnreadable(
            f"{what} ({len(data):,} bytes) cannot be decoded as audio ({FORMATS}): {_reason(exc)}",
            param="audio",
        ) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputUnreadable(f"{what} holds no audio samples", param="audio")
    if info.frames / info.samplerate > settings.max_audio_seconds:
        raise _too_long(what, info.frames / info.samplerate, settings)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise InputUnreadable(f"{what} ({len(data):,} bytes) could not be decoded: {_reason(exc)}",
                              param="audio") from None
    if samples.shape[0] == 0:
        raise InputUnreadable(f"{what} holds no audio samples", param="audio")
    _refuse_non_finite(samples, int(rate), what)
    return Clip(np.ascontiguousarray(samples.mean(axis=1), np.float32), int(rate), description)


def _from_array(value: Any, rate: Any, where: str) -> Clip:
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise ParameterInvalid(f"{where}: the sample rate must be a positive integer, not {rate!r}", param="audio")
    array = np.asarray(value)
    if array.dtype.kind in "iu":  # PCM integers -> [-1, 1)
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    elif array.dtype.kind != "f":
        raise ParameterInvalid(f"{where}: the samples must be numbers, not {array.dtype}", param="audio")
    array = array.astype(np.float32, copy=False)
    if array.ndim == 2:  # (frames, channels) as soundfile returns, or (channels, frames) when obviously so
        array = array.mean(axis=0 if array.shape[0] <= 8 < array.shape[1] else 1)
    if array.ndim != 1:
        raise ParameterInvalid(f"{where}: expected 1-d or 2-d samples, got shape {array.shape}", param="audio")
    if array.size == 0:
        raise InputUnreadable(f"{where} holds no audio samples", param="audio")
    _refuse_non_finite(array, int(rate), where)
    return Clip(np.ascontiguousarray(array), int(rate), f"array ({array.size:,} samples at {int(rate)} Hz)")


def load_audio(item: Any, settings: Settings, *, allow_paths: bool = True, where: str = "the audio") -> Clip:
    """Decode one audio input to mono float32; InputUnreadable / InputTooLarge / ParameterInvalid on failure.

    Messages name the input by what it is (``the audio at URL``, ``the audio file NAME``, ``the audio data``),
    never by a position: an item's position is the error's ``index``.
    """
    if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], (str, bytes)):
        clip = _from_array(item[0], item[1], where)
    elif isinstance(item, np.ndarray):
        raise ParameterInvalid(f"{where} is a bare array; pass (array, sample_rate)", param="audio")
    else:
        source = read_source(item, settings, kind="audio", allow_paths=allow_paths)
        assert isinstance(source.data, bytes)
        clip = _decode(source.data, source.description, source.what, settings)
    if clip.seconds > settings.max_audio_seconds:
        raise _too_long(f"{where} ({clip.description})", clip.seconds, settings)
    return clip


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 samples at ``target`` Hz (soxr, high quality); unchanged when the rates match."""
    if rate == target:
        return samples
    import soxr

    out: np.ndarray = soxr.resample(samples, rate, target, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def plan_segments(
    n_samples: int, rate: int, start_offset_sec: float, segment_sec: float | None, overlap_sec: float,
    max_segments: int | None = None,
) -> tuple[int, list[tuple[int, int]]]:
    """The first sample and the ``(start, end)`` sample spans of the segments (empty: model windows). More
    than ``max_segments`` segments is refused before any is made."""
    seconds = n_samples / rate
    if not math.isfinite(start_offset_sec) or start_offset_sec < 0:
        raise ParameterInvalid.naming(f"{{param}} must be >= 0, not {start_offset_sec!r}", param="start_offset_sec")
    start = round(start_offset_sec * rate) if start_offset_sec < seconds else n_samples  # 1e308 * rate: inf
    if start >= n_samples:
        raise ParameterInvalid.naming(
            f"{{param}}={start_offset_sec:g} is past the end of the audio ({seconds:.2f} s long)",
            param="start_offset_sec",
        )
    if segment_sec is None:
        if overlap_sec:
            raise ParameterInvalid("overlap_sec applies to segment_sec: pass segment_sec too", param="overlap_sec")
        return start, []
    whole = seconds + 1.0  # a segment longer than the audio is the whole of it (and 1e308 s is no sample count)
    length, step = round(min(segment_sec, whole) * rate), round(min(segment_sec - overlap_sec, whole) * rate)
    if length < 1 or step < 1 or overlap_sec < 0:
        raise ParameterInvalid(
            f"segment_sec ({segment_sec:g}) must be > 0 and longer than overlap_sec ({overlap_sec:g})",
            param="segment_sec",
        )
    count = 1 + -(-max(0, n_samples - start - length) // step)
    if max_segments is not None and count > max_segments:
        raise ParameterInvalid(
            f"segment_sec={segment_sec:g} with overlap_sec={overlap_sec:g} cuts {(n_samples - start) / rate:.2f} s of "
            f"audio into {count} segments, more than the {max_segments} allowed (setting OMNIEMBED_MAX_SEGMENTS); "
            "use a longer segment_sec or a shorter overlap_sec",
            param="segment_sec",
        )
    spans: list[tuple[int, int]] = []
    pos = start
    while pos < n_samples:
        spans.append((pos, min(pos + length, n_samples)))
        if pos + length >= n_samples:
            break
        pos += step
    return start, spans


class AudioPreparer:
    """Audio items -> one ``Prepared`` row per segment, each holding the model windows of its audio."""

    def __init__(self, frontend: Windower, settings: Settings) -> None:
        self.frontend = frontend
        self.settings = settings

    def contract(self, options: Any) -> str:
        if options.segment_sec is None:
            segments = "one segment per model window"
        else:
            segments = f"segments {options.segment_sec:g} s, overlap {options.overlap_sec:g} s"
        return f"{self.frontend.describe()}; start_offset_sec={options.start_offset_sec:g}; {segments}"

    def prepare(self, items: Sequence[Any], options: Any) -> list[Any]:
        out: list[Any] = []
        for i, item in enumerate(items):
            try:
                out.append(self._prepare_one(item, i, options))
            except OmniEmbedError as exc:
                out.append(exc.at_index(i))
            except Exception as exc:  # a decoder failing in an unforeseen way is still this item's problem
                out.append(InputUnreadable(f"the audio could not be read: {_reason(exc)}", param="audio", index=i,
                                           detail=f"{type(exc).__name__}: {exc}"[:2000]))
        return out

    def _prepare_one(self, item: Any, index: int, options: Any) -> list[Any]:
        clip = load_audio(item, self.settings, allow_paths=options.allow_paths)
        rate = self.frontend.sample_rate
        wave = resample(clip.samples, clip.sample_rate, rate)
        start, spans = plan_segments(
            len(wave), rate, options.start_offset_sec, options.segment_sec, options.overlap_sec,
            self.settings.max_segments,
        )
        rows: list[tuple[WindowSet, slice, tuple[int, int]]] = []
        if not spans:  # the model's own windows over the whole stretch: one segment each
            found = self.frontend.windows(wave[start:])
            rows = [(found, slice(p, p + 1), found.spans[p]) for p in range(len(found.spans))]
            padded = found.padded
        else:
            padded = False
            for s, e in spans:
                found = self.frontend.windows(wave[s:e])
                padded = padded or found.padded
                rows.append((found, slice(None), (s - start, e - start)))
        info = InputInfo(kind="audio", description=clip.description, length=len(wave) - start, padded=padded)
        prepared = []
        for found, which, (s, e) in rows:
            features = {k: np.ascontiguousarray(v[which]) for k, v in found.features.items()}
            n_windows = next(iter(features.values())).shape[0]
            end = min(start + e, len(wave))
            segment = Segment(round((start + s) / rate, 6), round(end / rate, 6))
            prepared.append(Prepared(features, n_windows, info, segment=segment))
        return prepared

    def collate(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        width = max(p.length for p in batch)
        feeds: dict[str, np.ndarray] = {}
        for name in batch[0].features:
            first = batch[0].features[name]
            stacked = np.zeros((len(batch), width, *first.shape[1:]), first.dtype)
            for row, p in enumerate(batch):
                stacked[row, : p.length] = p.features[name]
            feeds[name] = stacked
        mask = np.zeros((len(batch), width), np.float32)
        for row, p in enumerate(batch):
            mask[row, : p.length] = 1.0
        feeds["window_mask"] = mask
        return feeds
