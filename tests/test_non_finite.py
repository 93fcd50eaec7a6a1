"""No NaN ever leaves omniembed: audio (a float WAV, an array) and image arrays holding NaN or infinity are
refused as ``input_unreadable`` where they are read, and the pipeline checks every vector it returns, so a
model that gives NaN for one item fails that item alone (``embedding_not_finite``) and never answers a NaN.
Issue 25, defect 4: a float WAV with NaN samples gave sfx-cnn vectors of NaNs, and the OpenAI route
answered 200 with ``NaN`` literals (not JSON)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

import omniembed
from audio_data import tone
from omniembed.contract import LoadedModel, Options, Prepared
from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality
from omniembed.errors import EmbeddingNotFinite, InputUnreadable, OmniEmbedError, status_map
from omniembed.inputs.image import ImagePreparer, ImagePreprocess
from omniembed.pipeline import run
from omniembed.registry import ModelSpec, WeightsSource
from service_util import Server, wait_for_job

RATE = 22050
BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def _wav(value: float | None, *, at: int = 2205, subtype: str = "FLOAT") -> bytes:
    """One second of a tone as a WAV file (32-bit float samples unless ``subtype``), sample ``at`` set to
    ``value`` (None: left as it is)."""
    samples = tone(1.0, RATE, 440.0)
    if value is not None:
        samples[at] = value
    out = io.BytesIO()
    sf.write(out, samples, RATE, format="WAV", subtype=subtype)
    return out.getvalue()


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON."""

    def refuse(literal: str) -> Any:
        raise AssertionError(f"the body holds {literal}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


# -- audio: refused where it is read -------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BAD))
def test_a_float_wav_with_non_finite_samples_is_input_unreadable(settings: omniembed.Settings, kind: str) -> None:
    engine = omniembed.Engine(settings)
    good, bad = _wav(None), _wav(BAD[kind])
    assert np.isfinite(sf.read(io.BytesIO(good))[0]).all() and not np.isfinite(sf.read(io.BytesIO(bad))[0]).all()
    want = engine.embed("sfx-cnn", audio=good)
    assert np.isfinite(want.vector).all()

    with pytest.raises(InputUnreadable) as raised:  # one item: raised
        engine.embed("sfx-cnn", audio=bad)
    error = raised.value
    assert error.code == "input_unreadable" and error.param == "audio" and error.status == 400
    assert "1 NaN or infinite samples" in error.message and "0.100 s" in error.message  # sample 2205 at 22,050 Hz
    assert "Error" not in error.message and "/" not in error.message  # no class name, no path

    with pytest.raises(InputUnreadable) as raised:  # a batch, errors="raise": the first bad item, by its index
        engine.embed_batch("sfx-cnn", audios=[good, good, bad, good])
    assert raised.value.index == 2 and "NaN or infinite" in raised.value.message

    out = engine.embed_batch("sfx-cnn", audios=[good, bad, good, (np.full(RATE, BAD[kind], np.float32), RATE)],
                             errors="return")
    assert [type(r).__name__ for r in out] == ["Embedding", "InputUnreadable", "Embedding", "InputUnreadable"]
    assert [r.index for r in out if isinstance(r, OmniEmbedError)] == [1, 3]
    assert "22,050 NaN or infinite samples (the first at 0.000 s)" in out[3].message
    for r in (out[0], out[2]):  # the others are embedded as if alone
        assert isinstance(r, Embedding)
        np.testing.assert_allclose(r.vector, want.vector, atol=1e-5)
        np.testing.assert_allclose(r.data, want.data, atol=1e-5)


def test_a_stereo_file_with_one_bad_channel_names_the_frames(settings: omniembed.Settings, tmp_path: Path) -> None:
    stereo = np.stack([tone(1.0, RATE, 440.0), tone(1.0, RATE, 660.0)], axis=1)
    stereo[[11025, 11026, 20000], 1] = np.inf
    path = tmp_path / "two.wav"
    sf.write(path, stereo, RATE, format="WAV", subtype="FLOAT")
    out = omniembed.Engine(settings).embed_batch("sfx-cnn", audios=[str(path)], errors="return")
    error = out[0]
    assert isinstance(error, InputUnreadable) and error.index == 0
    assert "the audio file two.wav holds 3 NaN or infinite samples (the first at 0.500 s)" in error.message
    assert str(tmp_path) not in error.message


# -- image arrays ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BAD))
def test_an_image_array_with_non_finite_pixels_is_input_unreadable(kind: str) -> None:
    good = np.full((32, 32, 3), 0.5, np.float32)
    bad = good.copy()
    bad[3, 4, 1] = BAD[kind]
    out = ImagePreparer(ImagePreprocess(), omniembed.Settings()).prepare([good, bad], Options())
    assert isinstance(out[0], Prepared)
    error = out[1]
    assert isinstance(error, InputUnreadable) and error.index == 1 and error.param == "image"
    assert "NaN or infinite" in error.message


def test_a_float_tiff_with_non_finite_pixels_is_input_unreadable() -> None:
    from PIL import Image

    pixels = np.full((16, 16), 0.25, np.float32)
    files = []
    for value in (None, *BAD.values()):
        if value is not None:
            pixels[2, 3] = value
        out = io.BytesIO()
        Image.fromarray(pixels, "F").save(out, format="TIFF")
        files.append(out.getvalue())
    prepared = ImagePreparer(ImagePreprocess(), omniembed.Settings()).prepare(files, Options())
    assert isinstance(prepared[0], Prepared)
    for i, error in enumerate(prepared[1:], 1):
        assert isinstance(error, InputUnreadable) and error.index == i and "NaN or infinite" in error.message


# -- the server: a 4xx JSON error, never a body with NaN ------------------------------------------------------


def test_the_server_refuses_non_finite_audio_with_json(tmp_path: Path, cache_dir: Path) -> None:
    server = Server(tmp_path / "data", cache_dir, OMNIEMBED_SERVE_MODELS="sfx-cnn").start()
    try:
        def post(*wavs: bytes) -> httpx.Response:
            urls = ["data:audio/wav;base64," + base64.b64encode(w).decode() for w in wavs]
            return httpx.post(f"{server.url}/v1/embeddings", timeout=120,
                              json={"model": "sfx-cnn", "modality": "audio", "input": urls})

        ok = post(_wav(None))
        assert ok.status_code == 200, ok.text
        vector = _strict_json(ok.text)["data"][0]["embedding"]
        assert len(vector) > 100 and all(np.isfinite(vector))
        for kind, value in BAD.items():
            for body in ((_wav(value),), (_wav(None), _wav(value))):
                r = post(*body)
                assert 400 <= r.status_code < 500, (kind, r.status_code, r.text[:300])
                assert r.headers["content-type"].startswith("application/json")
                answer = _strict_json(r.text)
                error = answer["error"]
                assert error["code"] == "input_unreadable", answer
                assert "NaN or infinite samples" in error["message"]
                assert f"input[{len(body) - 1}]" in json.dumps(answer), answer  # the bad item is named
            # TwelveLabs' face (it answered 500): a 400 in its own error shape
            r = httpx.post(f"{server.url}/v1.3/embed", timeout=120, data={"model_name": "sfx-cnn"},
                           files={"audio_file": ("clip.wav", _wav(value), "audio/wav")})
            assert r.status_code == 400, (kind, r.status_code, r.text[:300])
            answer = _strict_json(r.text)
            assert answer["code"] == "input_unreadable" and "NaN or infinite samples" in answer["message"], answer
            # a durable job (it stored nulls): failed, with the code and the reason
            data_url = "data:audio/wav;base64," + base64.b64encode(_wav(value)).decode()
            r = httpx.post(f"{server.url}/api/tasks/audio-embedding/sfx-cnn/jobs", json={"audio": data_url})
            assert r.status_code in (200, 201, 202), r.text[:300]
            job = wait_for_job(f"{server.url}/api/tasks/audio-embedding/jobs/{r.json()['id']}", timeout=120)
            assert job["status"] == "failed" and job["code"] == "input_unreadable", job
            assert "NaN or infinite samples" in job["reason"]
        good = httpx.post(f"{server.url}/v1.3/embed", timeout=120, data={"model_name": "sfx-cnn"},
                          files={"audio_file": ("clip.wav", _wav(None), "audio/wav")})
        assert good.status_code == 200, good.text[:300]
        assert np.isfinite(_strict_json(good.text)["audio_embedding"]["segments"][0]["float"]).all()
    finally:
        server.stop()


# -- the pipeline's last guard -----------------------------------------------------------------------------


class _Preparer:
    """Items are numbers; the row of x is [x, 2x]. A ``grid`` preparer finishes each item itself into a
    2 x 2 x 2 grid holding NaN (no data) and the row as its pooled vector."""

    def __init__(self, grid: bool = False) -> None:
        if grid:
            self.finish = self._grid

    def contract(self, options: Options) -> str:
        return "toy"

    def prepare(self, items: Sequence[Any], options: Options) -> list[Any]:
        return [Prepared({"x": np.array([float(x), 2.0 * float(x)], np.float32)}, 1,
                         InputInfo(kind="text", description=str(x))) for x in items]

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        return {"x": np.stack([p.features["x"] for p in batch])}

    @staticmethod
    def _grid(rows: Sequence[Prepared], outputs: Sequence[np.ndarray], meta: EmbeddingMeta) -> Embedding:
        grid = np.full((2, 2, 2), np.nan, np.float32)
        grid[:, 0, 0] = outputs[0]
        return Embedding(grid, meta, pooled=np.asarray(outputs[0], np.float32))


class _Encoder:
    """The rows as they are, except that a row whose x is in ``poison`` comes out as that value (NaN, inf):
    a model whose numbers blow up on one input."""

    runtime = "torch"
    device = "cpu"

    def __init__(self, poison: Mapping[float, float]) -> None:
        self.poison = poison

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = feeds["x"].copy()
        for x, value in self.poison.items():
            out[out[:, 0] == x, 1] = value
        return out


def _toy(encoder: _Encoder, grid: bool = False) -> LoadedModel:
    spec = ModelSpec("toy", "", (Modality.TEXT,), 2, "mean", False, WeightsSource(), "")
    return LoadedModel(spec, "v1", {Modality.TEXT: _Preparer(grid)}, {Modality.TEXT: encoder}, "torch", "cpu")


@pytest.mark.parametrize("kind", list(BAD))
def test_a_non_finite_vector_fails_its_item_alone(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    items = [1, 2, 3, 4, 5, 6, 7, 8]
    model = _toy(_Encoder({6: BAD[kind], 3: 1e38}))  # 1e38 is finite: kept
    out = run(model, Modality.TEXT, items, Options(batch_size=4), errors="return")
    assert [type(r).__name__ for r in out] == ["Embedding"] * 5 + ["EmbeddingNotFinite"] + ["Embedding"] * 2
    error = out[5]
    assert isinstance(error, EmbeddingNotFinite) and error.index == 5 and error.model == "toy"
    assert error.code == "embedding_not_finite" and status_map()["embedding_not_finite"] == 500
    assert "NaN or infinite" in error.message and "item" not in error.message
    assert "gave NaN or infinite values for item 5" in caplog.text
    for x, r in zip(items, out, strict=True):
        if isinstance(r, Embedding):
            np.testing.assert_array_equal(r.data, np.array([x, 1e38 if x == 3 else 2 * x], np.float32))
    with pytest.raises(EmbeddingNotFinite) as raised:
        run(model, Modality.TEXT, items, Options(batch_size=4), errors="raise")
    assert raised.value.index == 5


def test_a_grid_may_hold_no_data_but_its_vector_is_checked() -> None:
    out = run(_toy(_Encoder({2: np.nan}), grid=True), Modality.TEXT, [1, 2, 3], Options(), errors="return")
    assert isinstance(out[0], Embedding) and isinstance(out[2], Embedding)
    assert np.isnan(out[0].data).sum() == 6 and np.isfinite(out[0].vector).all()  # NaN cells: no data
    assert isinstance(out[1], EmbeddingNotFinite) and out[1].index == 1
