"""The playground page (``/``) in Debian's chromium, driven by Playwright, against a real ``omniembed serve``.

The heatmap's numbers are read from the DOM and compared with cosines computed here from the vectors the
API answers for the same inputs. Screenshots go to a temporary folder, and to docs/img/ when
OMNIEMBED_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import omniembed
from geo_data import shared_geo_dir
from image_data import photo, png_bytes
from service_util import Server
from video_data import FIRST, two_photos

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium (`make test` installs it)"
)
sync_api = pytest.importorskip("playwright.sync_api")

TEXTS = ["a cat sits on the mat", "a kitten sleeps on a rug", "the stock market fell sharply"]
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
RUNTIME = "torch"  # no one-off ONNX exports at start-up: the page is under test here, not the runtimes
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_geo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings, geo_dir: Path) -> Iterator[Server]:
    geo = json.dumps({"gse": str(geo_dir / "gse"), "s2": str(geo_dir / "s2")})
    srv = Server(tmp_path_factory.mktemp("playground"), settings.cache_dir, OMNIEMBED_GEO_SOURCES=geo,
                 OMNIEMBED_SERVE_MODELS="minilm,efficientnet-lite0", OMNIEMBED_RUNTIME=RUNTIME).start()
    yield srv
    srv.stop()


def _vectors(url: str, model: str, inputs: list[str], modality: str = "text", key: str | None = None) -> np.ndarray:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = httpx.post(f"{url}/v1/embeddings", headers=headers, timeout=60,
                      json={"model": model, "input": inputs, "modality": modality, "encoding_format": "float"})
    body.raise_for_status()
    return np.array([d["embedding"] for d in body.json()["data"]], np.float64)


def _cosines(v: np.ndarray) -> np.ndarray:
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit @ unit.T


def _heatmap(page: Any, model: str) -> np.ndarray:
    cells = page.eval_on_selector_all(
        f'table.heatmap[data-model="{model}"] td',
        "cells => cells.map(c => [+c.dataset.row, +c.dataset.col, +c.dataset.value])")
    rows = sorted({r for r, _, _ in cells})
    cols = sorted({c for _, c, _ in cells})
    grid = np.full((len(rows), len(cols)), np.nan)
    for r, c, value in cells:
        grid[rows.index(r), cols.index(c)] = value
    return grid


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A screenshot of a page or an element; also into docs/img/ with OMNIEMBED_UPDATE_SCREENSHOTS=1."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("OMNIEMBED_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / name)
    return path


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _clip() -> bytes:
    """6 s at 16 kHz: a tone, then noise (so its segments differ)."""
    import soundfile

    t = np.arange(6 * 16000) / 16000
    noise = np.random.default_rng(0).standard_normal(t.size)
    wave = np.where(t < 3, 0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * noise).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, 16000, format="WAV")
    return buffer.getvalue()


def _tab_to(page: Any, element_id: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


# Chromium reports a <select>'s scrollWidth as its clientWidth even where its text is cut, so a select's need is
# measured instead: a copy of it, free to take its own width (that of its longest option), beside it.
SELECT_WIDTHS = """() => [...document.querySelectorAll('select')].filter(s => s.getClientRects().length).map(s => {
    const copy = s.cloneNode(true);
    copy.removeAttribute('id');
    Object.assign(copy.style,
                  {position: 'absolute', visibility: 'hidden', width: 'auto', maxWidth: 'none', minWidth: '0'});
    s.parentNode.append(copy);
    const need = copy.getBoundingClientRect().width;
    copy.remove();
    return [s.id, s.getBoundingClientRect().width, need];
})"""
# the scatter labels a reader sees, each the box round a point's visible text and thumbnail:
# [input, text, left, top, right, bottom] in CSS pixels
SCATTER_LABELS = """svg => [...svg.querySelectorAll('g.point')].map(g => {
    const parts = [...g.querySelectorAll('text, image')].filter(e => getComputedStyle(e).visibility !== 'hidden')
        .map(e => e.getBoundingClientRect()).filter(r => r.width && r.height);
    if (!parts.length) return null;
    const text = [...g.querySelectorAll('text')].map(t => t.textContent).join(' ');
    return [+g.dataset.input, text, Math.min(...parts.map(r => r.left)), Math.min(...parts.map(r => r.top)),
            Math.max(...parts.map(r => r.right)), Math.max(...parts.map(r => r.bottom))];
}).filter(Boolean)"""


def _unclipped(page: Any) -> list[str]:
    """The ids of the visible dropdowns, after asserting that each is as wide as its longest option."""
    widths = page.evaluate(SELECT_WIDTHS)
    assert all(need > 40 for _, _, need in widths), widths  # the measure itself works
    assert [(i, round(w), round(need)) for i, w, need in widths if w + 0.5 < need] == []
    return [i for i, _, _ in widths]


def _labels_apart(page: Any, model: str) -> list[list[Any]]:
    """The scatter's visible labels, after asserting that no two of them intersect."""
    labels: list[list[Any]] = page.eval_on_selector(f'.space[data-model="{model}"] svg.scatter', SCATTER_LABELS)
    crossing = [(a[0], b[0]) for i, a in enumerate(labels) for b in labels[i + 1:]
                if a[2] < b[4] and b[2] < a[4] and a[3] < b[5] and b[3] < a[5]]
    assert crossing == [], labels
    return labels


def _colour(value: float) -> str:
    """The page's colour scale (views.js cosineColour): -1 red, 0 white, 1 blue, as getComputedStyle writes it."""
    t = max(-1.0, min(1.0, value))
    rgb = (255 - 222 * t, 255 - 160 * t, 255 - 75 * t) if t >= 0 else (255 + 30 * t, 255 + 200 * t, 255 + 200 * t)
    return "rgb({}, {}, {})".format(*(int(c) for c in rgb))


def _legend(page: Any, whole: str) -> None:
    """The timelines' colour key: one entry per cosine, coloured as the bars are, naming what it compares with."""
    legend = page.locator(".space .legend")
    assert legend.count() == 1 and f"cosine with the whole {whole}" in legend.inner_text()
    entries = legend.locator("li").evaluate_all("ls => ls.map(l => [+l.dataset.value, l.innerText, "
                                                "getComputedStyle(l.querySelector('.swatch')).backgroundColor])")
    assert [e[0] for e in entries] == [1, 0.75, 0.5, 0.25, 0, -0.5, -1]
    assert [e[2] for e in entries] == [_colour(e[0]) for e in entries]
    assert "same direction" in entries[0][1] and "unrelated" in entries[4][1] and "opposite" in entries[6][1]
    bars = page.eval_on_selector_all("svg.timeline rect.segment",
                                     "rs => rs.map(r => [+r.dataset.value, r.getAttribute('fill')])")
    channels = [(_channels(fill), _channels(_colour(value))) for value, fill in bars]  # value: to 6 decimals
    assert bars and all(np.abs(np.subtract(a, b)).max() <= 1 for a, b in channels)  # the bars follow the key's scale


def _channels(colour: str) -> list[int]:
    return [int(c) for c in colour.removeprefix("rgb(").removesuffix(")").split(",")]


def test_page_embeds_texts_and_images(server: Server, browser: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    images = {"chelsea.png": png_bytes(photo("chelsea")[::4, ::4]), "coffee.png": png_bytes(photo("coffee")[::4, ::4])}
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []  # script errors and refused content (CSP) show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model-image")
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')].filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id)""")
    assert unlabelled == []
    page.select_option("#model-text", "minilm")
    page.select_option("#model-image", "efficientnet-lite0")
    page.fill("#texts", "\n".join(TEXTS))
    files = [{"name": n, "mimeType": "image/png", "buffer": b} for n, b in images.items()]
    files.append({"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n this is not an image"})
    page.set_input_files("#image-files", files)
    assert page.locator("#image-list li").count() == 3
    page.select_option("#model-audio", "sfx-cnn")
    page.set_input_files("#audio-files", [{"name": "tone-then-noise.wav", "mimeType": "audio/wav", "buffer": _clip()}])
    page.focus("#texts")
    _tab_to(page, "embed")  # the keyboard reaches the button through every control in between
    page.keyboard.press("Enter")
    page.wait_for_selector('#results[data-state="done"]', timeout=60_000)

    # each text and image card renders; the broken image shows its code beside itself
    states = page.eval_on_selector_all(".input-card", "cs => cs.map(c => [c.dataset.input, c.dataset.state])")
    assert states == [["1", "ok"], ["2", "ok"], ["3", "ok"], ["4", "ok"], ["5", "ok"], ["6", "error"], ["7", "ok"]]
    error = page.locator('.input-card[data-input="6"] .error')
    assert error.get_attribute("data-code") == "input_unreadable"
    assert error.get_attribute("role") == "alert" and "input_unreadable" in error.inner_text()
    assert page.locator('.input-card[data-input="1"] .facts').inner_text().count("384") == 1

    texts = _vectors(server.url, "minilm", TEXTS)
    shown = _heatmap(page, "minilm")
    np.testing.assert_allclose(shown, _cosines(texts), atol=1e-4)
    urls = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in images.values()]
    pictures = _vectors(server.url, "efficientnet-lite0", urls, modality="image")
    np.testing.assert_allclose(_heatmap(page, "efficientnet-lite0"), _cosines(pictures), atol=1e-4)
    assert "#1 a cat sits" in page.locator('table.heatmap[data-model="minilm"] tbody th').first.inner_text()
    colours = page.eval_on_selector_all('table.heatmap[data-model="minilm"] td',
                                        "cs => cs.map(c => getComputedStyle(c).backgroundColor)")
    assert colours[0] != colours[1] and "rgba(0, 0, 0, 0)" not in colours  # coloured by value

    # the clip's timeline: one bar per segment the TwelveLabs face answers, coloured by its cosine with the clip
    clip = f"data:audio/wav;base64,{base64.b64encode(_clip()).decode()}"
    pooled = _vectors(server.url, "sfx-cnn", [clip], modality="audio")[0]
    answer = httpx.post(f"{server.url}/v1.3/embed", data={"model_name": "sfx-cnn"},
                        files={"audio_file": ("clip.wav", _clip())}, timeout=60).json()
    segments = np.array([s["float"] for s in answer["audio_embedding"]["segments"]])
    bars = page.eval_on_selector_all('svg.timeline[data-input="7"] rect.segment', "rs => rs.map(r => +r.dataset.value)")
    assert len(segments) > 1
    np.testing.assert_allclose(bars, _cosines(np.vstack([pooled, segments]))[0, 1:], atol=1e-4)
    _legend(page, "clip")

    # neighbours and the PCA scatter follow the same cosines
    nearest = page.eval_on_selector_all('.space[data-model="minilm"] .neighbours > li',
                                        "ls => ls.map(l => +l.querySelector('[data-neighbour]').dataset.neighbour)")
    cos = _cosines(texts) - 2 * np.eye(3)
    assert nearest == [int(np.argmax(row)) + 1 for row in cos]
    assert page.locator('.space[data-model="minilm"] svg.scatter g.point').count() == 3

    # the openai and twelvelabs snippets run as shown and give the page's vectors
    page.select_option("#snippet-input", "1")
    page.select_option("#snippet-kind", "openai")
    scope: dict[str, Any] = {}
    exec(page.inner_text("#snippet-code"), scope)
    np.testing.assert_allclose(scope["vector"], texts[0], atol=1e-5)
    page.select_option("#snippet-input", "4")
    page.select_option("#snippet-kind", "twelvelabs")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chelsea.png").write_bytes(images["chelsea.png"])
    scope = {}
    exec(page.inner_text("#snippet-code"), scope)
    np.testing.assert_allclose(scope["vector"], pictures[0], atol=1e-5)

    page.eval_on_selector(".space", "s => s.scrollIntoView()")  # the README's picture: heatmap, neighbours, PCA
    wide = _screenshot(page, tmp_path, "playground-1280x800.png")
    assert _png_size(wide) == (1280, 800)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
    page.locator(".space").first.scroll_into_view_if_needed()
    assert _png_size(_screenshot(page, tmp_path, "playground-390x844.png")) == (390, 844)
    assert [p for p in problems if "status of 400" not in p] == []  # 400: the broken image's request
    page.close()


def _data_url_pixels(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"))


def test_earth_observation_panel(server: Server, browser: Any, geo_dir: Path, tmp_path: Path) -> None:
    from omniembed.geo import OutputSpec, PointBuffer, TemporalSpec, get_embedding
    from omniembed.geo.files import pca_rgb

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{server.url}/")
    page.wait_for_selector("#geo-panel:not([hidden])")
    page.select_option("#geo-model", "gse")
    page.select_option("#geo-source", "gse")
    page.select_option("#geo-rgb", "s2")
    page.fill("#geo-buffer", "600")
    page.click("#geo-embed")
    page.wait_for_selector('#geo-result[data-state="done"]', timeout=60_000)
    rgb, pca = page.eval_on_selector_all("#geo-result img", "imgs => imgs.map(i => i.src)")
    engine = omniembed.Engine(omniembed.Settings(geo_sources={"gse": str(geo_dir / "gse")}, hub_offline=True))
    grid = get_embedding("gse", spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=600), engine=engine,
                         temporal=TemporalSpec.range("2022-01-01", "2023-01-01"), output=OutputSpec.grid(),
                         backend="local:gse").data
    np.testing.assert_array_equal(_data_url_pixels(pca), pca_rgb(np.asarray(grid, np.float32)))
    facts = {r["model"]: r for r in httpx.get(f"{server.url}/playground/api/runtime").json()["models"]}
    # the loaded product's own runtime, where the settings (OMNIEMBED_RUNTIME) would say torch
    assert {k: facts["gse"][k] for k in ("runtime", "device", "loaded")} == {
        "runtime": "precomputed", "device": "cpu", "loaded": True}
    composite = _data_url_pixels(rgb)
    assert composite.shape[0] == composite.shape[1] == 120 and composite.std() > 10  # 1.2 km at 10 m, not flat
    _screenshot(page.locator("#geo-panel"), tmp_path, "playground-geo.png")
    page.fill("#geo-lon", "2.35")  # Paris: no raster of the source covers it
    page.click("#geo-embed")
    page.wait_for_selector('#geo-result[data-state="error"]')
    error = page.locator("#geo-result .error")
    assert error.get_attribute("data-code") == "input_unreadable"
    assert "source 'gse'" in error.inner_text() and str(geo_dir) not in error.inner_text()
    page.close()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("playground-keys"), settings.cache_dir, OMNIEMBED_API_KEYS="right-key",
                 OMNIEMBED_RUNTIME=RUNTIME).start()
    yield srv
    srv.stop()


def test_api_key_prompt(keyed: Server, browser: Any) -> None:
    assert httpx.get(f"{keyed.url}/").status_code == 200  # the page and its files need no key
    assert httpx.get(f"{keyed.url}/playground/static/app.js").status_code == 200
    missing = httpx.get(f"{keyed.url}/playground/static/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_not_exist"
    assert httpx.get(f"{keyed.url}/playground/api/runtime").status_code == 401
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{keyed.url}/playground")
    page.wait_for_selector("#key-panel:not([hidden])")
    assert page.locator("#model-text").count() == 0 and page.locator("#embed").is_disabled()
    page.fill("#api-key", "wrong-key")
    page.press("#api-key", "Enter")
    page.wait_for_selector("#key-error:has-text('api_key_invalid')")  # (the page's CSP forbids wait_for_function)
    page.fill("#api-key", "right-key")
    page.click("#use-key")
    page.wait_for_selector("#model-text")
    assert page.inner_text("#key-error") == ""
    page.fill("#texts", "\n".join([*TEXTS[:2], "word " * 400]))
    page.select_option("#truncate", "none")  # the over-long third text is refused, beside itself
    page.click("#embed")
    page.wait_for_selector('#results[data-state="done"]', timeout=60_000)
    assert page.locator('.input-card[data-state="ok"]').count() == 2
    refused = page.locator('.input-card[data-input="3"] .error')
    assert refused.get_attribute("data-code") == "parameter_invalid" and "truncate" in refused.inner_text()
    vectors = _vectors(keyed.url, "minilm", TEXTS[:2], key="right-key")
    np.testing.assert_allclose(_heatmap(page, "minilm"), _cosines(vectors), atol=1e-4)
    page.select_option("#snippet-kind", "curl")
    assert "authorization: Bearer $OMNIEMBED_API_KEY" in page.inner_text("#snippet-code")
    page.close()


def _video_task(url: str, model: str, name: str, video: bytes, clip_sec: float) -> list[dict[str, Any]]:
    """The segments of a /v1.3/embed/tasks task (create, poll the status, retrieve), as the API answers them."""
    fields = {"model_name": model, "video_clip_length": str(clip_sec), "video_embedding_scope": ["clip", "video"],
              "video_embedding_option": "visual"}
    created = httpx.post(f"{url}/v1.3/embed/tasks", data=fields, files={"video_file": (name, video, "video/mp4")},
                         timeout=60)
    created.raise_for_status()
    task = created.json()["_id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/v1.3/embed/tasks/{task}/status").json()["status"] == "processing":
        assert time.monotonic() < deadline, f"task {task} still processing"
        time.sleep(0.1)
    done = httpx.get(f"{url}/v1.3/embed/tasks/{task}").json()
    assert done["status"] == "ready", done
    segments: list[dict[str, Any]] = done["video_embedding"]["segments"]
    return segments


def _split(segments: list[Any], key: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """(clip vectors, the whole video's vector, clip spans) of task segments (``key``: how to read a field)."""
    clips = [s for s in segments if key(s, "embedding_scope") == "clip"]
    whole = next(key(s, "float") for s in segments if key(s, "embedding_scope") == "video")
    spans = [(key(s, "start_offset_sec"), key(s, "end_offset_sec")) for s in clips]
    return np.array([key(s, "float") for s in clips], np.float64), np.array(whole, np.float64), spans


def test_page_embeds_a_video(server: Server, browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, name, clip_sec = "efficientnet-lite0", "two-photos.mp4", 2
    video = two_photos(tmp_path / name).read_bytes()  # 2 s of the astronaut, then 2 s of the coffee cup
    image = png_bytes(photo(FIRST)[::4, ::4])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model-video")
    options = "s => [...s.options].map(o => o.value)"  # video: every model that takes images (by its frames)
    assert page.eval_on_selector("#model-video", options) == page.eval_on_selector("#model-image", options)
    assert page.locator("label[for=video-clip]").inner_text().startswith("Clip length")
    page.select_option("#model-image", model)
    page.select_option("#model-video", model)
    page.fill("#texts", "")
    page.fill("#video-clip", str(clip_sec))
    page.set_input_files("#image-files", [{"name": "astronaut.png", "mimeType": "image/png", "buffer": image}])
    page.set_input_files("#video-files", [{"name": name, "mimeType": "video/mp4", "buffer": video}])
    page.click("#embed")
    page.wait_for_selector('#results[data-state="done"]', timeout=60_000)
    assert page.eval_on_selector_all(".input-card", "cs => cs.map(c => c.dataset.state)") == ["ok", "ok"]

    clips, whole, spans = _split(_video_task(server.url, model, name, video, clip_sec), lambda s, k: s[k])
    assert spans == [(0, 2), (2, 4)]
    bars = page.eval_on_selector_all('svg.timeline[data-input="2"] rect.segment',
                                     "rs => rs.map(r => [+r.dataset.start, +r.dataset.end, +r.dataset.value])")
    np.testing.assert_allclose([b[:2] for b in bars], spans, atol=1e-4)  # one bar per clip, at its times
    np.testing.assert_allclose([b[2] for b in bars], _cosines(np.vstack([whole, clips]))[0, 1:], atol=1e-4)
    _legend(page, "video")
    picture = _vectors(server.url, model, [f"data:image/png;base64,{base64.b64encode(image).decode()}"], "image")[0]
    np.testing.assert_allclose(_heatmap(page, model), _cosines(np.vstack([picture, whole])), atol=1e-4)

    card = page.locator('.input-card[data-input="2"] .facts').inner_text()
    assert "clips\n2" in card.replace("\t", "\n") and "the loaded model" in card
    facts = {r["model"]: r for r in httpx.get(f"{server.url}/playground/api/runtime").json()["models"]}
    assert facts[model] == {"model": model, "runtime": RUNTIME, "device": "cpu", "precision": "fp32", "loaded": True}

    # the twelvelabs and curl snippets run as shown and give the same clips and video
    page.select_option("#snippet-input", "2")
    monkeypatch.chdir(tmp_path)
    page.select_option("#snippet-kind", "twelvelabs")
    scope: dict[str, Any] = {}
    exec(page.inner_text("#snippet-code"), scope)
    np.testing.assert_allclose([s.float_ for s in scope["clips"]], clips, atol=1e-5)
    assert [(s.start_offset_sec, s.end_offset_sec) for s in scope["clips"]] == spans
    np.testing.assert_allclose(scope["video"], whole, atol=1e-5)
    page.select_option("#snippet-kind", "curl")
    shell = subprocess.run(["bash", "-c", page.inner_text("#snippet-code")], capture_output=True, text=True, timeout=60)
    shown = _split(json.loads(shell.stdout)["video_embedding"]["segments"], lambda s, k: s[k])
    np.testing.assert_allclose(shown[0], clips, atol=1e-5)
    np.testing.assert_allclose(shown[1], whole, atol=1e-5)
    assert shown[2] == spans
    _screenshot(page.locator('.space[data-model="efficientnet-lite0"]'), tmp_path, "playground-video.png")
    assert problems == []
    page.close()


LONG = " ".join(f"word{i % 50}" for i in range(400))  # 400 words: a page of text
TWINS = ["a cat sits on the mat", "a cat sits on the mat.", "the stock market fell sharply"]  # #1 and #2: one point


def _run(page: Any, url: str, texts: list[str]) -> None:
    page.goto(f"{url}/")
    page.wait_for_selector("#model-text")
    page.select_option("#model-text", "minilm")
    page.fill("#texts", "\n".join(texts))
    page.click("#embed")
    page.wait_for_selector('#results[data-state="done"]', timeout=120_000)


def test_the_embed_button_shows_at_1280x800(server: Server, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model-video")  # every panel is built
    page.wait_for_selector("#geo-panel:not([hidden])")
    page.screenshot(path=str(tmp_path / "top-1280x800.png"))
    box = page.locator("#embed").bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 800, box
    centre = f"document.elementFromPoint({box['x'] + box['width'] / 2}, {box['y'] + box['height'] / 2}).id"
    assert page.evaluate(centre) == "embed" and page.locator("#embed").is_enabled()  # nothing covers it
    assert page.evaluate("scrollY") == 0
    page.close()


def test_no_dropdown_cuts_its_text(server: Server, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model-video")
    page.wait_for_selector("#geo-panel:not([hidden])")
    shown = _unclipped(page)
    assert {"model-text", "model-image", "model-audio", "model-video", "truncate", "geo-model", "geo-area"} <= {*shown}
    assert page.get_attribute("#model-audio", "title").startswith(page.input_value("#model-audio") + " · ")
    page.click("#embed")
    page.wait_for_selector('#results[data-state="done"]', timeout=60_000)
    assert {"snippet-input", "snippet-kind"} <= set(_unclipped(page))
    page.close()


def test_a_long_text_keeps_the_charts_in_view(server: Server, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _run(page, server.url, [*TWINS, LONG])
    card = page.locator('.input-card[data-input="4"]')
    assert card.bounding_box()["height"] < 800 / 2  # was about 4,500 px: every word on its own card
    assert page.locator('.input-card[data-input="1"]').bounding_box()["height"] < 800 / 2
    more = card.locator("button.more")
    assert more.is_visible() and more.inner_text() == "Show all 400 words"
    assert page.locator('.input-card[data-input="1"] button.more').is_hidden()  # a short text shows whole
    page.eval_on_selector("#results", "r => r.scrollIntoView()")
    page.screenshot(path=str(tmp_path / "long-1280x800.png"))
    for chart in ('table.heatmap[data-model="minilm"]', '.space[data-model="minilm"] svg.scatter'):
        box = page.locator(chart).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 800, (chart, box)  # in view beside the cards
    np.testing.assert_allclose(_heatmap(page, "minilm"), _cosines(_vectors(server.url, "minilm", [*TWINS, LONG])),
                               atol=1e-4)
    more.click()  # the whole text, in a box that scrolls, and back
    quote = card.locator("blockquote")
    assert more.get_attribute("aria-expanded") == "true" and quote.inner_text() == LONG
    assert quote.evaluate("q => q.scrollHeight > q.clientHeight + 100 && getComputedStyle(q).overflowY === 'auto'")
    more.click()
    assert more.get_attribute("aria-expanded") == "false" and more.inner_text() == "Show all 400 words"
    assert card.bounding_box()["height"] < 800 / 2
    page.close()


def test_scatter_labels_never_overlap(server: Server, browser: Any, tmp_path: Path) -> None:
    """Two texts that land on one point: both labelled, apart; hovering a point shows its whole label."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _run(page, server.url, [*TWINS, "a kitten sleeps on a rug"])
    page.eval_on_selector(".space", "s => s.scrollIntoView()")
    page.screenshot(path=str(tmp_path / "labels-1280x800.png"))
    labels = _labels_apart(page, "minilm")
    assert sorted(label[0] for label in labels) == [1, 2, 3, 4]  # none hidden: there is room for all four
    assert {label[1] for label in labels} >= {"#1 a cat sits on the mat", "#3 the stock market fell sharp…"}
    readout = page.locator('.space[data-model="minilm"] .point-readout')
    page.hover('.space[data-model="minilm"] svg.scatter g.point[data-input="2"] circle')
    assert readout.inner_text().startswith("#2 a cat sits on the mat. (PC1 ")
    page.close()


def test_twenty_inputs(server: Server, browser: Any, tmp_path: Path) -> None:
    topics = ["cats", "dogs", "the stock market", "the rain", "music"]
    texts = [f"sentence number {i} is about {topics[i % 5]} and other things" for i in range(20)]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    _run(page, server.url, texts)
    states = page.eval_on_selector_all(".input-card", "cs => cs.map(c => c.dataset.state)")
    assert states == ["ok"] * 20
    shown = _heatmap(page, "minilm")
    assert shown.shape == (20, 20)
    np.testing.assert_allclose(shown, _cosines(_vectors(server.url, "minilm", texts)), atol=1e-4)
    heat = page.locator('.space[data-model="minilm"] .scroll')
    assert heat.evaluate("s => s.scrollWidth <= s.clientWidth")  # all twenty columns show at 1280 px
    assert page.locator('.space[data-model="minilm"] .neighbours > li').count() == 20
    assert page.locator('.space[data-model="minilm"] svg.scatter g.point').count() == 20
    page.eval_on_selector('.space[data-model="minilm"] svg.scatter', "s => s.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(tmp_path / "twenty-1280x800.png"))
    labels = _labels_apart(page, "minilm")
    assert len(labels) >= 10  # thinned, not emptied
    placed = page.eval_on_selector_all('.space[data-model="minilm"] g.point', "gs => gs.map(g => g.dataset.placed)")
    thinned = [i + 1 for i, kind in enumerate(placed) if kind != "full"]
    assert thinned  # twenty labels do not all fit whole in the frame
    page.hover(f'.space[data-model="minilm"] svg.scatter g.point[data-input="{thinned[0]}"] circle')
    readout = page.locator('.space[data-model="minilm"] .point-readout').inner_text()
    assert readout.startswith(f"#{thinned[0]} {texts[thinned[0] - 1]} (PC1 ")  # the whole label on hover
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the heatmap scrolls in its own box
    page.close()
