"""Test data for images: real photos from scikit-image, bad files made on the spot, and tiny random
CLIP / DINOv2 models saved with ``save_pretrained`` (with their image processor and tokenizer) so they
load through the same code path as a user's real weights."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")

# ImageNet-1k class indices (standard order) used to check the EfficientNet-Lite0 head.
IMAGENET_CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
IMAGENET_COFFEE = {967: "espresso", 968: "cup", 504: "coffee mug"}
IMAGENET_ROCKET = {657: "missile", 744: "projectile", 812: "space shuttle"}
IMAGENET_MOTORBIKE = {665: "moped", 670: "motor scooter"}


def photo(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped by scikit-image (``motorcycle``: the left view of its stereo pair)."""
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return image[..., :3] if image.ndim == 3 else np.stack([image] * 3, axis=-1)


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 30000) -> bytes:
    """A ~100-byte PNG whose header declares side x side pixels (never decoded: the header is the bomb)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    data = png_bytes(photo("coffee")[:64, :64])
    return data[: len(data) // 2]


# -- tiny models ----------------------------------------------------------------------------------
def _byte_chars() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table (256 characters)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def save_tiny_clip_tokenizer(folder: Path) -> int:
    """A real CLIP BPE tokenizer with a tiny vocabulary (bytes + a few merges); returns the vocab size."""
    from transformers import CLIPTokenizer

    base = _byte_chars()
    tokens = base + [c + "</w>" for c in base]
    merges = [("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]
    tokens += [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(folder)
    return len(vocab)


def save_tiny_clip(folder: Path) -> Path:
    """A randomly initialised CLIP (ViT-B/32 shape, tiny widths) + CLIP image processor + tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    vocab_size = save_tiny_clip_tokenizer(folder)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 77, "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 224, "patch_size": 32,
        },
        projection_dim=24,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def save_tiny_dinov2(folder: Path) -> Path:
    """A randomly initialised DINOv2 (patch 14, trained-size 518 grid, tiny width) + its image processor."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=518, patch_size=14
    )
    Dinov2Model(config).eval().save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
        resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder
