"""Video embeddings: a video's clips as pooled frame embeddings of an image model, or its audio track's
segments under an audio model.

``embed_videos`` is what ``Engine.embed_batch(model, videos=[...])`` runs. With ``embedding_option="visual"``
(the default) the clips (``segment_sec`` long, from ``start_offset_sec`` to ``end_offset_sec`` or the end;
the last one shorter) are sampled at ``settings.video_fps`` and every frame goes through the model's own
image path (its image preparer, then the pipeline's batching, encoder, pooling and normalisation), so a
frame's vector is exactly the model's image embedding of that frame. A clip's vector is the mean of its
frames' vectors, then the model's normalisation; the video's (``Embedding.vector``) is the mean of all
its sampled frames' vectors, normalised likewise. With ``embedding_option="audio"`` the video's sound is
extracted (``inputs.video.extract_audio``) and embedded by the audio model, segment by segment.
``plan_clips`` cuts the clips and their frame times.

Decoding overlaps encoding: one thread decodes and preprocesses frames (PyAV and Pillow release the GIL)
into a bounded queue while the caller's thread encodes full batches, so at most a few batches of
preprocessed frames are in memory, however long the videos.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality, Segment, Timings
from omniembed.errors import InputUnreadable, OmniEmbedError, ParameterInvalid
from omniembed.inputs.video import VideoReader, extract_audio
from omniembed.pipeline import LoadedModel, Options, Prepared, Preparer, normalize, run
from omniembed.settings import Settings

__all__ = ["EMBEDDING_OPTIONS", "Clip", "embed_videos", "plan_clips"]

EMBEDDING_OPTIONS = ("visual", "audio")
_GROUP = 8
"""Frames preprocessed together by the decoding thread (the image preparer spreads them over threads)..."""
_GROUP_BYTES = 64 * 1024 * 1024
"""... and at most this many bytes of decoded RGB frames (4K frames: 2 at a time)."""
log = logging.getLogger(__name__)
Result = Embedding | OmniEmbedError


class _Stopped(BaseException):
    """Raised in the decoding thread when the encoding loop has stopped reading (not an ``Exception``, so
    no handler for one video's failure catches it)."""


class _Ready:
    """A preparer for frames the decoding thread already prepared: the model's image preparer's batching."""

    def __init__(self, image: Preparer) -> None:
        self.image = image
        self.max_batch_rows = getattr(image, "max_batch_rows", None)

    def contract(self, options: Options) -> str:
        return self.image.contract(options)

    def prepare(self, items: Sequence[Any], options: Options) -> list[Any]:
        return list(items)

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        return self.image.collate(batch)


@dataclass
class _Video:
    """One video's progress: its clips, the running sums of its frames' vectors, what is still out."""

    info: Any
    clips: list[Clip]
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None
    outstanding: int = 0
    ended: bool = False
    prepare_ms: float = 0.0
    encode_ms: float = 0.0
    template: EmbeddingMeta | None = None
    frames: int = 0


@dataclass(frozen=True)
class Clip:
    """One clip of a video: ``[start_sec, end_sec)`` and the times its frames are sampled at."""

    start_sec: float
    end_sec: float
    times: tuple[float, ...]


def plan_clips(
    duration_sec: float, fps: float, segment_sec: float, start_offset_sec: float = 0.0,
    end_offset_sec: float | None = None,
) -> list[Clip]:
    """Clips of ``segment_sec`` from ``start_offset_sec`` to ``end_offset_sec`` (or the end; the last clip
    is shorter), each with its frame times: its start, then every ``1 / fps`` seconds before its end."""
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


def _check_option(option: str) -> str:
    value = "visual" if option == "visual-text" else option
    if value not in EMBEDDING_OPTIONS:
        raise ParameterInvalid(
            f"embedding_option must be one of {', '.join(EMBEDDING_OPTIONS)}, not {option!r}", param="embedding_option"
        )
    return value


def embed_videos(
    model: LoadedModel,
    items: Sequence[Any],
    options: Options,
    settings: Settings,
    *,
    errors: str = "raise",
    progress: Callable[[int], None] | None = None,
    embedding_option: str = "visual",
) -> list[Result]:
    """One ``Embedding`` (modality ``video``: clips x D, ``meta.segments``, a pooled ``vector``) or one
    coded error per video, in input order; see the module docstring."""
    option = _check_option(embedding_option)
    wanted = Modality.IMAGE if option == "visual" else Modality.AUDIO
    if wanted not in model.preparers or wanted not in model.encoders:
        takes = ", ".join(str(m) for m in model.preparers)
        raise ParameterInvalid(
            f"model {model.spec.name!r} does not embed {wanted}, which embedding_option={option!r} needs (it takes: "
            f"{takes}); choose an {'image' if option == 'visual' else 'audio'} model",
            param="model",
        )
    if option == "audio":
        return _embed_audio(model, items, options, settings, errors, progress)
    return _Visual(model, options, settings, errors, progress).run(items)


def _embed_audio(
    model: LoadedModel, items: Sequence[Any], options: Options, settings: Settings, errors: str,
    progress: Callable[[int], None] | None,
) -> list[Result]:
    frontend = getattr(model.preparers[Modality.AUDIO], "frontend", None)
    rate = int(getattr(frontend, "sample_rate", 16000))
    audio_options = dataclasses.replace(options, end_offset_sec=None)
    out: list[Result] = []
    for i, item in enumerate(items):
        try:
            track = extract_audio(item, settings, sample_rate=rate, allow_paths=options.allow_paths,
                                  end_sec=options.end_offset_sec)
            result = run(model, Modality.AUDIO, [track], audio_options, errors="return")[0]
        except OmniEmbedError as exc:
            result = exc
        if isinstance(result, OmniEmbedError):
            result = result.at_index(i)
            if errors == "raise":
                raise result
        else:
            meta = dataclasses.replace(
                result.meta, modality=Modality.VIDEO, extra={"embedding_option": "audio"},
                input=dataclasses.replace(result.meta.input, kind="video"),
                preprocessing=f"video audio track; {result.meta.preprocessing}",
            )
            result = Embedding(result.data, meta, pooled=result.pooled)
        out.append(result)
        if progress:
            progress(1)
    return out


class _Visual:
    """The decoding thread and the encoding loop of ``embedding_option="visual"``."""

    def __init__(self, model: LoadedModel, options: Options, settings: Settings, errors: str,
                 progress: Callable[[int], None] | None) -> None:
        self.model, self.options, self.settings = model, options, settings
        self.errors, self.progress = errors, progress
        self.image = model.preparers[Modality.IMAGE]
        self.ready = _Ready(self.image)
        # the frames' own call: single images, no clip options
        self.frame_options = dataclasses.replace(options, segment_sec=None, start_offset_sec=0.0, end_offset_sec=None)
        self.segment_sec = options.segment_sec or settings.video_clip_sec
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=max(2, 2 * options.batch_size // _GROUP))
        self.stop = threading.Event()
        spec = model.spec
        self.do_normalize = spec.normalize if options.normalize is None else options.normalize

    # -- the decoding thread ----------------------------------------------------------------------
    def _put(self, event: tuple[Any, ...]) -> None:
        """Queue ``event``, waiting while the queue is full; abandon the work once the caller stops."""
        while not self.stop.is_set():
            try:
                self.queue.put(event, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _decode_all(self, items: Sequence[Any]) -> None:
        try:
            for i, item in enumerate(items):
                try:
                    self._decode_one(i, item)
                except OmniEmbedError as exc:
                    self._put(("error", i, exc.at_index(i)))
                except Exception as exc:  # a decoder failing in an unforeseen way is still this video's problem
                    log.debug("video %d failed to decode", i, exc_info=True)
                    message = f"the video could not be decoded: {type(exc).__name__}: {str(exc)[:160]}"
                    self._put(("error", i, InputUnreadable(message, param="video", index=i)))
            self._put(("done",))
        except _Stopped:  # the caller raised (errors="raise") or was interrupted: nobody reads the rest
            return

    def _decode_one(self, i: int, item: Any) -> None:
        started = time.perf_counter()
        o = self.options
        with VideoReader(item, self.settings, allow_paths=o.allow_paths) as reader:
            duration = reader.info.duration_sec
            if not duration or duration <= 0:  # none declared: find the end by decoding once
                duration = reader.last_time()
            clips = plan_clips(duration, self.settings.video_fps, self.segment_sec, o.start_offset_sec,
                               o.end_offset_sec)
            self._put(("start", i, reader.info, clips))
            owner = [k for k, clip in enumerate(clips) for _ in clip.times]
            times = [t for clip in clips for t in clip.times]
            group: list[tuple[int, Any]] = []
            size = max(1, min(_GROUP, _GROUP_BYTES // max(1, 3 * reader.info.width * reader.info.height)))
            for n, (_, image) in enumerate(reader.frames(times)):
                group.append((owner[n], image))
                if len(group) >= size:
                    self._emit(i, group, started)
                    group, started = [], time.perf_counter()
            if group:
                self._emit(i, group, started)
        self._put(("end", i))

    def _emit(self, i: int, group: list[tuple[int, Any]], started: float) -> None:
        prepared = self.image.prepare([image for _, image in group], self.options)
        for p in prepared:
            if isinstance(p, OmniEmbedError):
                raise p.at_index(None)
        ms = (time.perf_counter() - started) * 1000
        self._put(("frames", i, [(k, p) for (k, _), p in zip(group, prepared, strict=True)], ms))

    # -- the encoding loop ----------------------------------------------------------------------
    def run(self, items: Sequence[Any]) -> list[Result]:
        results: list[Result | None] = [None] * len(items)
        videos: dict[int, _Video] = {}
        pending: list[tuple[int, int, Prepared]] = []
        thread = threading.Thread(target=self._decode_all, args=(items,), name="omniembed-video", daemon=True)
        thread.start()
        try:
            done = False
            while not done:
                event = self.queue.get()
                kind = event[0]
                if kind == "done":
                    done = True
                elif kind == "start":
                    videos[event[1]] = _Video(event[2], event[3])
                elif kind == "frames":
                    i, frames, ms = event[1], event[2], event[3]
                    video = videos[i]
                    video.prepare_ms += ms
                    video.outstanding += len(frames)
                    pending.extend((i, k, p) for k, p in frames)
                elif kind == "end":
                    videos[event[1]].ended = True
                elif kind == "error":
                    self._fail(results, videos, event[1], event[2])
                size = self.options.batch_size
                while len(pending) >= size or (done and pending):  # every full batch (decoding runs ahead)
                    batch, pending = pending[:size], pending[size:]
                    self._encode(batch, videos, results)
                self._finish_ready(videos, results)
        finally:
            self.stop.set()  # after an error raised here, the decoding thread ends at its next queue put
            thread.join(timeout=1.0)
        return [r if r is not None else InputUnreadable("the video was not decoded", index=i)
                for i, r in enumerate(results)]

    def _fail(self, results: list[Result | None], videos: dict[int, _Video], i: int, error: OmniEmbedError) -> None:
        videos.pop(i, None)
        results[i] = error
        if self.errors == "raise":
            raise error
        if self.progress:
            self.progress(1)

    def _encode(self, batch: list[tuple[int, int, Prepared]], videos: dict[int, _Video],
                results: list[Result | None]) -> None:
        live = [(i, k, p) for i, k, p in batch if i in videos]
        if not live:
            return
        out = run(self.model, Modality.IMAGE, [p for _, _, p in live], self.frame_options, errors="return",
                  preparer=self.ready)
        for (i, k, _), emb in zip(live, out, strict=True):
            video = videos.get(i)
            if video is None:
                continue
            if isinstance(emb, OmniEmbedError):
                self._fail(results, videos, i, emb.at_index(i))
                continue
            vector = np.asarray(emb.data, np.float64)
            if video.sums is None:
                video.sums = np.zeros((len(video.clips), vector.shape[0]), np.float64)
                video.counts = np.zeros(len(video.clips), np.int64)
                video.template = emb.meta
            assert video.counts is not None
            video.sums[k] += vector
            video.counts[k] += 1
            video.outstanding -= 1
            video.frames += 1
            video.encode_ms += emb.meta.timings.encode_ms / max(1, emb.meta.timings.batch_size)

    def _finish_ready(self, videos: dict[int, _Video], results: list[Result | None]) -> None:
        for i in [i for i, v in videos.items() if v.ended and v.outstanding == 0]:
            video = videos.pop(i)
            try:
                results[i] = self._finish(video)
            except OmniEmbedError as exc:
                self._fail(results, videos, i, exc.at_index(i))
                continue
            if self.progress:
                self.progress(1)

    def _finish(self, video: _Video) -> Embedding:
        if video.sums is None or video.counts is None or video.template is None or video.counts.min() == 0:
            raise InputUnreadable("the video gave no frames for some of its clips", param="video")
        started = time.perf_counter()
        clips = (video.sums / video.counts[:, None]).astype(np.float32)
        whole = (video.sums.sum(axis=0) / video.counts.sum()).astype(np.float32)
        if self.do_normalize:
            clips, whole = normalize(clips), normalize(whole[None])[0]
        info = video.info
        o = self.options
        end = video.clips[-1].end_sec
        contract = (
            f"video: {self.settings.video_fps:g} fps; clips {self.segment_sec:g} s from {o.start_offset_sec:g} s to "
            f"{end:g} s; frame vectors mean-pooled per clip{', normalized' if self.do_normalize else ''}; "
            f"frames: {self.image.contract(o)}"
        )
        description = f"{info.description} ({info.width}x{info.height}, {info.codec})"
        meta = dataclasses.replace(
            video.template,
            modality=Modality.VIDEO,
            dim=int(clips.shape[1]),
            normalized=self.do_normalize,
            preprocessing=contract,
            input=InputInfo(kind="video", description=description, length=video.frames),
            timings=Timings(video.prepare_ms, video.encode_ms, (time.perf_counter() - started) * 1000,
                            self.options.batch_size),
            segments=tuple(Segment(c.start_sec, c.end_sec) for c in video.clips),
            extra={"embedding_option": "visual"},
        )
        return Embedding(clips, meta, pooled=whole)
