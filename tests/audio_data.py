"""Test audio made on the spot: espeak-ng speech in two voices, numpy tones and noise, broken files.

Everything is written once per test session into a pytest temporary folder (``AudioFiles``), so the
tests need no stored audio and no network. Speech needs the ``espeak-ng`` program (apt package
``espeak-ng``; ``make test`` installs it when missing).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["AudioFiles", "SENTENCES", "VOICES", "have_espeak", "noise", "tone"]

# Two clearly different voices: a low US-English male voice and a high, female UK-English voice.
VOICES = {"a": ["-v", "en-us+m3", "-p", "20"], "b": ["-v", "en-gb+f4", "-p", "90"]}
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def tone(seconds: float, rate: int = 22050, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, rate: int = 22050, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).uniform(-1, 1, round(seconds * rate))).astype(np.float32)


def wav_header(rate: int, channels: int, bits: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header declaring ``data_bytes`` of sample data."""
    block = channels * bits // 8
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data" + struct.pack("<I", data_bytes)
    )


class AudioFiles:
    """Generated files in ``root`` (made on first use, then reused)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / name

    def speech(self, voice: str, sentence: int) -> Path:
        """espeak-ng speech (22.05 kHz mono WAV) of ``SENTENCES[sentence]`` in ``VOICES[voice]``."""
        path = self._path(f"speech-{voice}{sentence}.wav")
        if not path.exists():
            cmd = ["espeak-ng", *VOICES[voice], "-w", str(path), SENTENCES[sentence]]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return path

    def write(self, name: str, samples: np.ndarray, rate: int, **kwargs: object) -> Path:
        path = self._path(name)
        if not path.exists():
            sf.write(path, samples, rate, **kwargs)  # type: ignore[arg-type]
        return path

    def halves(self) -> Path:
        """30 s at 16 kHz: 15 s of a 300 Hz tone, then 15 s of noise (the halves clearly differ)."""
        rate = 16000
        return self.write("halves.wav", np.concatenate([tone(15, rate, 300), noise(15, rate)]), rate)

    def three_hours(self) -> Path:
        """A real 3-hour WAV kept small: 8-bit samples at 100 Hz (about 1 MB)."""
        path = self._path("three-hours.wav")
        if not path.exists():
            n = 3 * 3600 * 100
            path.write_bytes(wav_header(100, 1, 8, n) + bytes([128]) * n)
        return path

    def header_only(self) -> Path:
        path = self._path("header-only.wav")
        path.write_bytes(wav_header(16000, 1, 16, 0))
        return path

    def zero_bytes(self) -> Path:
        path = self._path("empty.wav")
        path.write_bytes(b"")
        return path

    def text_as_mp3(self) -> Path:
        path = self._path("notes.mp3")
        path.write_text("these are meeting notes, not audio\n" * 20, encoding="utf-8")
        return path
