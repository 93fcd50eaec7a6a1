"""Audio embedding throughput: omniembed against each model's own package (a benchmark, not a test).

What it measures, per model, on the same generated clips (espeak-ng speech plus tones and noise, each
``--seconds`` long, written to a temporary folder) and the same CPU thread count:

* ``speaker-ge2e``: ``Engine.embed_batch("speaker-ge2e", audios=paths)`` (ONNX Runtime and torch) against
  resemblyzer's documented use, ``VoiceEncoder.embed_utterance(preprocess_wav(path))`` (load, resample to
  16 kHz, normalise the volume, trim long silences with webrtcvad), which is what omniembed's ge2e front end
  does too; an earlier version of this benchmark left ``preprocess_wav``'s silence trimming out of the
  reference and so reported a minimum cosine of 0.66 for the same vectors;
* ``sfx-cnn``: ``Engine.embed_batch("sfx-cnn", audios=paths)`` against aisfx's librosa spectrogram,
  ``spectrogram_normalize`` and ``model_get_embedding`` (its network, its checkpoint);

reported as seconds of audio embedded per wall-clock second (decode and resampling included on both
sides), with the smallest cosine between omniembed's pooled vector and the package's whole-clip vector
(ge2e) or between per-block vectors (sfx) as an accuracy check. Loading and the one-off ONNX export
happen before timing; each configuration gets one warm-up call; the best of ``--repeat`` runs counts.
CLAP is not benchmarked here: its real weights cannot be fetched offline.

Run from the project root::

    .venv/bin/python bench/audio_throughput.py               # 8 clips of 10 s, best of 3
    .venv/bin/python bench/audio_throughput.py --clips 4 --seconds 5 --repeat 1
    .venv/bin/python bench/audio_throughput.py --json out.json   # also write the numbers (and peak RSS) as JSON
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

import omniembed

SENTENCE = "Audio embeddings turn sound into vectors, one segment at a time, from any start offset. "


def make_clips(folder: Path, n: int, seconds: float) -> list[Path]:
    rate, rng, paths = 22050, np.random.default_rng(0), []
    for i in range(n):
        path = folder / f"clip{i}.wav"
        if i % 2 == 0:
            voice = ["-v", "en-us+m3"] if i % 4 == 0 else ["-v", "en-gb+f4", "-p", "80"]
            subprocess.run(["espeak-ng", *voice, "-w", str(path), SENTENCE * 4], check=True, capture_output=True)
            wave, rate_in = sf.read(path, dtype="float32")
            sf.write(path, np.resize(wave, round(seconds * rate_in)), rate_in)
        else:
            t = np.arange(round(seconds * rate)) / rate
            wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(path, wave.astype(np.float32), rate)
        paths.append(path)
    return paths


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def ge2e_reference(paths: list[Path]) -> Callable[[], list[np.ndarray]]:
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def run() -> list[np.ndarray]:
        return [encoder.embed_utterance(preprocess_wav(p)) for p in paths]

    return run


def sfx_reference(paths: list[Path]) -> Callable[[], list[np.ndarray]]:
    import torch
    from aisfx import inference
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram
    from numpy._core.multiarray import scalar

    allowed: list[Any] = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Int64DType]
    with torch.serialization.safe_globals(allowed):
        weights, datasets = torch.load(inference.get_path_modelWeights(), map_location="cpu", weights_only=True)
    model = inference.load_bestModel(weights, datasets, "cpu")
    args = (inference.SAMPLE_RATE, inference.SPEC_BLOCK_LENGTH, inference.SPEC_HOP_LENGTH, inference.MEL_BINS,
            inference.F_MIN, inference.F_MAX)

    def run() -> list[np.ndarray]:
        return [
            inference.model_get_embedding(
                spectrogram_normalize(compute_spectrogram(str(p), *args).T), 0.5, True, model, "cpu"
            ).numpy()
            for p in paths
        ]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), args.clips, args.seconds)
        audio_seconds = args.clips * args.seconds
        items = [str(p) for p in paths]
        measured: list[dict[str, Any]] = []
        settings = omniembed.Settings(cache_dir=Path(tmp) / "cache")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cpu_class import cpu_class_line

        print(f"{cpu_class_line()}\n")
        print("| model | embedder | audio s / s | min cosine vs package |\n|---|---|---|---|")
        for model, reference in (("speaker-ge2e", ge2e_reference), ("sfx-cnn", sfx_reference)):
            print(f"{model}: loading", file=sys.stderr)
            ref_time, ref_out = best_time(reference(paths), args.repeat)
            for runtime in ("onnx", "torch"):
                engine = omniembed.Engine(settings.model_copy(update={"runtime": runtime}))
                elapsed, ours = best_time(lambda e=engine, m=model: e.embed_batch(m, audios=items), args.repeat)
                pairs = list(zip(ours, ref_out, strict=True))
                if model == "speaker-ge2e":
                    cos = min(float(e.vector @ r) for e, r in pairs)
                else:
                    cos = min(float(np.min(np.sum(unit(e.data) * unit(r), axis=1))) for e, r in pairs)
                print(f"| {model} | omniembed ({runtime}) | {audio_seconds / elapsed:,.0f} | {cos:.5f} |")
                measured.append({"model": model, "embedder": f"omniembed {runtime}",
                                 "audio_s_per_s": audio_seconds / elapsed, "min_cos": cos})
            print(f"| {model} | package's own | {audio_seconds / ref_time:,.0f} | - |")
            measured.append({"model": model, "embedder": "package", "audio_s_per_s": audio_seconds / ref_time})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nPeak RSS of this process (every embedder together): {peak_mb:.0f} MiB")
    if args.json is not None:
        args.json.write_text(json.dumps({"clips": args.clips, "seconds": args.seconds, "repeat": args.repeat,
                                         "rows": measured, "peak_rss_mb": peak_mb}, indent=2))


if __name__ == "__main__":
    main()
