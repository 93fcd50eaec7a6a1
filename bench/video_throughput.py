"""Video embedding throughput: omniembed against a plain PyAV-plus-model loop (a benchmark, not a test).

What it measures, on the same generated videos (``--videos`` H.264 files of ``--seconds`` s, 640x360 at
25 fps, a moving picture so that every frame must really be decoded, written to a temporary folder),
the same model (EfficientNet-Lite0 with its real weights) and the same CPU threads, sampling 1 frame a
second into 6 s clips:

* ``omniembed``: ``Engine.embed_batch("efficientnet-lite0", videos=paths)``, ONNX Runtime and torch: the
  pipeline decodes and preprocesses the next batch of frames on its background thread while the caller's
  thread encodes the current one (decoding overlaps encoding);
* ``plain loop``: for each file, PyAV decodes every frame, keeps the one on screen at each sample time,
  converts it with Pillow and numpy (the model's resize, crop and scaling), then the same torch network
  embeds the video's frames in batches and the clip vectors are their means: decode, then encode.

Reported as seconds of video embedded per wall-clock second, with the smallest cosine between the two
sides' clip vectors as the accuracy check. Loading and the one-off ONNX export happen before timing;
each configuration gets one warm-up call; then the configurations take turns, ``--repeat`` rounds, and
each one's best run counts.

Run from the project root::

    .venv/bin/python bench/video_throughput.py                 # 4 videos of 60 s, best of 2
    .venv/bin/python bench/video_throughput.py --videos 2 --seconds 12 --repeat 1
    .venv/bin/python bench/video_throughput.py --json out.json  # also write the numbers (and peak RSS)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import omniembed

MODEL, FPS, CLIP_SEC, BATCH = "efficientnet-lite0", 1.0, 6.0, 32


def make_videos(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` H.264 videos: a photo panning across the frame, a different photo per video."""
    import av
    import skimage.data
    from PIL import Image

    names = ("astronaut", "coffee", "chelsea", "rocket")
    paths = []
    for i in range(n):
        picture = np.asarray(Image.fromarray(getattr(skimage.data, names[i % len(names)])()).convert("RGB")
                             .resize((960, 540)))
        path = folder / f"video{i}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            for k in range(round(seconds * 25)):
                x, y = (k * 3) % 320, (k * 2) % 180
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[y : y + 360, x : x + 640]),
                                                   format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], settings: omniembed.Settings) -> Callable[[], list[np.ndarray]]:
    """PyAV + Pillow + numpy + the torch network, one video after the other."""
    import av
    import torch
    from PIL import Image

    from omniembed.models import efficientnet
    from omniembed.weights import locate_weights

    spec = efficientnet.SPECS[0]
    net = efficientnet.classifier(locate_weights(spec, settings))

    def pixels(image: Image.Image) -> np.ndarray:  # shortest side to 256 (bicubic), centre 224, (x - 127) / 128
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - 224) // 2, (h - 224) // 2
        a = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32)
        return ((a - 127.0) / 128.0).transpose(2, 0, 1)

    def one(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.duration is not None and stream.time_base is not None
            duration = float(stream.duration * stream.time_base)
            times = list(np.arange(0.0, duration, 1 / FPS))
            chosen, shown, k = [], None, 0
            for frame in container.decode(stream):
                while k < len(times) and frame.time > times[k] + 1e-6:
                    chosen.append(pixels((shown or frame).to_image()))
                    k += 1
                shown = frame
            chosen += [pixels(shown.to_image())] * (len(times) - k)  # type: ignore[union-attr]
        x = np.stack(chosen)
        with torch.inference_mode():
            vectors = np.concatenate([net(torch.from_numpy(x[s : s + BATCH])).numpy() for s in range(0, len(x), BATCH)])
        per_clip = round(CLIP_SEC * FPS)
        return np.stack([vectors[s : s + per_clip].mean(axis=0) for s in range(0, len(vectors), per_clip)])

    return lambda: [one(p) for p in paths]


def ours_for(engine: omniembed.Engine, paths: list[Path]) -> Callable[[], list[Any]]:
    return lambda: engine.embed_batch(MODEL, videos=paths)


def best_times(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """The best time and the result of each run; the runs take turns (round robin), so a load that comes
    and goes on the machine falls on all of them alike."""
    out: dict[str, tuple[float, Any]] = {}
    for name, fn in runs.items():
        print(f"warming up: {name}", file=sys.stderr)
        out[name] = (float("inf"), fn())
    for _ in range(repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            result = fn()
            out[name] = (min(out[name][0], time.perf_counter() - t0), result)
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        print(f"making {args.videos} videos of {args.seconds:g} s", file=sys.stderr)
        paths = make_videos(Path(tmp), args.videos, args.seconds)
        video_seconds = args.videos * args.seconds
        settings = omniembed.Settings(cache_dir=Path(tmp) / "cache", precision="fp32", video_fps=FPS,
                                      video_clip_sec=CLIP_SEC, batch_size=BATCH)
        torch.set_num_threads(settings.threads())
        measured: list[dict[str, Any]] = []
        runs: dict[str, Callable[[], Any]] = {"plain": plain_loop(paths, settings)}
        for runtime in ("onnx", "torch"):
            runs[runtime] = ours_for(omniembed.Engine(settings.model_copy(update={"runtime": runtime})), paths)
        timed = best_times(runs, args.repeat)
        ref_time, ref_out = timed["plain"]
        print(f"| embedder | video s / s at {FPS:g} fps | min cosine vs plain loop |\n|---|---|---|")
        for runtime in ("onnx", "torch"):
            elapsed, ours = timed[runtime]
            cos = min(float(np.min(np.sum(unit(e.data) * unit(r), axis=1))) for e, r in zip(ours, ref_out, strict=True))
            print(f"| omniembed ({runtime}) | {video_seconds / elapsed:,.1f} | {cos:.5f} |")
            measured.append({"embedder": f"omniembed {runtime}", "video_s_per_s": video_seconds / elapsed,
                             "min_cos": cos})
        print(f"| plain PyAV + torch loop | {video_seconds / ref_time:,.1f} | - |")
        measured.append({"embedder": "plain loop", "video_s_per_s": video_seconds / ref_time})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.videos} H.264 videos of {args.seconds:g} s (640x360, 25 fps), {MODEL}, "
          f"{settings.threads()} threads. Peak RSS of this process (every embedder together): {peak_mb:.0f} MiB")
    if args.json is not None:
        args.json.write_text(json.dumps({"videos": args.videos, "seconds": args.seconds, "repeat": args.repeat,
                                         "rows": measured, "peak_rss_mb": peak_mb}, indent=2))


if __name__ == "__main__":
    main()
