"""Video inputs: one loader (path, http(s) URL, bytes, file object, data URL), limits, frame sampling, audio.

Encoded inputs are read by ``inputs.source.read_source`` (shared with audio; a local file is opened in
place, not read into memory). Decoding is FFmpeg through PyAV (the ``av`` package ships its own FFmpeg
libraries). A video is opened from memory or from an open file, never from a name FFmpeg would resolve
itself, so no FFmpeg protocol (http, file, concat ...) is ever reached; URLs go through the one guarded
fetcher. Only common video containers are read (``CONTAINERS``): playlist demuxers such as HLS, which
open further URLs, are off.

How a video becomes clips of frames for the pipeline is in ``inputs.video_clips``.

Limits, from settings, each checked before the pixels they guard are decoded: ``max_video_bytes``
(the encoded size; URLs are also capped by ``fetch_max_bytes``), ``max_video_pixels`` (the declared
width x height, and every decoded frame's), ``max_video_seconds`` (the declared duration, and every
decoded frame's time, so a file that declares none cannot run on).

Frames are sampled lazily (``VideoReader.frames``): one pass of the decoder, keeping only the frame on
screen, so the whole video is never in memory. Frames are turned upright as the stream's display matrix
says (portrait phone video). The frame sampled at time ``t`` is the one on screen
at ``t``: the last frame whose timestamp is <= ``t``. Times are in seconds from the video stream's start.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.inputs.encoded import decoder_reason as _reason
from omniembed.inputs.source import read_source
from omniembed.settings import Settings

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "CONTAINERS",
    "VIDEO_SUFFIXES",
    "AudioTrack",
    "VideoInfo",
    "VideoReader",
    "extract_audio",
]

CONTAINERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,ogg,mpeg,nut,asf,ivf"
"""The FFmpeg demuxers a video may be read with (FFmpeg's ``format_whitelist``)."""
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".flv", ".ogv", ".mpg",
                            ".mpeg", ".wmv", ".3gp", ".nut", ".ivf"})
DECODE_THREADS = 0
"""FFmpeg decoding threads per video (0: FFmpeg's choice, one per core)."""
_SLACK_SEC = 2.0
"""How far the frames may end before the declared duration before the file counts as truncated."""


@dataclass(frozen=True)
class VideoInfo:
    """What the header of a video says."""

    description: str
    width: int
    height: int
    duration_sec: float | None
    """The video stream's declared duration (the container's when the stream has none); None: unknown."""
    frame_rate: float | None
    has_audio: bool
    codec: str


class AudioTrack(NamedTuple):
    """A video's audio track: mono float32 samples and their rate. A ``(samples, rate)`` pair, which
    ``embed_batch(audio_model, audios=[track])`` accepts as it is."""

    samples: np.ndarray
    sample_rate: int


def _open(source: bytes | Path, what: str) -> tuple[Any, Any]:
    """An open file (or buffer) and the PyAV container reading it; InputUnreadable when FFmpeg cannot."""
    import av

    handle: Any = source.open("rb") if isinstance(source, Path) else io.BytesIO(source)
    try:
        return handle, av.open(handle, mode="r", options={"format_whitelist": CONTAINERS}, metadata_errors="ignore")
    except av.FFmpegError as exc:
        handle.close()
        size = f"{len(source):,} bytes" if isinstance(source, bytes) else "the file"
        raise InputUnreadable(
            f"{what} ({size}) cannot be opened as a video ({_reason(exc)}): it is truncated, damaged, or not in a "
            "container omniembed reads (MP4/MOV, MKV/WebM, AVI, MPEG-TS, FLV, Ogg, MPEG-PS, NUT, ASF)",
            param="video",
        ) from None


def _upright(frame: Any) -> PILImage.Image:
    """The frame as shown: RGB, turned as the stream's display matrix says (phones store portrait video
    sideways), exactly as FFmpeg's own autorotation turns it."""
    from PIL import Image

    image: PILImage.Image = frame.to_image()
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    angle = round(getattr(frame, "rotation", 0) or 0) % 360  # degrees counter-clockwise
    return image.transpose(turn[angle]) if angle in turn else image


# -- the reader ------------------------------------------------------------------------------------
class VideoReader:
    """An opened, checked video: ``info`` from its header; ``frames(times)`` decodes lazily.

    Use as a context manager (or call ``close``). Every failure is an ``InputUnreadable`` or
    ``InputTooLarge`` saying what is wrong with the file.
    """

    def __init__(self, item: Any, settings: Settings, *, allow_paths: bool = True) -> None:
        self.settings = settings
        source = read_source(item, settings, kind="video", allow_paths=allow_paths, keep_files=True)
        self.what = source.what
        self._file, self.container = _open(source.data, self.what)
        try:
            self.info = self._probe(source.description)
        except BaseException:
            self.close()
            raise

    def _probe(self, description: str) -> VideoInfo:
        c = self.container
        if not c.streams.video:
            raise InputUnreadable(f"{self.what} has no video stream (it is {c.format.long_name or c.format.name})",
                                  param="video")
        stream = c.streams.video[0]
        if DECODE_THREADS != 1:
            stream.thread_type = "AUTO"  # frame and slice threads: the same pixels, sooner
            stream.codec_context.thread_count = DECODE_THREADS
        self.stream = stream
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        self._check_pixels(width, height)
        self.origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        duration: float | None = None
        self._stream_duration: float | None = None
        if stream.duration and stream.time_base:
            duration = self._stream_duration = float(stream.duration * stream.time_base)
        elif c.duration:
            duration = c.duration / 1_000_000
        if duration is not None and duration > self.settings.max_video_seconds:
            raise self._too_long(duration)
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            description=description, width=width, height=height, duration_sec=duration,
            frame_rate=float(rate) if rate else None, has_audio=bool(c.streams.audio), codec=ctx.name or "?",
        )

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self.settings.max_video_pixels:
            raise InputTooLarge(
                f"{self.what} is {width}x{height} = {width * height:,} pixels a frame; the limit is "
                f"{self.settings.max_video_pixels:,} pixels (OMNIEMBED_MAX_VIDEO_PIXELS). Downscale it first.",
                param="video",
            )

    def _too_long(self, seconds: float) -> InputTooLarge:
        return InputTooLarge(
            f"{self.what} is {seconds:,.1f} s long; the limit is {self.settings.max_video_seconds:,.0f} s "
            "(OMNIEMBED_MAX_VIDEO_SECONDS). Cut the video or raise the limit.",
            param="video",
        )

    def frames(self, times: Sequence[float]) -> Iterator[tuple[float, PILImage.Image]]:
        """``(t, RGB image on screen at t)`` for each of the sorted ``times`` (seconds), decoding lazily.

        Decoding starts at the key frame before the first time. Times past the last frame get the last
        frame, unless they lie well inside the video stream's declared duration (the file is truncated)."""
        import av

        if not times:
            return
        stream = self.stream
        first = times[0]
        if first > 0 and stream.time_base:
            try:
                self.container.seek(int((first + self.origin) / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:
                self.container.seek(0, stream=stream)
        pending = iter(times)
        want = next(pending, None)
        shown: Any = None
        shown_t = -math.inf
        decoded = 0
        try:
            for frame in self.container.decode(stream):
                decoded += 1
                t = (frame.time - self.origin) if frame.time is not None else shown_t + 1 / (self.info.frame_rate or 1)
                if t > self.settings.max_video_seconds:
                    raise self._too_long(t)
                self._check_pixels(frame.width, frame.height)
                while want is not None and t > want + 1e-6:
                    yield want, _upright(shown if shown is not None else frame)
                    want = next(pending, None)
                if want is None:
                    return
                shown, shown_t = frame, t
        except av.FFmpegError as exc:
            raise InputUnreadable(
                f"{self.what} is corrupt or truncated after {max(shown_t, 0):.2f} s: {_reason(exc)}", param="video"
            ) from None
        if shown is None:
            raise InputUnreadable(f"{self.what} holds no video frames (decoded {decoded})", param="video")
        declared = self._stream_duration  # the container's duration may be the sound's, longer than the pictures
        while want is not None:
            if declared is not None and want > shown_t + _SLACK_SEC and want < declared:
                raise InputUnreadable(
                    f"{self.what} ends at {shown_t:.2f} s although its header says {declared:.2f} s: "
                    "the file is truncated",
                    param="video",
                )
            yield want, _upright(shown)
            want = next(pending, None)

    def last_time(self) -> float:
        """The time just after the last frame (decodes every frame: for videos that declare no duration)."""
        import av

        end = 0.0
        step = 1 / (self.info.frame_rate or 25.0)
        count = 0
        try:
            for frame in self.container.decode(self.stream):
                count += 1
                if frame.time is not None:
                    end = max(end, frame.time - self.origin + step)
                if end > self.settings.max_video_seconds:
                    raise self._too_long(end)
        except av.FFmpegError as exc:
            raise InputUnreadable(f"{self.what} is corrupt or truncated: {_reason(exc)}", param="video") from None
        if count == 0:
            raise InputUnreadable(f"{self.what} holds no video frames", param="video")
        self.container.seek(0, stream=self.stream)
        return end

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken container must not mask the original error
            self.container.close()
        self._file.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extract_audio(
    item: Any, settings: Settings, *, sample_rate: int = 16000, allow_paths: bool = True,
    end_sec: float | None = None,
) -> AudioTrack:
    """The audio track of a video input, mono float32 resampled to ``sample_rate`` (FFmpeg's resampler),
    from the start to ``end_sec`` (None: the end). ``embed_batch(audio_model, audios=[track],
    start_offset_sec=..., segment_sec=...)`` embeds it; segment times are then seconds from the start
    of the video. The track stops where the video stream ends, when that is declared. No audio stream:
    ``InputUnreadable``."""
    import av

    if not isinstance(sample_rate, int) or sample_rate < 1000:
        raise ParameterInvalid(f"sample_rate must be an integer >= 1000, not {sample_rate!r}", param="sample_rate")
    source = read_source(item, settings, kind="video", allow_paths=allow_paths, keep_files=True)
    what = source.what
    handle, container = _open(source.data, what)
    with handle, container:
        if not container.streams.audio:
            raise InputUnreadable(f"{what} has no audio stream: there is no sound to embed", param="video")
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        limit = settings.max_video_seconds
        if declared is not None and declared > limit and (end_sec is None or end_sec > limit):
            raise InputTooLarge(
                f"{what} has {declared:,.1f} s of audio; the limit is {limit:,.0f} s "
                "(OMNIEMBED_MAX_VIDEO_SECONDS)",
                param="video",
            )
        stop = min(limit, end_sec) if end_sec is not None else limit
        if container.streams.video:  # the sound ends where the pictures do (AAC pads its last frame)
            pictures = container.streams.video[0]
            if pictures.duration and pictures.time_base:
                stop = min(stop, float(pictures.duration * pictures.time_base))
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        parts: list[np.ndarray] = []
        total = 0
        cap = math.ceil(stop * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    total += parts[-1].size
                if total >= cap:
                    break
            else:
                for out in resampler.resample(None):
                    parts.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise InputUnreadable(f"the audio of {what} is corrupt or truncated: {_reason(exc)}",
                                  param="video") from None
    samples = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    if end_sec is None and total >= cap and stop >= limit and declared is None:
        raise InputTooLarge(f"{what} has more than {limit:,.0f} s of audio (OMNIEMBED_MAX_VIDEO_SECONDS)",
                            param="video")
    samples = samples[:cap]
    if samples.size == 0:
        raise InputUnreadable(f"{what} has an audio stream with no samples", param="video")
    return AudioTrack(np.ascontiguousarray(samples), sample_rate)
