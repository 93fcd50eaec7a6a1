"""A video as an input of the one pipeline: its sampled frames are rows, and ``finish`` averages them per clip.

``video_preparer(model, settings, embedding_option)`` gives the preparer and the encoder that
``Engine.run(model, Modality.VIDEO, videos)`` hands to ``pipeline.run``:

- ``"visual"`` (the default): ``VideoPreparer``. ``plan_clips`` cuts the clips (``segment_sec`` long, from
  ``start_offset_sec`` to ``end_offset_sec`` or the end; the last one shorter) and their frame times at
  ``settings.video_fps``. ``prepare`` gives each video as an iterator of rows: the reader decodes the
  frames lazily, a few at a time, and the model's own image preparer prepares them, so a frame's row is
  an image's row and the pipeline encodes, pools and normalises it into the model's image embedding of
  that frame. The pipeline reads the rows one encoder batch ahead of the encoder (on its background
  thread), cuts encoder batches across clips and videos, and once a video's last frame is encoded calls
  ``finish``: a clip's vector is the mean of its frames' vectors, then the model's normalisation; the
  video's (``Embedding.vector``) is the mean of all its frames' vectors, normalised likewise.
- ``"audio"``: ``TrackPreparer``. The video's sound (``inputs.video.extract_audio``, at the model's
  sample rate, cut at ``end_offset_sec``) is segmented by the model's own audio preparer: the rows are
  its segments, and ``finish`` gives segments x D plus their mean, as for any audio clip.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniembed.contract import LoadedModel, Options, Prepared, Preparer, PrepareResult, normalize
from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality, Segment
from omniembed.errors import InputUnreadable, OmniEmbedError, ParameterInvalid
from omniembed.inputs.encoded import decoder_reason
from omniembed.inputs.video import VideoInfo, VideoReader, extract_audio
from omniembed.runtime.base import Encoder
from omniembed.settings import Settings

__all__ = ["EMBEDDING_OPTIONS", "Clip", "TrackPreparer", "VideoPreparer", "plan_clips", "video_preparer"]

EMBEDDING_OPTIONS = ("visual", "audio")
_GROUP = 8
"""Frames decoded and then prepared together (the image preparer spreads them over threads)..."""
_GROUP_BYTES = 64 * 1024 * 1024
"""... and at most this many bytes of decoded RGB frames (4K frames: 2 at a time)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One clip of a video: ``[start_sec, end_sec)`` and the times its frames are sampled at."""

    start_sec: float
    end_sec: float
    times: tuple[float, ...]


def plan_clips(
    duration_sec: float, fps: float, segment_sec: float, start_offset_sec: float = 0.0,
    end_offset_sec: float | None = None, max_clips: int | None = None,
) -> list[Clip]:
    """Clips of ``segment_sec`` from ``start_offset_sec`` to ``end_offset_sec`` (or the end; the last clip
    is shorter), each with its frame times: its start, then every ``1 / fps`` seconds before its end. More
    than ``max_clips`` clips is refused before any is made."""
    if not (math.isfinite(fps) and fps > 0):
        raise ParameterInvalid(f"the frame rate must be > 0, not {fps!r}", param="video_fps")
    if not (math.isfinite(segment_sec) and segment_sec > 0):
        raise ParameterInvalid(f"segment_sec must be > 0, not {segment_sec!r}", param="segment_sec")
    if start_offset_sec >= duration_sec:
        raise ParameterInvalid(
            f"start_offset_sec={start_offset_sec:g} is at or past the end of the video ({duration_sec:.3f} s long)",
            param="start_offset_sec",
        )
    end = duration_sec if end_offset_sec is None else min(end_offset_sec, duration_sec)
    if end <= start_offset_sec:
        raise ParameterInvalid(
            f"end_offset_sec ({end_offset_sec:g}) must be after start_offset_sec ({start_offset_sec:g})",
            param="end_offset_sec",
        )
    count = math.ceil((end - start_offset_sec) / segment_sec - 1e-9)  # inf for a vanishing segment_sec
    if max_clips is not None and count > max_clips:
        raise ParameterInvalid(
            f"segment_sec={segment_sec:g} cuts {end - start_offset_sec:.3f} s of video into {count:g} clips, more "
            f"than the {max_clips} allowed (setting OMNIEMBED_MAX_SEGMENTS); use a longer segment_sec",
            param="segment_sec",
        )
    clips: list[Clip] = []
    k = 0
    while True:
        start = start_offset_sec + k * segment_sec
        if start >= end - 1e-9:
            break
        stop = min(start + segment_sec, end)
        n = max(1, math.ceil((stop - start) * fps - 1e-9))
        clips.append(Clip(round(start, 6), round(stop, 6), tuple(round(start + j / fps, 6) for j in range(n))))
        k += 1
    return clips


def video_preparer(
    model: LoadedModel, settings: Settings, embedding_option: str = "visual"
) -> tuple[Preparer, Encoder]:
    """The preparer and the encoder that embed videos with ``model`` (see the module docstring)."""
    option = "visual" if embedding_option == "visual-text" else embedding_option
    if option not in EMBEDDING_OPTIONS:
        raise ParameterInvalid(f"embedding_option must be one of {', '.join(EMBEDDING_OPTIONS)}, not "
                               f"{embedding_option!r}", param="embedding_option")
    wanted = Modality.IMAGE if option == "visual" else Modality.AUDIO
    if wanted not in model.preparers or wanted not in model.encoders:
        takes = ", ".join(str(m) for m in model.preparers)
        raise ParameterInvalid(
            f"model {model.spec.name!r} does not embed {wanted}, which embedding_option={option!r} needs (it takes: "
            f"{takes}); choose an {'image' if option == 'visual' else 'audio'} model",
            param="model",
        )
    if option == "audio":
        return TrackPreparer(model.preparers[wanted], settings), model.encoders[wanted]
    return VideoPreparer(model.preparers[wanted], settings), model.encoders[wanted]


def _as_video(meta: EmbeddingMeta, option: str, **changes: Any) -> EmbeddingMeta:
    return dataclasses.replace(meta, modality=Modality.VIDEO, extra={"embedding_option": option}, **changes)


@dataclass(frozen=True)
class _Video:
    """What a video's rows share (their ``Prepared.item``): its header, its clips, how they were cut."""

    info: VideoInfo
    clips: tuple[Clip, ...]
    segment_sec: float
    start_offset_sec: float
    frames: str
    """The model's image preprocessing."""


class VideoPreparer:
    """Videos -> one row per sampled frame (made lazily, by the model's image preparer) -> clips x D."""

    streaming = True
    """Decode the next frames while the current ones are encoded."""
    pooled_rows = True
    """``finish`` averages the frames' image embeddings."""

    def __init__(self, image: Preparer, settings: Settings) -> None:
        self.image = image
        self.settings = settings
        self.max_batch_rows = getattr(image, "max_batch_rows", None)

    def contract(self, options: Options) -> str:
        segment = options.segment_sec or self.settings.video_clip_sec
        return (f"video: {self.settings.video_fps:g} fps; clips {segment:g} s from {options.start_offset_sec:g} s; "
                f"frames: {self.image.contract(options)}")

    def prepare(self, items: Sequence[Any], options: Options) -> list[PrepareResult]:
        return [self._rows(item, options) for item in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        return self.image.collate(batch)

    def _rows(self, item: Any, options: Options) -> Iterator[Prepared]:
        try:
            yield from self._decode(item, options)
        except OmniEmbedError:
            raise
        except Exception as exc:  # a decoder failing in an unforeseen way is still this video's problem
            log.debug("a video failed to decode", exc_info=True)
            raise InputUnreadable(f"the video could not be decoded: {decoder_reason(exc)}", param="video",
                                  detail=f"{type(exc).__name__}: {exc}"[:2000]) from None

    def _decode(self, item: Any, options: Options) -> Iterator[Prepared]:
        segment_sec = options.segment_sec or self.settings.video_clip_sec
        with VideoReader(item, self.settings, allow_paths=options.allow_paths) as reader:
            info = reader.info
            duration = info.duration_sec
            if not duration or duration <= 0:  # none declared: find the end by decoding once
                duration = reader.last_time()
            clips = plan_clips(duration, self.settings.video_fps, segment_sec, options.start_offset_sec,
                               options.end_offset_sec, self.settings.max_segments)
            video = _Video(info, tuple(clips), segment_sec, options.start_offset_sec, self.image.contract(options))
            segments = [Segment(c.start_sec, c.end_sec) for c in clips]
            owner = [k for k, clip in enumerate(clips) for _ in clip.times]
            frames = reader.frames([t for clip in clips for t in clip.times])
            group = max(1, min(_GROUP, _GROUP_BYTES // max(1, 3 * info.width * info.height)))
            for start in range(0, len(owner), group):
                images = [image for _, image in itertools.islice(frames, group)]
                for k, row in zip(owner[start:], self.image.prepare(images, options), strict=False):
                    if isinstance(row, OmniEmbedError):
                        raise row.at_index(None)
                    assert isinstance(row, Prepared)
                    yield dataclasses.replace(row, segment=segments[k], item=video)

    def finish(self, rows: Sequence[Prepared], outputs: Sequence[np.ndarray], meta: EmbeddingMeta) -> Embedding:
        """Clips x D: each clip's frame vectors averaged, then normalised as the model normalises; the video's
        pooled vector: all its frames averaged, normalised likewise."""
        started = time.perf_counter()
        video: _Video = rows[0].item
        place = {Segment(c.start_sec, c.end_sec): k for k, c in enumerate(video.clips)}
        owner = np.fromiter((place[row.segment] for row in rows), np.intp, len(rows))  # type: ignore[index]
        vectors = np.asarray(outputs, np.float64)
        sums = np.zeros((len(video.clips), vectors.shape[1]), np.float64)
        np.add.at(sums, owner, vectors)
        counts = np.bincount(owner, minlength=len(video.clips))
        if counts.min() == 0:
            raise InputUnreadable("the video gave no frames for some of its clips", param="video")
        clips = (sums / counts[:, None]).astype(np.float32)
        whole = (sums.sum(axis=0) / counts.sum()).astype(np.float32)
        if meta.normalized:
            clips, whole = normalize(clips), normalize(whole)
        info, end = video.info, video.clips[-1].end_sec
        contract = (
            f"video: {self.settings.video_fps:g} fps; clips {video.segment_sec:g} s from {video.start_offset_sec:g} s "
            f"to {end:g} s; frame vectors mean-pooled per clip{', normalized' if meta.normalized else ''}; "
            f"frames: {video.frames}"
        )
        t = meta.timings
        meta = _as_video(
            meta, "visual", dim=int(clips.shape[1]), preprocessing=contract,
            input=InputInfo(kind="video", description=f"{info.description} ({info.width}x{info.height}, {info.codec})",
                            length=len(rows)),
            timings=dataclasses.replace(t, postprocess_ms=t.postprocess_ms + (time.perf_counter() - started) * 1000),
            segments=tuple(Segment(c.start_sec, c.end_sec) for c in video.clips),
        )
        return Embedding(clips, meta, pooled=whole)


class TrackPreparer:
    """Videos -> their sound tracks, segmented by the model's audio preparer -> segments x D."""

    streaming = True
    """Extract the next track while the current one is encoded."""
    pooled_rows = True

    def __init__(self, audio: Preparer, settings: Settings) -> None:
        self.audio = audio
        self.settings = settings
        self.sample_rate = int(getattr(getattr(audio, "frontend", None), "sample_rate", 16000))
        self.max_batch_rows = getattr(audio, "max_batch_rows", None)

    @staticmethod
    def _options(options: Options) -> Options:
        return dataclasses.replace(options, end_offset_sec=None)  # the track is cut there already

    def contract(self, options: Options) -> str:
        return f"video audio track; {self.audio.contract(self._options(options))}"

    def prepare(self, items: Sequence[Any], options: Options) -> list[PrepareResult]:
        return [self._rows(item, options) for item in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        return self.audio.collate(batch)

    def _rows(self, item: Any, options: Options) -> Iterator[Prepared]:
        track = extract_audio(item, self.settings, sample_rate=self.sample_rate, allow_paths=options.allow_paths,
                              end_sec=options.end_offset_sec)
        result = self.audio.prepare([track], self._options(options))[0]
        if isinstance(result, OmniEmbedError):
            raise result.at_index(None)
        for row in result if isinstance(result, list) else [result]:
            assert isinstance(row, Prepared)
            yield dataclasses.replace(row, info=dataclasses.replace(row.info, kind="video"))

    def finish(self, rows: Sequence[Prepared], outputs: Sequence[np.ndarray], meta: EmbeddingMeta) -> Embedding:
        """Segments x D (the segments' embeddings) and their mean, normalised as they are."""
        data = np.stack(outputs)
        whole = data.mean(axis=0)
        segments = tuple(row.segment for row in rows if row.segment is not None)
        meta = _as_video(meta, "audio", dim=int(data.shape[1]), segments=segments)
        return Embedding(data, meta, pooled=normalize(whole) if meta.normalized else whole)
