"""Test videos made on the spot with PyAV: 6 s of one scikit-image photo then 6 s of another, with an
espeak-ng speech track, and the bad videos (truncated, not a video, no video stream, zero frames, a
resolution bomb, a 10-hour file of one frame).

Everything is written once per test session into a pytest temporary folder (``VideoFiles``), so the
tests need no stored video and no network. Speech needs the ``espeak-ng`` program (see audio_data.py).
"""

from __future__ import annotations

import io
import struct
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from image_data import photo

__all__ = ["FIRST", "FPS", "SECOND", "SIZE", "VideoFiles", "still", "two_photos"]

FIRST, SECOND = "astronaut", "coffee"
SIZE = (320, 240)
"""Width, height of the test videos."""
FPS = 4
"""Frame rate of the test videos (frames every 0.25 s)."""
SPEECH = ("The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.")


def still(name: str) -> np.ndarray:
    """The photo ``name`` resized to the test videos' size (what their frames show, before encoding)."""
    from PIL import Image

    return np.asarray(Image.fromarray(photo(name)).resize(SIZE, Image.Resampling.BICUBIC))


def two_photos(path: Path, seconds: int = 2, size: tuple[int, int] = (96, 72)) -> Path:
    """A short silent H.264 video at ``path`` (written once): ``seconds`` of the FIRST photo, then ``seconds`` of
    the SECOND, at FPS frames a second and ``size`` (width, height; even numbers)."""
    from PIL import Image

    if not path.exists():
        first, second = (np.asarray(Image.fromarray(photo(n)).resize(size, Image.Resampling.BICUBIC))
                         for n in (FIRST, SECOND))
        frames = [(i, first if i < seconds * FPS else second) for i in range(2 * seconds * FPS)]
        _write(path, frames, Fraction(FPS))
    return path


def _speech(root: Path, rate: int) -> np.ndarray:
    """12 s of mono float32 at ``rate``: one espeak-ng sentence in each 6 s half."""
    import soundfile as sf
    import soxr

    out = np.zeros(12 * rate, np.float32)
    for k, sentence in enumerate(SPEECH):
        path = root / f"speech{k}.wav"
        if not path.exists():
            subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True, capture_output=True, timeout=60)
        samples, sr = sf.read(path, dtype="float32")
        samples = soxr.resample(samples, sr, rate)[: 6 * rate - rate // 10]
        out[k * 6 * rate : k * 6 * rate + len(samples)] = samples
    return out


def _write(path: Path, frames: list[tuple[int, np.ndarray]], rate: Fraction, audio: np.ndarray | None = None,
           *, codec: str = "libx264", container_format: str | None = None, options: dict[str, str] | None = None,
           audio_rate: int = 22050) -> Path:
    """Encode ``(pts, rgb frame)`` pairs (pts in units of 1/rate) and optional mono audio to ``path``."""
    import av

    with av.open(str(path), "w", format=container_format, options=options or {}) as out:
        video = out.add_stream(codec, rate=rate) if frames or codec else None
        if video is not None:
            video.width, video.height = SIZE if not frames else (frames[0][1].shape[1], frames[0][1].shape[0])
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = 1 / rate
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=audio_rate, layout="mono")
        for pts, image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))  # type: ignore[union-attr]
        if video is not None:
            out.mux(video.encode())
        if sound is not None and audio is not None:
            step = 1024
            for start in range(0, len(audio), step):
                chunk = audio[start : start + step][None, :]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


class VideoFiles:
    """Generated files in ``root`` (made on first use, then reused)."""

    _session: VideoFiles | None = None

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_session(cls, factory: Any) -> VideoFiles:
        """One folder of videos for the whole test session (``factory``: pytest's ``tmp_path_factory``)."""
        if cls._session is None:
            cls._session = cls(factory.mktemp("videos"))
        return cls._session

    def _frames(self) -> list[tuple[int, np.ndarray]]:
        first, second = still(FIRST), still(SECOND)
        return [(i, first if i < 6 * FPS else second) for i in range(12 * FPS)]

    def halves(self) -> Path:
        """12 s at 4 fps, 320x240 H.264 + AAC speech: 6 s of the astronaut, then 6 s of the coffee cup."""
        path = self.root / "halves.mp4"
        if not path.exists():
            _write(path, self._frames(), Fraction(FPS), _speech(self.root, 22050))
        return path

    def silent(self) -> Path:
        """The same pictures without a sound track."""
        path = self.root / "silent.mp4"
        if not path.exists():
            _write(path, self._frames(), Fraction(FPS))
        return path

    def truncated(self) -> bytes:
        """The first half of halves.mp4 (its index, at the end of the file, is cut off)."""
        data = self.halves().read_bytes()
        return data[: len(data) // 2]

    def truncated_streamable(self) -> bytes:
        """The first 60% of a "faststart" MP4 (index first): the header promises 12 s, the frames stop early."""
        path = self.root / "faststart.mp4"
        if not path.exists():
            _write(path, self._frames(), Fraction(FPS), options={"movflags": "faststart"})
        data = path.read_bytes()
        return data[: len(data) * 3 // 5]

    @staticmethod
    def not_video() -> bytes:
        return b"this is plain text, not a video at all. " * 40

    def audio_only(self) -> Path:
        """An MP4 (M4A) holding only the speech track: no video stream."""
        path = self.root / "speech.m4a"
        if not path.exists():
            _write(path, [], Fraction(FPS), _speech(self.root, 22050), codec="", container_format="mp4")
        return path

    @staticmethod
    def zero_frames() -> bytes:
        """An AVI with a declared 320x240 MPEG-4 video stream and not one frame."""
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="avi") as out:
            stream = out.add_stream("mpeg4", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
            out.start_encoding()
        return buf.getvalue()

    def ten_hours(self) -> Path:
        """One frame shown for 10 hours: two frames, at 0 s and 36,000 s (declares a 10-hour duration)."""
        path = self.root / "ten-hours.mkv"
        if not path.exists():
            image = still(FIRST)
            _write(path, [(0, image), (36_000, image)], Fraction(1), codec="mpeg4")
        return path

    @staticmethod
    def portrait() -> bytes:
        """A 64x32 MP4 whose white left edge is the top once shown: its track matrix turns it 90 degrees
        clockwise, as phones store portrait video."""
        import av

        buf = io.BytesIO()
        image = np.zeros((32, 64, 3), np.uint8)
        image[:, :8] = 255
        with av.open(buf, "w", format="mp4") as out:
            stream = out.add_stream("mpeg4", rate=1)
            stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
            for pts in range(2):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = pts
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        data = bytearray(buf.getvalue())
        matrix = data.index(b"tkhd") + 44  # version 0 tkhd: the 3x3 matrix after 40 bytes of fields
        data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
        return bytes(data)

    @staticmethod
    def resolution_bomb(side: int = 16000) -> bytes:
        """A tiny AVI of raw video whose header declares side x side frames (each would be ~768 MB)."""
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="avi") as out:
            stream = out.add_stream("rawvideo", rate=1)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode())
        data = bytearray(buf.getvalue())
        avih = data.index(b"avih") + 8  # MainAVIHeader: ... dwWidth, dwHeight at bytes 32, 36
        data[avih + 32 : avih + 40] = struct.pack("<II", side, side)
        strf = data.index(b"strf") + 8  # BITMAPINFOHEADER: biSize, biWidth, biHeight
        data[strf + 4 : strf + 12] = struct.pack("<ii", side, side)
        return bytes(data)
