"""Audio front ends: a waveform at the model's rate -> the model's input windows.

A ``Windower`` turns one stretch of audio (mono float32 at ``sample_rate``) into a ``WindowSet``: per
window, the arrays the network takes (stacked on a leading window axis) and the window's span in
samples. Mel front ends are parameterised by a model spec's options (``MelFrontEnd.from_options``), so a
model module only states numbers; the computation lives here, written once.

Two window rules are implemented:

- ``ge2e``: partial utterances of ``window_frames`` frames, ``rate`` partials per second, the last kept
  when it covers at least ``min_coverage`` of a window (the rule of resemblyzer's ``embed_utterance``);
- ``blocks``: blocks of ``window_frames`` frames every ``window_hop_frames``, an incomplete last block
  dropped unless it is the only one (the rule of aisfx's ``blocking``).

A front end may also shorten long silences before windowing (``vad_trim``, see ``trim_silences``): the
windows are then cut from the kept samples, and each window's span is mapped back to the samples of the
original stretch it came from, so segment times stay real times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ChunkFrontEnd", "MelFrontEnd", "Trim", "WindowSet", "Windower", "mel_filters", "mel_power", "trim_silences"
]

_INT16_MAX = 2**15 - 1


@dataclass(frozen=True)
class WindowSet:
    """Model input windows of one stretch of audio."""

    features: dict[str, np.ndarray]
    """Per input name, an array whose first axis is the window."""
    spans: list[tuple[int, int]]
    """Per window, its (start, end) in samples, relative to the stretch (end may pass its length)."""
    padded: bool
    """True when the stretch was shorter than one window and was padded."""


class Windower(Protocol):
    """What an audio preparer needs from a model's front end."""

    @property
    def sample_rate(self) -> int: ...

    def windows(self, wave: np.ndarray) -> WindowSet: ...

    def describe(self) -> str: ...


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mels = f / f_sp
    above = f >= min_log_hz
    mels[above] = min_log_mel + np.log(f[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    freqs = f_sp * m
    above = m >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (m[above] - min_log_mel))
    return freqs


def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm: str | float) -> np.ndarray:
    """Triangular mel filters ``(n_mels, 1 + n_fft // 2)``; ``norm`` "slaney" (area) or a p-norm per filter."""
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    edges = np.array([fmin, fmax], np.float64)
    mel_lo, mel_hi = _hz_to_mel(edges.copy(), htk)
    mel_f = _mel_to_hz(np.linspace(mel_lo, mel_hi, n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif isinstance(norm, (int, float)):
        size = np.sum(np.abs(weights) ** norm, axis=1, keepdims=True) ** (1.0 / norm)
        weights = weights / np.where(size > 0, size, 1.0)
    return weights


def mel_power(wave: np.ndarray, n_fft: int, hop: int, filters: np.ndarray) -> np.ndarray:
    """Mel power spectrogram ``(frames, n_mels)``: centred frames (zero padding), periodic Hann window."""
    padded = np.pad(wave.astype(np.float32), n_fft // 2)
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, n_fft), strides=(padded.strides[0] * hop, padded.strides[0]), writeable=False
    )
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    out = np.empty((n_frames, filters.shape[0]), np.float32)
    step = max(1, (1 << 22) // n_fft)  # frames per chunk: bounded memory for hour-long clips
    for i in range(0, n_frames, step):
        power = np.abs(np.fft.rfft(frames[i : i + step] * window, axis=1)) ** 2
        out[i : i + step] = power @ filters.T
    return out


VAD_FRAME_MS = 30
"""Voice-activity decisions are made on 30 ms frames (webrtcvad accepts 10, 20 or 30)."""
VAD_MODE = 3
"""webrtcvad's most aggressive mode (the least likely to call non-speech speech)."""
VAD_SMOOTH_FRAMES = 8
"""A frame counts as voiced when most of the 8 frames centred on it are (a moving majority vote)."""
VAD_MAX_SILENCE_FRAMES = 6
"""Each voiced stretch keeps 3 frames (90 ms) of context on either side: a pause is cut to at most 180 ms."""


@dataclass(frozen=True)
class Trim:
    """Which 30 ms frames of a stretch are kept when long silences are shortened (``trim_silences``)."""

    frame: int
    """Samples per frame."""
    frames: np.ndarray
    """Indices of the kept frames, ascending."""
    n_samples: int
    """Length of the original stretch."""

    def apply(self, wave: np.ndarray) -> np.ndarray:
        """The kept samples of ``wave``, in order."""
        whole = wave[: (len(wave) // self.frame) * self.frame].reshape(-1, self.frame)
        return np.ascontiguousarray(whole[self.frames].reshape(-1))

    def position(self, kept: int) -> int:
        """The original position of kept sample number ``kept`` (``0 <= kept < len(frames) * frame``)."""
        return int(self.frames[kept // self.frame]) * self.frame + kept % self.frame

    def real_spans(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Window spans over the kept samples -> spans over the original stretch.

        A window starts at the original position of its first kept sample and ends after its last; a window
        that reaches the end of the kept samples ends at the end of the stretch (plus any padding past it,
        as untrimmed windows do)."""
        n_kept = len(self.frames) * self.frame
        out = []
        for start, end in spans:
            real_end = self.position(end - 1) + 1 if end < n_kept else self.n_samples + end - n_kept
            out.append((self.position(min(start, n_kept - 1)), real_end))
        return out


def trim_silences(wave: np.ndarray, sample_rate: int) -> Trim | None:
    """The frames of ``wave`` kept when long silences are shortened; None when nothing is voiced.

    The behaviour of resemblyzer's ``preprocess_wav`` trimming, as its documentation and hyperparameters
    describe it: the audio is cut into 30 ms frames (a last partial frame is dropped) and webrtcvad (mode 3)
    labels each frame on 16-bit PCM; the labels are smoothed by a majority vote over 8 centred frames; each
    voiced frame then keeps its 3 neighbours on either side. Everything else is removed, so a pause longer
    than 180 ms is shortened to 180 ms and leading/trailing silence to 90 ms.
    """
    import webrtcvad

    frame = sample_rate * VAD_FRAME_MS // 1000
    n_frames = len(wave) // frame
    if n_frames == 0:
        return None
    vad = webrtcvad.Vad(VAD_MODE)
    flags = np.zeros(n_frames, bool)
    chunk = 1 << 16  # frames converted to PCM at a time: bounded memory for hour-long clips
    for first in range(0, n_frames, chunk):
        part = wave[first * frame : min(first + chunk, n_frames) * frame].astype(np.float64) * _INT16_MAX
        data = np.clip(np.round(part), -(2**15), _INT16_MAX).astype("<i2").tobytes()
        step = 2 * frame
        for i in range(len(data) // step):
            flags[first + i] = vad.is_speech(data[i * step : (i + 1) * step], sample_rate)
    width = VAD_SMOOTH_FRAMES
    padded = np.concatenate([np.zeros((width - 1) // 2), flags, np.zeros(width // 2)])
    votes = np.convolve(padded, np.ones(width), mode="valid")  # voiced frames among the `width` around each
    voiced = 2 * votes > width  # a strict majority
    reach = VAD_MAX_SILENCE_FRAMES // 2
    keep = np.convolve(voiced.astype(np.float64), np.ones(2 * reach + 1), mode="same") > 0.5
    if not keep.any():
        return None
    return Trim(frame, np.flatnonzero(keep), len(wave))


@dataclass(frozen=True)
class MelFrontEnd:
    """A mel-spectrogram front end with a window rule, built from a spec's options."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    window_frames: int
    rule: str = "blocks"
    """``ge2e`` or ``blocks`` (see the module docstring)."""
    window_hop_frames: int = 0
    """``blocks``: frames between block starts."""
    rate: float = 1.3
    """``ge2e``: partial windows per second."""
    min_coverage: float = 0.75
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    mel_norm: str | float = "slaney"
    gain: str = "none"
    """``none``; ``peak`` (divide by the peak); ``dbfs:<target>`` (raise quieter audio to target dBFS)."""
    compression: str = "none"
    """``none`` or ``log10_1e4`` (log10(1 + 10000 x))."""
    scale: float = 1.0
    """Multiplies the compressed spectrogram (e.g. a fixed min-max normalisation)."""
    vad_trim: bool = False
    """Shorten long silences (``trim_silences``) after the gain and before windowing; audio in which
    nothing is voiced is kept whole."""
    input_name: str = "windows"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MelFrontEnd:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in options.items() if k in names})

    def describe(self) -> str:
        win = self.window_frames * self.hop / self.sample_rate
        if self.rule == "ge2e":
            every = f"{self.rate:g}/s, last kept at >= {self.min_coverage:g} coverage"
        else:
            every = f"every {self.window_hop_frames * self.hop / self.sample_rate:.3g} s"
        trim = "; long silences trimmed (webrtcvad mode 3, 30 ms frames, pauses cut to 180 ms)" if self.vad_trim else ""
        return (
            f"{self.sample_rate} Hz mono; gain={self.gain}{trim}; mel {self.n_mels} bands (n_fft={self.n_fft}, "
            f"hop={self.hop}, {'htk' if self.htk else 'slaney'} scale, norm={self.mel_norm}, power); "
            f"compression={self.compression}; windows {win:.3g} s {every}"
        )

    def _filters(self) -> np.ndarray:
        cached: np.ndarray | None = self.__dict__.get("_fb")
        if cached is None:
            fmax = self.fmax if self.fmax is not None else self.sample_rate / 2
            cached = mel_filters(self.sample_rate, self.n_fft, self.n_mels, self.fmin, fmax, self.htk, self.mel_norm)
            object.__setattr__(self, "_fb", cached)
        return cached

    def _gain(self, wave: np.ndarray) -> np.ndarray:
        if self.gain == "peak":
            peak = float(np.max(np.abs(wave))) if wave.size else 0.0
            return wave / peak if peak > 0 else wave
        if self.gain.startswith("dbfs:"):
            target = float(self.gain.split(":", 1)[1])
            rms = float(np.sqrt(np.mean((wave.astype(np.float64) * _INT16_MAX) ** 2))) if wave.size else 0.0
            if rms <= 0:
                return wave
            change = target - 20.0 * math.log10(rms / _INT16_MAX)
            return wave * np.float32(10.0 ** (change / 20.0)) if change > 0 else wave
        return wave

    def spectrogram(self, wave: np.ndarray) -> np.ndarray:
        spec = mel_power(wave, self.n_fft, self.hop, self._filters())
        if self.compression == "log10_1e4":
            spec = np.log10(spec * 10000.0 + 1.0)
        return (spec * self.scale).astype(np.float32) if self.scale != 1.0 else spec

    def windows(self, wave: np.ndarray) -> WindowSet:
        wave = self._gain(wave.astype(np.float32))
        trim = trim_silences(wave, self.sample_rate) if self.vad_trim else None
        if trim is None:
            return self._windows(wave)
        found = self._windows(trim.apply(wave))
        return WindowSet(found.features, trim.real_spans(found.spans), found.padded)

    def _windows(self, wave: np.ndarray) -> WindowSet:
        if self.rule == "ge2e":
            starts, padded = self._ge2e_starts(len(wave))
            stop = (starts[-1] + self.window_frames) * self.hop
            spec = self.spectrogram(np.pad(wave, (0, max(0, stop - len(wave)))))
        else:
            spec = self.spectrogram(wave)
            starts, padded = self._block_starts(spec.shape[0])
            spec = np.concatenate([spec, np.zeros((self.window_frames, spec.shape[1]), np.float32)])
        stacked = np.stack([spec[s : s + self.window_frames] for s in starts])
        spans = [(s * self.hop, (s + self.window_frames) * self.hop) for s in starts]
        return WindowSet({self.input_name: stacked}, spans, padded)

    def _ge2e_starts(self, n_samples: int) -> tuple[list[int], bool]:
        n_frames = math.ceil((n_samples + 1) / self.hop)
        step = round((self.sample_rate / self.rate) / self.hop)
        starts = list(range(0, max(1, n_frames - self.window_frames + step + 1), step))
        window = self.window_frames * self.hop
        if len(starts) > 1 and (n_samples - starts[-1] * self.hop) / window < self.min_coverage:
            starts.pop()
        return starts, n_samples < window

    def _block_starts(self, n_frames: int) -> tuple[list[int], bool]:
        size, hop = self.window_frames, self.window_hop_frames
        count = math.ceil((n_frames - size) / hop + 1)
        if (n_frames - size) % hop != 0:
            count -= 1
        return [i * hop for i in range(max(1, count))], n_frames < size


Featurize = Callable[[list[np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ChunkFrontEnd:
    """Fixed-length chunks handed to an external feature extractor (e.g. CLAP's), one window per chunk."""

    sample_rate: int
    window_samples: int
    featurize: Featurize
    """Chunks (each at most ``window_samples`` long) -> arrays with one row per chunk."""
    name: str = "feature extractor"

    def describe(self) -> str:
        return f"{self.sample_rate} Hz mono; {self.name}; windows {self.window_samples / self.sample_rate:g} s"

    def windows(self, wave: np.ndarray) -> WindowSet:
        n = max(1, math.ceil(len(wave) / self.window_samples))
        chunks = [wave[i * self.window_samples : (i + 1) * self.window_samples] for i in range(n)]
        spans = [(i * self.window_samples, (i + 1) * self.window_samples) for i in range(n)]
        return WindowSet(self.featurize(chunks), spans, len(wave) < self.window_samples)
