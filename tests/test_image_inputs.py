"""Image inputs: every entry point gives the same pixels, modes convert correctly, and bad inputs are
clear errors with their code and index while the rest of the batch is still embedded."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omniembed
from conftest import LoopbackServer
from image_data import photo, png_bomb, png_bytes, truncated_png
from omniembed import Embedding, InputTooLarge, InputUnreadable, OmniEmbedError, ParameterInvalid, Settings
from omniembed.contract import Options
from omniembed.inputs.image import ImagePreparer, ImagePreprocess, load_image

MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return photo("coffee")[::4, ::4].copy()  # 100 x 150, keeps the tests quick


@pytest.fixture(scope="module")
def open_engine(tmp_path_factory: pytest.TempPathFactory) -> omniembed.Engine:
    """An engine that may fetch from the loopback test server, with a short fetch timeout."""
    cache = tmp_path_factory.mktemp("image-inputs-cache")
    return omniembed.Engine(
        Settings(cache_dir=cache, hub_offline=True, allow_private_urls=True, fetch_timeout_sec=1.0)
    )


def _pixels(item: object, settings: Settings, **kw: bool) -> np.ndarray:
    return np.asarray(load_image(item, settings, **kw).image)


def test_every_input_kind_gives_the_same_pixels(
    coffee: np.ndarray, tmp_path: Path, http_server: LoopbackServer
) -> None:
    data = png_bytes(coffee)
    (tmp_path / "coffee.png").write_bytes(data)
    (tmp_path / "no_suffix").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    http_server.routes["/coffee.png"] = (200, {"Content-Type": "image/png"}, data)
    settings = Settings(allow_private_urls=True)
    items = [
        str(tmp_path / "coffee.png"), tmp_path / "coffee.png", str(tmp_path / "no_suffix"), data, bytearray(data),
        io.BytesIO(data), b64, "data:image/png;base64," + b64, base64.urlsafe_b64encode(data).decode().rstrip("="),
        Image.fromarray(coffee), coffee, coffee.astype(np.float32) / 255.0, http_server.url("/coffee.png"),
    ]
    for k, item in enumerate(items):
        got = _pixels(item, settings)
        assert got.shape == coffee.shape and got.dtype == np.uint8, k
        assert np.array_equal(got, coffee), f"input kind {k} ({type(item).__name__}) decoded differently"
    gray = _pixels(coffee[..., 0], settings)  # HxW arrays become gray RGB
    assert np.array_equal(gray, np.stack([coffee[..., 0]] * 3, -1))


def test_exif_orientation_is_applied(coffee: np.ndarray) -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(coffee).save(buf, format="JPEG", quality=95, exif=exif)
    loaded = load_image(buf.getvalue(), Settings())
    assert loaded.image.size == (coffee.shape[0], coffee.shape[1])  # width and height swapped
    assert loaded.original_size == (coffee.shape[1], coffee.shape[0])


def _encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_modes_convert_to_rgb_and_transparency_goes_on_white() -> None:
    s = Settings()
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest is transparent black
    rgba[0, 1] = (0, 0, 255, 128)  # half-transparent blue
    got = _pixels(_encode(Image.fromarray(rgba, "RGBA")), s)
    assert tuple(got[0, 0]) == (255, 0, 0) and tuple(got[3, 3]) == (255, 255, 255)
    assert abs(int(got[0, 1, 0]) - 127) <= 1 and got[0, 1, 2] == 255
    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], np.uint8), "LA")
    assert [tuple(p) for p in _pixels(_encode(la), s)[0]] == [(10, 10, 10), (255, 255, 255)]
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([0, 200, 0, 9, 9, 9])
    pal = _pixels(_encode(palette, transparency=1), s)
    assert [tuple(p) for p in pal[0]] == [(0, 200, 0), (255, 255, 255)]
    sixteen = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))  # 16-bit grayscale
    assert _pixels(_encode(sixteen), s)[0, :, 0].tolist() == [0, 128, 255]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert tuple(_pixels(_encode(cmyk, "JPEG", quality=100), s)[0, 0]) == pytest.approx((255, 0, 0), abs=3)
    assert _pixels(Image.new("1", (2, 2), 1), s).tolist() == [[[255] * 3] * 2] * 2


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "TIFF", "BMP"])
def test_other_formats(coffee: np.ndarray, fmt: str) -> None:
    from PIL import features

    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow build has no AVIF codec")
    lossless = {"WEBP": {"lossless": True}, "AVIF": {"quality": 100}}.get(fmt, {})
    got = _pixels(_encode(Image.fromarray(coffee), fmt, **lossless), Settings())
    error = np.abs(got.astype(int) - coffee).mean()
    assert got.shape == coffee.shape and (error < 6 if fmt == "AVIF" else error == 0)  # AVIF: 4:2:0 chroma


def test_animated_images_take_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    got = _pixels(buf.getvalue(), Settings())
    assert tuple(got[4, 4]) == (255, 0, 0)


def test_limits_are_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bombs are refused from the header: Image.load is never reached."""
    def no_load(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_load)
    for side, reason in ((30000, "decompression bomb"), (10000, "OMNIEMBED_MAX_IMAGE_PIXELS")):
        with pytest.raises(InputTooLarge, match=reason) as info:
            load_image(png_bomb(side), Settings())
        assert info.value.code == "input_too_large"
    with pytest.raises(InputTooLarge, match="200 pixels"):
        load_image(png_bomb(1000), Settings(max_image_pixels=200))


def test_byte_limit_and_paths_policy(coffee: np.ndarray, tmp_path: Path) -> None:
    data = png_bytes(coffee)
    (tmp_path / "c.png").write_bytes(data)
    small = Settings(max_image_bytes=1000)
    for item in (data, str(tmp_path / "c.png"), io.BytesIO(data), base64.b64encode(data).decode()):
        with pytest.raises(InputTooLarge, match="OMNIEMBED_MAX_IMAGE_BYTES"):
            load_image(item, small)
    for item in (str(tmp_path / "c.png"), tmp_path / "c.png", "/etc/passwd", "../secret.jpg"):
        with pytest.raises(ParameterInvalid, match="paths are not accepted"):
            load_image(item, Settings(), allow_paths=False)
    assert load_image(base64.b64encode(data).decode(), Settings(), allow_paths=False).image.size == (150, 100)


@pytest.mark.parametrize("allow_paths", [True, False])
def test_short_base64_and_jpeg_base64_are_not_taken_for_paths(coffee: np.ndarray, allow_paths: bool) -> None:
    """Base64 of a JPEG starts with "/9j/"; short base64 strings must not hit file-name length limits."""
    jpeg = _encode(Image.fromarray(coffee), "JPEG", quality=90)
    tiny = png_bytes(np.full((6, 6, 3), 200, np.uint8))
    for data in (jpeg, tiny, png_bytes(coffee[:20, :20])):
        text = base64.b64encode(data).decode()
        loaded = load_image(text, Settings(), allow_paths=allow_paths)
        assert loaded.image.size == Image.open(io.BytesIO(data)).size and loaded.description == "base64 image"
    assert base64.b64encode(jpeg).decode().startswith("/9j/")
    with pytest.raises(InputUnreadable, match=r"not .*base64"):
        load_image("hello, world!", Settings(), allow_paths=allow_paths)
    with pytest.raises(InputTooLarge, match="decodes to about"):
        load_image("A" * 4000, Settings(max_image_bytes=1000), allow_paths=allow_paths)
    with pytest.raises(ParameterInvalid, match="dict"):
        load_image({"url": "x"}, Settings())
    with pytest.raises(ParameterInvalid, match="shape"):
        load_image(np.zeros((3, 8, 8, 2)), Settings())


def test_preprocess_contract() -> None:
    """Shortest-edge resize keeps the aspect, then the centre crop; mean/std and channel order apply."""
    img = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3)))  # 200 wide
    rgb = ImagePreprocess(resize_size=50, interpolation="bilinear", crop_size=40, mean=(0, 0, 0), std=(1, 1, 1))
    x = rgb(img)
    assert x.shape == (3, 40, 40) and x.dtype == np.float32
    # 200x100 -> 100x50; the crop keeps columns 30..69, i.e. original columns ~60..139.
    assert 0.2 < x[0, 0, 0] < 0.28 and 0.5 < x[0, 0, -1] < 0.58
    bgr = ImagePreprocess(resize="squash", resize_size=8, crop_size=None, mean=(0.1, 0.2, 0.3), std=(1, 2, 3),
                          channel_order="BGR")
    y = bgr(Image.new("RGB", (5, 3), (255, 0, 51)))
    assert y.shape == (3, 8, 8)
    assert np.allclose(y[:, 0, 0], [(0.2 - 0.3) / 3, (0 - 0.2) / 2, (1 - 0.1) / 1])
    assert "center_crop 40" in rgb.describe() and "BGR" in bgr.describe()


def test_preparer_returns_errors_in_place(coffee: np.ndarray) -> None:
    preparer = ImagePreparer(ImagePreprocess(), Settings())
    out = preparer.prepare([coffee, b"", None, png_bytes(coffee)], Options())
    assert [type(o).__name__ for o in out] == ["Prepared", "InputUnreadable", "ParameterInvalid", "Prepared"]
    assert out[1].index == 1 and out[2].index == 2
    feeds = preparer.collate([out[0], out[3]])
    assert feeds["pixel_values"].shape == (2, 3, 224, 224)
    assert np.array_equal(feeds["pixel_values"][0], feeds["pixel_values"][1])


@pytest.mark.parametrize("batch_size", [32, 3])
def test_bad_inputs_in_a_batch(
    open_engine: omniembed.Engine, coffee: np.ndarray, tmp_path: Path, http_server: LoopbackServer, batch_size: int
) -> None:
    """Each bad input is a clear error with its code and index; the good items are still embedded.
    batch_size=3 streams the images in chunks of 6: indices and order hold across chunks."""
    (tmp_path / "truncated.png").write_bytes(truncated_png())
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    (tmp_path / "bomb.png").write_bytes(png_bomb(30000))
    (tmp_path / "good.png").write_bytes(png_bytes(coffee))
    http_server.routes["/boom.png"] = (500, {}, b"server error")
    http_server.routes["/hang.png"] = (0, {}, None)
    items: list[object] = [
        str(tmp_path / "good.png"),
        str(tmp_path / "truncated.png"),
        str(tmp_path / "empty.png"),
        str(tmp_path / "notes.jpg"),
        str(tmp_path / "bomb.png"),
        http_server.url("/boom.png"),
        http_server.url("/hang.png"),
        "data:image/png;base64,iVBORw0KGgo%%%not-base64",
        "bm90IGFuIGltYWdl",  # valid base64 of "not an image"
        coffee,
    ]
    expected = {
        1: ("input_unreadable", "truncated"),
        2: ("input_unreadable", "empty"),
        3: ("input_unreadable", "not an image"),
        4: ("input_too_large", "decompression bomb"),
        5: ("input_unreadable", "HTTP 500"),
        6: ("input_unreadable", "timed out"),
        7: ("input_unreadable", "base64"),
        8: ("input_unreadable", "not an image"),
    }
    started = time.monotonic()
    out = open_engine.embed_batch(MODEL, images=items, errors="return", runtime="torch", batch_size=batch_size)
    assert len(out) == len(items)
    assert time.monotonic() - started < 20  # the hanging URL is bounded by the 1 s fetch timeout
    for i, (code, words) in expected.items():
        error = out[i]
        assert isinstance(error, OmniEmbedError), (i, error)
        assert (error.code, error.index) == (code, i), (i, error)
        assert words in error.message, (i, error.message)
        assert error.message.count("item ") <= 1, error.message  # renumbered, not prefixed twice
    good = [out[0], out[9]]
    assert all(isinstance(e, Embedding) and e.data.shape == (1280,) for e in good)
    assert float(np.abs(good[0].data - good[1].data).max()) < 1e-4  # same photo, path vs array
    alone = open_engine.embed(MODEL, image=coffee, runtime="torch")
    assert np.allclose(alone.data, good[1].data, atol=1e-4)
    with pytest.raises(InputUnreadable, match="truncated") as info:
        open_engine.embed_batch(MODEL, images=items[:2], runtime="torch")
    assert info.value.index == 1


def test_private_urls_are_refused_by_default(
    engine: omniembed.Engine, coffee: np.ndarray, http_server: LoopbackServer
) -> None:
    http_server.routes["/c.png"] = (200, {}, png_bytes(coffee))
    out = engine.embed_batch(MODEL, images=[http_server.url("/c.png"), coffee], errors="return", runtime="torch")
    assert isinstance(out[0], ParameterInvalid) and out[0].index == 0 and "loopback" in out[0].message
    assert isinstance(out[1], Embedding)
    assert http_server.hits == []  # refused before any request
    with pytest.raises(ParameterInvalid, match="paths are not accepted"):
        engine.embed(MODEL, image="/etc/hostname", runtime="torch", allow_paths=False)
