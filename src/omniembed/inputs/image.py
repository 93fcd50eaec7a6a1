"""Image inputs: one loader for every entry point, and the preparer that applies a model's preprocessing.

``load_image`` accepts a file path, an ``http(s)`` URL (through the guarded fetcher), raw bytes, a
binary file object, a base64 string or ``data:image/...;base64,`` URL, a PIL image, or a numpy array
(HWC or HW, uint8, or float in [0, 1]). It returns an 8-bit RGB PIL image: EXIF orientation applied,
palette / RGBA / LA / CMYK / 16-bit / grayscale converted (transparency composited on white),
animations reduced to their first frame.

Safety: the encoded size is capped (``max_image_bytes``); the pixel count is read from the header and
checked (``max_image_pixels``) before any pixel is decoded, so a decompression bomb is an
``input_too_large`` error, never an allocation; truncated or non-image data is ``input_unreadable``.

``ImagePreprocess`` is a model's preprocessing contract, declared in its spec's ``options``
(resize mode and size, interpolation, centre crop, mean/std, channel order); ``ImagePreparer`` applies
it once for every image model, so model modules never touch pixels.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.contract import Prepared
from omniembed.embedding import InputInfo
from omniembed.errors import InputTooLarge, InputUnreadable, OmniEmbedError, ParameterInvalid
from omniembed.inputs.encoded import B64, decode_base64, decoder_reason, split_data_url
from omniembed.inputs.fetch import FetchPolicy, fetch, is_url
from omniembed.settings import Settings

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["IMAGE_SUFFIXES", "ImagePreparer", "ImagePreprocess", "LoadedImage", "load_image"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".gif", ".bmp", ".webp", ".avif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
    | {".ico"}
)
_MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class LoadedImage:
    image: PILImage.Image
    """8-bit RGB."""
    description: str
    original_size: tuple[int, int]
    """(width, height) as stored in the file, before EXIF rotation."""


# -- raw input -> bytes or an in-memory image ----------------------------------------------------
def _check_bytes(data: bytes, where: str, settings: Settings) -> bytes:
    if not data:
        raise InputUnreadable(f"{where} is empty (0 bytes); expected an encoded image (PNG, JPEG ...)")
    if len(data) > settings.max_image_bytes:
        raise InputTooLarge(
            f"{where} is {len(data):,} bytes; the limit is {settings.max_image_bytes:,} bytes "
            "(OMNIEMBED_MAX_IMAGE_BYTES)"
        )
    return data


def _decode_base64(text: str, where: str, settings: Settings) -> bytes:
    data = decode_base64(text, where, settings.max_image_bytes, "OMNIEMBED_MAX_IMAGE_BYTES")
    return _check_bytes(data, where, settings)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system: not a file
        return False


def _read_path(path: Path, settings: Settings) -> bytes:
    where = f"file {path}"
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputUnreadable(f"{path} is not a file")
    except OSError as exc:
        raise InputUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > settings.max_image_bytes:
        raise InputTooLarge(
            f"{where} is {size:,} bytes; the limit is {settings.max_image_bytes:,} bytes (OMNIEMBED_MAX_IMAGE_BYTES)"
        )
    try:
        return _check_bytes(path.read_bytes(), where, settings)
    except OSError as exc:
        raise InputUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None


def _looks_like_path(text: str) -> bool:
    """A path, not base64: base64 has no dots, and of image data only JPEG's ("/9j/") starts with a slash."""
    rooted = text.startswith(("/", "./", "../", "~", "\\")) and not text.startswith("/9j/")
    return rooted or bool(re.search(r"\.[A-Za-z]{2,5}$", text))


def _string_source(text: str, settings: Settings, allow_paths: bool) -> tuple[bytes, str]:
    stripped = text.strip()
    if not stripped:
        raise ParameterInvalid("the image is an empty string; expected a path, URL or base64 data", param="image")
    if is_url(stripped):
        fetched = fetch(stripped, FetchPolicy.from_settings(settings))
        return _check_bytes(fetched.content, f"the image at {stripped}", settings), stripped[:200]
    inline = split_data_url(stripped)
    if inline is not None:
        kind, payload = inline
        if not kind.lower().startswith("image/") and kind != "data":
            raise InputUnreadable(f"the data URL holds {kind}, not an image")
        return _decode_base64(payload, "the data URL", settings), f"data URL ({kind})"
    short = len(stripped) <= _MAX_PATH_CHARS
    if short and _looks_like_path(stripped):
        if not allow_paths:
            raise ParameterInvalid(
                "local file paths are not accepted here; send the image as base64 data or an http(s) URL",
                param="image",
            )
        path = Path(stripped).expanduser()
        if not _is_file(path):
            raise InputUnreadable(f"{stripped[:200]!r} is not an existing file, an http(s) URL or base64 image data")
        return _read_path(path, settings), path.name
    if short and allow_paths and _is_file(Path(stripped)):  # a relative path without a suffix
        return _read_path(Path(stripped), settings), stripped
    if not B64.match(stripped):
        where = "an existing file, " if allow_paths else ""
        raise InputUnreadable(f"{stripped[:200]!r} is not {where}an http(s) URL or base64 image data")
    return _decode_base64(stripped, "the base64 image", settings), "base64 image"


def _source(item: Any, settings: Settings, allow_paths: bool) -> tuple[bytes | PILImage.Image, str]:
    from PIL import Image

    if isinstance(item, Image.Image):
        return item, f"PIL image {item.width}x{item.height}"
    if isinstance(item, np.ndarray):
        return _from_array(item), f"array {'x'.join(map(str, item.shape))}"
    if isinstance(item, str):
        return _string_source(item, settings, allow_paths)
    if isinstance(item, Path):
        if not allow_paths:
            raise ParameterInvalid("local file paths are not accepted here", param="image")
        return _read_path(item.expanduser(), settings), item.name
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _check_bytes(bytes(item), "the image bytes", settings), f"{len(item):,} bytes"
    if hasattr(item, "read"):
        try:
            data = item.read(settings.max_image_bytes + 1)
        except (OSError, ValueError) as exc:
            raise InputUnreadable(f"cannot read the file object: {exc}") from None
        if isinstance(data, str):
            raise ParameterInvalid("the file object is open in text mode; open it with 'rb'", param="image")
        name = Path(str(getattr(item, "name", "file object"))).name
        return _check_bytes(bytes(data), f"file object {name}", settings), name
    if item is None:
        raise ParameterInvalid("the image is None; expected a path, URL, bytes, base64, PIL image or array")
    raise ParameterInvalid(
        f"cannot read an image from a {type(item).__name__}; pass a path, an http(s) URL, bytes, a file "
        "object, a base64 string, a PIL image or a numpy array",
        param="image",
    )


# -- pixels -----------------------------------------------------------------------------------
def _from_array(array: np.ndarray) -> PILImage.Image:
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ParameterInvalid(
            f"an image array must be HxW or HxWxC with C in 1, 3, 4 (channels last), not shape {a.shape}",
            param="image",
        )
    if a.dtype == np.uint8:
        data = a
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise InputUnreadable("the image array holds NaN or infinite values; pixels must be finite numbers",
                                  param="image")
        scale = 255.0 if np.issubdtype(a.dtype, np.floating) and f.max(initial=0) <= 1.0 else 1.0
        if a.dtype == np.uint16:
            scale = 255.0 / 65535.0
        data = np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)
    else:
        raise ParameterInvalid(f"unsupported image array dtype {a.dtype}", param="image")
    return Image.fromarray(np.ascontiguousarray(data), "RGBA" if data.ndim == 3 and data.shape[2] == 4 else None)


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    """8-bit RGB; transparency is composited on white; 16/32-bit and float modes are rescaled."""
    from PIL import Image

    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():  # a 32-bit float TIFF can hold them
            raise InputUnreadable("the image holds NaN or infinite pixel values; pixels must be finite numbers",
                                  param="image")
        top = 1.0 if img.mode == "F" and a.max(initial=0) <= 1.0 else (255.0 if a.max(initial=0) <= 255 else 65535.0)
        img = Image.fromarray(np.clip(np.rint(a * 255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _check_pixels(size: tuple[int, int], settings: Settings) -> tuple[int, int]:
    if size[0] * size[1] > settings.max_image_pixels:
        raise InputTooLarge(
            f"the image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; the limit is "
            f"{settings.max_image_pixels:,} pixels (OMNIEMBED_MAX_IMAGE_PIXELS). Downscale it first."
        )
    return size


DRAFT_MARGIN = 8
"""A JPEG is decoded at reduced scale only while it stays this many times its resize target. Measured with
efficientnet-lite0 (2026-12-07, scikit-image photos, JPEG q90): decoding at just the target size moved the
vectors to cosine 0.990-0.9996 of a full decode, at 2x 0.9990-0.99996, at 4x 0.99968-0.99994, at 8x >= 0.99992
(the DCT's scaling is not the bicubic filter), so only photos 16x the target and more decode at 1/2 or less."""


def _decode(
    data: bytes, settings: Settings, min_size: Callable[[int, int], tuple[int, int]] | None = None
) -> tuple[PILImage.Image, tuple[int, int]]:
    """Decode ``data`` (first frame, EXIF orientation applied). ``min_size(width, height)``: the size the caller
    will resize the image to; a JPEG is then decoded at 1/2, 1/4 or 1/8 scale (in the decoder's DCT,
    ``Image.draft``) as long as the result stays ``DRAFT_MARGIN`` times that large. Other formats decode at full
    size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img: PILImage.Image = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as exc:
            raise InputTooLarge(f"the image is a decompression bomb ({exc}); the limit is "
                                f"{settings.max_image_pixels:,} pixels (OMNIEMBED_MAX_IMAGE_PIXELS)") from None
        except UnidentifiedImageError:
            raise InputUnreadable(
                f"the data ({len(data):,} bytes, starting {data[:8]!r}) is not an image format Pillow can read"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputUnreadable(f"the image header cannot be read: {exc}") from None
        width, height = _check_pixels(img.size, settings)
        if width < 1 or height < 1:
            raise InputUnreadable(f"the image has no pixels ({width}x{height})")
        try:
            img.seek(0)  # animations: the first frame
            if min_size is not None and img.format == "JPEG":
                need = [DRAFT_MARGIN * n for n in min_size(width, height)]  # stored orientation: targets are symmetric
                if need[0] * 2 <= width and need[1] * 2 <= height:
                    img.draft("RGB", (need[0], need[1]))
            img.load()
            img = ImageOps.exif_transpose(img) or img
        except Image.DecompressionBombError as exc:
            raise InputTooLarge(f"the image is a decompression bomb: {exc}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InputUnreadable(f"the image data is truncated or corrupt: {exc}") from None
    return img, (width, height)


def load_image(
    item: Any, settings: Settings, *, allow_paths: bool = True,
    min_size: Callable[[int, int], tuple[int, int]] | None = None,
) -> LoadedImage:
    """Any supported image input -> an 8-bit RGB PIL image, under the settings' limits. ``min_size``: see
    ``_decode`` (the image may then be smaller than ``original_size``, never smaller than asked)."""
    source, description = _source(item, settings, allow_paths)
    if isinstance(source, bytes):
        img, size = _decode(source, settings, min_size)
    else:
        size = _check_pixels(source.size, settings)
        img = source
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
    return LoadedImage(_to_rgb(img), description, size)


# -- preprocessing -------------------------------------------------------------------------------
_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}
_RESIZE_MODES = ("shortest_edge", "squash", "none")


@dataclass(frozen=True)
class ImagePreprocess:
    """A model's image preprocessing contract (read from its spec's options, ``image_*`` keys).

    ``resize``: ``shortest_edge`` (the shorter side to ``resize_size``, aspect kept, long side
    truncated as Hugging Face processors do), ``squash`` (both sides to ``resize_size``), or ``none``;
    then a centre crop to ``crop_size`` (None: no crop); then ``x * rescale``, ``(x - mean) / std``
    per channel, in ``channel_order``, channels first.
    """

    resize: str = "shortest_edge"
    resize_size: int = 224
    interpolation: str = "bicubic"
    crop_size: int | None = 224
    rescale: float = 1 / 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.resize not in _RESIZE_MODES or self.interpolation not in _RESAMPLE:
            raise ValueError(f"bad image preprocessing contract: {self}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")

    @classmethod
    def from_options(cls, options: Sequence[tuple[str, Any]]) -> ImagePreprocess:
        fields = {k.removeprefix("image_"): v for k, v in options if k.startswith("image_")}
        return cls(**fields)

    def describe(self) -> str:
        size = "" if self.resize == "none" else f" {self.resize_size}"
        crop = f"; center_crop {self.crop_size}" if self.crop_size else ""
        mean = ",".join(f"{m:g}" for m in self.mean)
        std = ",".join(f"{s:g}" for s in self.std)
        return (
            f"image: resize {self.resize}{size} {self.interpolation}{crop}; x*{self.rescale:.6g}; "
            f"mean=({mean}) std=({std}); {self.channel_order}; CHW float32"
        )

    def output_hw(self) -> tuple[int, int] | None:
        if self.crop_size:
            return self.crop_size, self.crop_size
        return (self.resize_size, self.resize_size) if self.resize == "squash" else None

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) after the resize step (before the crop)."""
        if self.resize == "shortest_edge":
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.resize_size, int(self.resize_size * long / short)
            return (new_short, new_long) if width <= height else (new_long, new_short)
        if self.resize == "squash":
            return self.resize_size, self.resize_size
        return width, height

    def __call__(self, img: PILImage.Image) -> np.ndarray:
        """An RGB PIL image -> CHW float32 pixel values."""
        width, height = img.size
        new_w, new_h = self.resized_size(width, height)
        crop = self.crop_size
        resample = _RESAMPLE[self.interpolation]
        if crop and (new_w, new_h) != img.size and crop <= min(new_w, new_h):
            # Resize only the pixels the centre crop keeps: the same filter at the same scale, evaluated
            # on the crop's box of the source (1.6 instead of 2.8 ms per photo of 300x451 to 500x741). Pillow computes
            # the box's filter weights from the box origin, so a pixel may round one 8-bit level apart
            # from resize-then-crop (measured: ~1e-4 of pixels).
            left, top = (new_w - crop) // 2, (new_h - crop) // 2
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
            a = np.asarray(img.resize((crop, crop), resample=resample, box=box), dtype=np.uint8)
        else:
            if (new_w, new_h) != img.size:
                img = img.resize((new_w, new_h), resample=resample)
            a = np.asarray(img, dtype=np.uint8)
            if crop:
                a = _center_crop(a, crop)
        # (x * rescale - mean) / std as one scale and one shift per channel.
        scale = np.float32(self.rescale) / np.asarray(self.std, np.float32)
        shift = np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)
        x: np.ndarray = a.astype(np.float32)
        x *= scale
        x -= shift
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def _center_crop(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to size x size; an image smaller than that is zero-padded around (as HF processors)."""
    h, w = a.shape[:2]
    if h < size or w < size:
        padded = np.zeros((max(h, size), max(w, size), a.shape[2]), a.dtype)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = a
        a, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - size) // 2, (w - size) // 2
    return a[top : top + size, left : left + size]


class ImagePreparer:
    """Loads images (any input kind, under the settings' limits) and applies a model's preprocessing."""

    streaming = True
    """The pipeline prepares the next chunk of images while the current one is encoded."""

    def __init__(self, preprocess: ImagePreprocess, settings: Settings) -> None:
        self.preprocess = preprocess
        self.settings = settings

    def contract(self, options: Any) -> str:
        return self.preprocess.describe()

    def _one(self, index: int, item: Any, allow_paths: bool) -> Any:
        try:
            loaded = load_image(item, self.settings, allow_paths=allow_paths, min_size=self.preprocess.resized_size)
            pixels = self.preprocess(loaded.image)
        except OmniEmbedError as exc:
            return exc.at_index(index)
        except Exception as exc:  # a decoder bug or an exotic file must not take the batch down
            return InputUnreadable(f"the image cannot be decoded: {decoder_reason(exc)}",
                                   detail=f"{type(exc).__name__}: {exc}"[:2000]).at_index(index)
        w, h = loaded.image.size
        full_w, full_h = loaded.original_size if (w >= h) == (loaded.original_size[0] >= loaded.original_size[1]) \
            else loaded.original_size[::-1]
        size = f"{w}x{h}" if (w, h) == (full_w, full_h) else f"{full_w}x{full_h}, decoded at {w}x{h}"
        info = InputInfo(kind="image", description=f"{loaded.description} ({size})", length=full_w * full_h)
        return Prepared({"pixel_values": pixels}, int(pixels.shape[1] * pixels.shape[2]), info)

    def prepare(self, items: Sequence[Any], options: Any) -> list[Any]:
        allow = bool(getattr(options, "allow_paths", True))
        if len(items) <= 1:
            return [self._one(i, item, allow) for i, item in enumerate(items)]
        # Decoding and resizing release the GIL in Pillow: a few threads keep the encoder fed.
        with ThreadPoolExecutor(max_workers=min(len(items), self.settings.threads(), 8)) as pool:
            return list(pool.map(lambda pair: self._one(pair[0], pair[1], allow), enumerate(items)))

    def collate(self, batch: Sequence[Any]) -> dict[str, np.ndarray]:
        shapes = {p.features["pixel_values"].shape for p in batch}
        if len(shapes) > 1:  # only without a crop: pad to the largest, bottom-right
            h = max(s[1] for s in shapes)
            w = max(s[2] for s in shapes)
            out = np.zeros((len(batch), 3, h, w), np.float32)
            for k, p in enumerate(batch):
                x = p.features["pixel_values"]
                out[k, :, : x.shape[1], : x.shape[2]] = x
            return {"pixel_values": out}
        return {"pixel_values": np.stack([p.features["pixel_values"] for p in batch])}
