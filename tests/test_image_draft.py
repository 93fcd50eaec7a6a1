"""Reduced-scale JPEG decoding: a photo far larger than a model's resize target is decoded at 1/2, 1/4 or 1/8
scale by the JPEG decoder itself, and the vectors stay those of a full decode (cosine >= 0.9999)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import omniembed
from conftest import cosines
from omniembed.inputs import image
from omniembed.inputs.image import DRAFT_MARGIN, ImagePreprocess, load_image


def tiled_photo(width: int, height: int) -> bytes:
    """A large JPEG with a real photo's detail: scikit-image's photos tiled at their native resolution."""
    import skimage.data

    tiles = [np.ascontiguousarray(getattr(skimage.data, name)()[:300, :400, :3])
             for name in ("astronaut", "chelsea", "coffee", "rocket")]
    rows = [np.concatenate([tiles[(r + c) % 4][:, :: 1 if (r + c) % 2 else -1] for c in range(width // 400 + 1)], 1)
            for r in range(height // 300 + 1)]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, 0)[:height, :width]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def large() -> bytes:
    return tiled_photo(6144, 4096)


def test_a_large_jpeg_decodes_fewer_pixels_but_never_below_the_margin(large: bytes) -> None:
    preprocess = ImagePreprocess(resize_size=256, crop_size=224)  # efficientnet-lite0's sizes
    settings = omniembed.Settings()
    full = load_image(large, settings)
    drafted = load_image(large, settings, min_size=preprocess.resized_size)
    assert full.image.size == (6144, 4096) and drafted.original_size == (6144, 4096)
    assert drafted.image.size == (3072, 2048)  # 1/2 scale: a quarter of the pixels decoded
    need = preprocess.resized_size(6144, 4096)
    assert min(a / b for a, b in zip(drafted.image.size, need, strict=True)) >= DRAFT_MARGIN
    # A photo that is not that much larger than the target decodes at full size, as before.
    small = tiled_photo(1600, 1200)
    assert load_image(small, settings, min_size=preprocess.resized_size).image.size == (1600, 1200)
    # Other formats are never drafted.
    png = io.BytesIO()
    Image.open(io.BytesIO(large)).save(png, format="PNG")
    assert load_image(png.getvalue(), settings, min_size=preprocess.resized_size).image.size == (6144, 4096)


def test_draft_decoding_keeps_the_vectors(large: bytes, engine: omniembed.Engine,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    photos = [large, tiled_photo(4096, 6144)]  # landscape and portrait
    drafted = engine.embed_batch("efficientnet-lite0", images=photos, runtime="onnx")
    assert all("decoded at" in r.meta.input.description for r in drafted), drafted[0].meta.input
    assert drafted[0].meta.input.length == 6144 * 4096  # the photo's own size, not the decoded one
    monkeypatch.setattr(image, "DRAFT_MARGIN", 1 << 30)  # as before: every JPEG at full size
    full = engine.embed_batch("efficientnet-lite0", images=photos, runtime="onnx")
    assert all("decoded at" not in r.meta.input.description for r in full)
    cos = cosines(np.stack([r.data for r in drafted]), np.stack([r.data for r in full]))
    assert cos.min() >= 0.9999, cos
