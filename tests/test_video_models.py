"""Video embeddings end to end: a tiny random CLIP (saved with ``save_pretrained``, loaded through the real
folder path) against frames decoded with PyAV and embedded with ``transformers`` in the test; exact clip
boundaries and offsets; EfficientNet-Lite0 (real weights) telling the two halves of a video apart; the CLI."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import omniembed
from audio_data import have_espeak
from conftest import cosines
from image_data import save_tiny_clip
from omniembed.cli import app
from video_data import FIRST, SECOND, VideoFiles, still

pytestmark = [pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed"),
              pytest.mark.filterwarnings("ignore::UserWarning")]
runner = CliRunner()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> VideoFiles:
    return VideoFiles.for_session(tmp_path_factory)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip")


def _on_screen(path: Path, times: list[float]) -> list[object]:
    """The reference's own decoding: every frame with PyAV, then for each time the last frame at or before it."""
    import av

    with av.open(str(path)) as container:
        decoded = [(float(f.time), f.to_image()) for f in container.decode(video=0)]
    return [[image for t0, image in decoded if t0 <= t + 1e-9][-1] for t in times]


def test_clip_vectors_equal_pooled_transformers_frames(
    videos: VideoFiles, clip_dir: Path, engine: omniembed.Engine
) -> None:
    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    path = videos.halves()
    # clips of 4 s from 1 s to 11 s: [1, 5) shows only the first photo, [5, 9) both, [9, 11) only the second
    result = engine.embed(str(clip_dir), video=path, segment_sec=4, start_offset_sec=1, end_offset_sec=11,
                          runtime="torch")
    spans = [(1.0, 5.0), (5.0, 9.0), (9.0, 11.0)]
    assert [(s.start_sec, s.end_sec) for s in result.meta.segments] == spans
    times = [[float(t) for t in np.arange(start, end, 1.0)] for start, end in spans]  # 1 fps from each clip's start
    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    with torch.no_grad():
        frames = _on_screen(path, [t for clip in times for t in clip])
        pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
        out = model.get_image_features(pixel_values=pixels)
        features = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    features /= np.linalg.norm(features, axis=1, keepdims=True)  # the model's image embeddings (unit length)
    bounds = np.cumsum([0] + [len(c) for c in times])
    expected = np.stack([features[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    assert result.data.shape == (3, model.config.projection_dim)
    assert cosines(result.data, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(result.data, axis=1), 1, atol=1e-5)  # mean, then the model's normalisation
    assert float(cosines(result.vector, features.mean(axis=0))) >= 0.9999  # the video scope: all its frames
    assert float(cosines(expected[0], expected[2])) < 0.999  # the comparison can tell the photos apart
    assert result.meta.modality == "video" and result.meta.input.length == len(features)
    # the frames went through the model's own image path: a frame's vector is its image embedding
    image = engine.embed(str(clip_dir), image=frames[0], runtime="torch")
    assert float(cosines(image.data, features[0])) >= 0.9999
    # the module-level function gives the same
    again = omniembed.embed_batch(
        str(clip_dir), videos=[path], segment_sec=4, start_offset_sec=1, end_offset_sec=11, runtime="torch"
    )[0]
    np.testing.assert_allclose(again.data, result.data, atol=1e-6)


def test_default_clips_and_efficientnet_tells_the_halves_apart(videos: VideoFiles, engine: omniembed.Engine) -> None:
    result = omniembed.Engine(engine.settings).embed("efficientnet-lite0", video=videos.halves(), runtime="torch")
    assert [(s.start_sec, s.end_sec) for s in result.meta.segments] == [(0.0, 6.0), (6.0, 12.0)]  # 6 s by default
    first, second = engine.embed_batch("efficientnet-lite0", images=[still(FIRST), still(SECOND)], runtime="torch")
    to_first, to_second = cosines(result.data, first.data), cosines(result.data, second.data)
    assert to_first[0] > to_first[1] and to_second[1] > to_second[0]
    assert to_first[0] > 0.9 and to_second[1] > 0.9
    np.testing.assert_allclose(result.vector, result.data.mean(axis=0), rtol=1e-5, atol=1e-5)  # equal clips


def test_an_mpegts_video_whose_timestamps_start_late(engine: omniembed.Engine, clip_dir: Path, tmp_path: Path) -> None:
    from video_data import _write

    # MPEG-TS timestamps start at 0.25 s here: times count from the video stream's start; the last clip is short
    ts = _write(tmp_path / "a.ts", [(i, still(FIRST)) for i in range(10)], Fraction(4), codec="mpeg2video",
                container_format="mpegts")
    result = engine.embed(str(clip_dir), video=ts, segment_sec=2, runtime="torch")
    assert [(s.start_sec, s.end_sec) for s in result.meta.segments] == [(0.0, 2.0), (2.0, 2.5)]


def test_cli_video_and_a_folder_of_videos(videos: VideoFiles, clip_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["embed", str(clip_dir), "--video", str(videos.halves()), "--runtime", "torch",
                                 "--segment-sec", "4", "--end-offset-sec", "10"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["meta"]["modality"] == "video" and len(shown["embedding"]) == 3 and len(shown["pooled"]) == 24
    assert [(s["start_sec"], s["end_sec"]) for s in shown["meta"]["segments"]] == [(0, 4), (4, 8), (8, 10)]
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(videos.halves().read_bytes())
    (folder / "sub" / "b.mkv").write_bytes(videos.ten_hours().read_bytes())
    (folder / "c.mp4").write_bytes(videos.not_video())
    out = tmp_path / "videos.parquet"
    result = runner.invoke(app, ["embed", str(clip_dir), "-i", str(folder), "-o", str(out), "--runtime", "torch"])
    assert result.exit_code == 0, result.stderr
    assert "c.mp4" in result.stderr and "sub/b.mkv" in result.stderr and "input_too_large" in result.stderr
    table = pq.read_table(out).to_pydict()
    assert table["path"] == ["a.mp4"] * 3 and table["scope"] == ["clip", "clip", "video"]
    assert table["start_sec"] == [0.0, 6.0, 0.0] and table["end_sec"] == [6.0, 12.0, 12.0]
    assert json.loads(pq.read_schema(out).metadata[b"omniembed"])["model"] == str(clip_dir)
    vectors = np.array(table["embedding"])
    assert vectors.shape == (3, 24) and float(cosines(vectors[0], vectors[1])) < 0.999  # the clips differ


def test_decoding_overlaps_encoding_and_stays_bounded(
    videos: VideoFiles, clip_dir: Path, engine: omniembed.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While the first batch of frames is being encoded, the decoding thread goes on sampling frames (overlap),
    but only a bounded number ahead: a 90 s video is never decoded whole before encoding starts."""
    import threading
    import time

    from omniembed.embedding import Modality
    from omniembed.inputs import video as video_inputs
    from video_data import _write

    small = np.zeros((48, 64, 3), np.uint8)
    long_video = _write(tmp_path / "long.mp4", [(i, small + i) for i in range(90)], Fraction(1), codec="mpeg4")
    sampled: list[float] = []
    original = video_inputs.VideoReader.frames

    def counting(self: video_inputs.VideoReader, times: list[float]):  # type: ignore[no-untyped-def]
        for pair in original(self, times):
            sampled.append(pair[0])
            yield pair

    monkeypatch.setattr(video_inputs.VideoReader, "frames", counting)
    loaded = engine.load(str(clip_dir), runtime="torch")
    inner = loaded.encoders[Modality.IMAGE]
    at_first_call: list[int] = []
    progressed = threading.Event()

    class Waiting:
        """The image encoder, except that its first call waits until the decoder stops getting further."""

        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
            if not at_first_call:
                last, deadline = -1, time.monotonic() + 10
                while time.monotonic() < deadline and len(sampled) != last:
                    last = len(sampled)
                    time.sleep(0.3)
                at_first_call.append(len(sampled))
                progressed.set()
            out: np.ndarray = inner(feeds)
            return out

    monkeypatch.setitem(loaded.encoders, Modality.IMAGE, Waiting())
    result = engine.embed(str(clip_dir), video=long_video, batch_size=4, segment_sec=6, runtime="torch")
    assert progressed.is_set() and len(result.meta.segments) == 15 and len(sampled) == 90
    # decoded ahead of the encoder (overlap), but not the whole video: the batch being encoded, the next one made
    # on the pipeline's thread, and the rest of the group of 8 frames that the reader decoded last (8 here)
    assert 4 < at_first_call[0] <= 40


class _Counting:
    """An encoder that records the rows of each call and passes them on to the real one."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.calls.append(len(feeds["pixel_values"]))
        out: np.ndarray = self.inner(feeds)  # type: ignore[operator]
        return out


def test_encoder_batches_cross_clips_and_videos(
    videos: VideoFiles, clip_dir: Path, engine: omniembed.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video's frames are rows of the pipeline: encoder batches are cut across its clips and across videos,
    not per clip or per video, and the vectors are the same as when each video is embedded alone."""
    from omniembed.embedding import Modality

    path = videos.halves()  # 12 s; at 1 fps and 5 s clips: 5 + 5 + 2 frames
    alone = engine.embed(str(clip_dir), video=path, segment_sec=5, runtime="torch")
    loaded = engine.load(str(clip_dir), runtime="torch")
    counting = _Counting(loaded.encoders[Modality.IMAGE])
    monkeypatch.setitem(loaded.encoders, Modality.IMAGE, counting)
    one = engine.embed(str(clip_dir), video=path, segment_sec=5, batch_size=4, runtime="torch")
    assert counting.calls == [4, 4, 4]  # [clip 0 x4] [clip 0, clip 1 x3] [clip 1 x2, clip 2 x2]
    assert [(s.start_sec, s.end_sec) for s in one.meta.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    counting.calls.clear()
    done: list[int] = []
    two = engine.embed_batch(str(clip_dir), videos=[path, path], segment_sec=5, batch_size=5, runtime="torch",
                             progress=done.append)
    assert counting.calls == [5, 5, 5, 5, 4]  # the third call holds the end of one video and the start of the other
    assert sum(done) == 2
    for result in (one, *two):
        np.testing.assert_allclose(result.data, alone.data, atol=1e-6)
        np.testing.assert_allclose(result.vector, alone.vector, atol=1e-6)
        assert result.meta.input.length == 12


def test_a_video_that_fails_mid_stream_fails_alone(
    videos: VideoFiles, clip_dir: Path, engine: omniembed.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video whose frames stop early (its header promises 12 s, the frames end at 5.25 s) fails after its
    first frames were encoded; the videos around it are embedded as when alone, and it alone gets the error."""
    from omniembed import InputUnreadable
    from omniembed.embedding import Modality

    good = engine.embed(str(clip_dir), video=videos.halves(), runtime="torch")
    loaded = engine.load(str(clip_dir), runtime="torch")
    counting = _Counting(loaded.encoders[Modality.IMAGE])
    monkeypatch.setitem(loaded.encoders, Modality.IMAGE, counting)
    items = [videos.truncated_streamable(), videos.halves(), videos.truncated_streamable(), videos.halves()]
    done: list[int] = []
    out = engine.embed_batch(str(clip_dir), videos=items, batch_size=4, errors="return", runtime="torch",
                             progress=done.append)
    assert [type(r) for r in out] == [InputUnreadable, omniembed.Embedding, InputUnreadable, omniembed.Embedding]
    assert [r.index for r in out if isinstance(r, InputUnreadable)] == [0, 2]
    assert "truncated" in out[0].message  # type: ignore[union-attr]
    assert sum(counting.calls) > 2 * 12  # the bad videos' first frames were encoded before they failed
    assert sum(done) == len(items)  # one report per video, failed or embedded
    for result in out[1::2]:
        np.testing.assert_allclose(result.data, good.data, atol=1e-6)  # type: ignore[union-attr]
        np.testing.assert_allclose(result.vector, good.vector, atol=1e-6)  # type: ignore[union-attr]
    with pytest.raises(InputUnreadable) as raised:  # errors="raise": the failing video, by its position
        engine.embed_batch(str(clip_dir), videos=items[1:], batch_size=4, runtime="torch")
    assert raised.value.index == 1


def test_lazy_rows_of_any_preparer_stream_through_the_pipeline() -> None:
    """The contract the video preparer relies on, with a toy preparer: an item given as an iterator of rows is
    read as the encoder goes, batches are cut across items, and an unexpected error while an item's rows are
    made fails that item only (an InternalError with its index) in both error modes."""
    from collections.abc import Iterator, Sequence
    from typing import Any

    from omniembed import InternalError
    from omniembed.contract import LoadedModel, Options, Prepared
    from omniembed.embedding import InputInfo, Modality, Segment
    from omniembed.pipeline import run
    from omniembed.registry import ModelSpec, WeightsSource

    made: list[int] = []

    class Lazy:
        """Item n: n rows, row k holding [n, k]; item 7 breaks after its third row."""

        streaming = True

        def contract(self, options: Options) -> str:
            return "toy"

        def rows(self, n: int) -> Iterator[Prepared]:
            for k in range(n):
                if n == 7 and k == 3:
                    raise RuntimeError("the source went away")
                made.append(n)
                yield Prepared({"x": np.array([n, k], np.float32)}, 1, InputInfo("text", str(n)),
                               segment=Segment(float(k), float(k + 1)))

        def prepare(self, items: Sequence[Any], options: Options) -> list[Any]:
            return [self.rows(n) for n in items]

        def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
            return {"x": np.stack([p.features["x"] for p in batch])}

    calls: list[list[tuple[int, int]]] = []

    def encoder(feeds: dict[str, np.ndarray]) -> np.ndarray:
        calls.append([(int(a), int(b)) for a, b in feeds["x"]])
        return feeds["x"]

    spec = ModelSpec("toy", "", (Modality.TEXT,), 2, "mean", False, WeightsSource(), "")
    model = LoadedModel(spec, "v1", {Modality.TEXT: Lazy()}, {Modality.TEXT: encoder}, "torch", "cpu")  # type: ignore[dict-item]
    done: list[int] = []
    out = run(model, Modality.TEXT, [3, 7, 2, 5], Options(batch_size=4), errors="return", progress=done.append)
    assert [type(r).__name__ for r in out] == ["Embedding", "InternalError", "Embedding", "Embedding"]
    assert isinstance(out[1], InternalError) and out[1].index == 1
    assert sum(done) == 4
    for n, result in zip([3, 2, 5], [out[0], out[2], out[3]], strict=True):
        assert isinstance(result, omniembed.Embedding)
        np.testing.assert_array_equal(result.data, [[n, k] for k in range(n)])  # rows in order, one per segment
        assert [s.start_sec for s in result.meta.segments] == list(range(n))
    assert all(len(c) == 4 for c in calls[:-1])  # full batches across items ...
    assert any(len({n for n, _ in c}) > 1 for c in calls)  # ... holding rows of several items
    assert sorted(made) == sorted([3] * 3 + [7] * 3 + [2] * 2 + [5] * 5)  # every row made once, lazily
    with pytest.raises(InternalError) as raised:
        run(model, Modality.TEXT, [3, 7, 2], Options(batch_size=4))
    assert raised.value.index == 1
