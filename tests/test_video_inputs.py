"""Video inputs: clip plans, frame sampling, every source kind, the guarded fetcher, the audio track,
and a coded error (never a crash) for each kind of bad video. Real videos made with PyAV (video_data.py)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import numpy as np
import pytest

import omniembed
from audio_data import have_espeak
from conftest import LoopbackServer
from omniembed import InputTooLarge, InputUnreadable, Modality, OmniEmbedError, ParameterInvalid
from omniembed.inputs.video import VideoReader, extract_audio
from omniembed.inputs.video_clips import plan_clips
from video_data import FIRST, SECOND, VideoFiles, still

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed")


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> VideoFiles:
    return VideoFiles.for_session(tmp_path_factory)


def _spans(clips: list) -> list[tuple[float, float]]:  # type: ignore[type-arg]
    return [(c.start_sec, c.end_sec) for c in clips]


def test_clip_plans_are_exact() -> None:
    assert _spans(plan_clips(12.0, 1.0, 6.0)) == [(0.0, 6.0), (6.0, 12.0)]
    assert _spans(plan_clips(12.0, 1.0, 5.0)) == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert _spans(plan_clips(12.0, 1.0, 4.0, 1.5, 10.0)) == [(1.5, 5.5), (5.5, 9.5), (9.5, 10.0)]
    assert _spans(plan_clips(12.0, 1.0, 6.0, 0.0, 99.0)) == [(0.0, 6.0), (6.0, 12.0)]  # end clamped to the video
    clips = plan_clips(12.0, 2.0, 4.0, 1.5, 10.0)
    assert clips[0].times == (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)  # every 1/fps from the clip's start
    assert clips[-1].times == (9.5,)  # a short clip still has its first frame
    assert plan_clips(12.0, 1.0, 0.25)[1].times == (0.25,)  # clips shorter than a frame step: one frame each
    with pytest.raises(ParameterInvalid, match="past the end") as info:
        plan_clips(12.0, 1.0, 6.0, 12.0)
    assert info.value.param == "start_offset_sec"
    with pytest.raises(ParameterInvalid) as info:
        plan_clips(12.0, 1.0, 6.0, 5.0, 5.0)
    assert info.value.param == "end_offset_sec"


def test_too_many_clips_are_refused_before_any_is_made(videos: VideoFiles, engine: omniembed.Engine) -> None:
    assert len(plan_clips(12.0, 1.0, 6.0, max_clips=2)) == 2
    for segment in (1.0, 1e-300):  # 12 clips; and 1.2e301 (this used to loop until memory ran out)
        with pytest.raises(ParameterInvalid, match="OMNIEMBED_MAX_SEGMENTS") as info:
            plan_clips(12.0, 1.0, segment, max_clips=10)
        assert info.value.param == "segment_sec"
    with pytest.raises(ParameterInvalid, match=r"into 1\.2e\+301 clips") as info:
        engine.embed("efficientnet-lite0", video=videos.halves(), segment_sec=1e-300)
    assert info.value.param == "segment_sec"


def test_the_frame_sampled_is_the_one_on_screen(videos: VideoFiles, settings: omniembed.Settings) -> None:
    first, second = still(FIRST).astype(float), still(SECOND).astype(float)
    with VideoReader(videos.halves(), settings) as reader:
        info = reader.info
        got = [(t, np.asarray(image, float)) for t, image in reader.frames([0.0, 5.99, 6.0, 11.9, 30.0])]
    assert (info.width, info.height, info.duration_sec, info.frame_rate, info.has_audio) == (320, 240, 12.0, 4.0, True)
    assert [t for t, _ in got] == [0.0, 5.99, 6.0, 11.9, 30.0]
    shows_first = [np.abs(a - first).mean() < np.abs(a - second).mean() for _, a in got]
    assert shows_first == [True, True, False, False, False]  # the switch is at the frame at 6.0 s exactly
    assert all(min(np.abs(a - first).mean(), np.abs(a - second).mean()) < 8 for _, a in got)  # H.264 is close
    with VideoReader(videos.portrait(), settings) as reader:  # stored sideways, shown upright
        upright = np.asarray(next(iter(reader.frames([0.0])))[1])
    assert upright.shape == (64, 32, 3) and upright[:6].mean() > 200 and upright[10:].mean() < 50
    with VideoReader(videos.halves(), settings) as reader:  # a video that declares no duration: found by decoding
        assert reader.last_time() == 12.0
        assert len(list(reader.frames([0.0, 11.75]))) == 2  # and the reader can still sample afterwards


def test_every_source_kind_gives_the_same_frames(
    videos: VideoFiles, settings: omniembed.Settings, http_server: LoopbackServer
) -> None:
    path = videos.halves()
    data = path.read_bytes()
    http_server.routes["/v.mp4"] = (200, {"Content-Type": "video/mp4"}, data)
    url = http_server.url("/v.mp4")
    private_ok = settings.model_copy(update={"allow_private_urls": True})
    data_url = "data:video/mp4;base64," + base64.b64encode(data).decode()
    frames = []
    for source in (path, str(path), data, url, data_url):
        with VideoReader(source, private_ok) as reader:
            frames.append(np.stack([np.asarray(image) for _, image in reader.frames([1.0, 7.0])]))
    for other in frames[1:]:
        np.testing.assert_array_equal(other, frames[0])
    with pytest.raises(ParameterInvalid, match="loopback"):  # the guarded fetcher, by default
        VideoReader(url, settings)
    assert http_server.hits == ["/v.mp4"]  # fetched once (allowed), never when refused
    with pytest.raises(ParameterInvalid, match="paths are not accepted"):
        VideoReader(str(path), settings, allow_paths=False)
    with pytest.raises(InputUnreadable, match="not a video"):
        VideoReader("data:text/plain;base64,aGVsbG8=", settings)


def test_bad_videos_get_their_codes(
    videos: VideoFiles, engine: omniembed.Engine, settings: omniembed.Settings
) -> None:
    items = [
        videos.truncated(), videos.truncated_streamable(), videos.not_video(), videos.audio_only(),
        videos.zero_frames(), videos.resolution_bomb(), videos.ten_hours(), b"", videos.halves(),
    ]
    done: list[int] = []
    out = engine.embed_batch("efficientnet-lite0", videos=items, errors="return", runtime="torch",
                             progress=done.append)
    assert sum(done) == len(items)  # every video reported once, failed or embedded
    expected = [InputUnreadable] * 5 + [InputTooLarge, InputTooLarge, InputUnreadable, omniembed.Embedding]
    assert [type(r) for r in out] == expected
    for i, result in enumerate(out[:-1]):
        assert isinstance(result, OmniEmbedError) and result.index == i
        assert "item" not in result.message and "videos[" not in result.message  # the position is a field
    messages = [r.message for r in out[:-1]]  # type: ignore[union-attr]
    assert "cannot be opened as a video" in messages[0] and "truncated" in messages[0]
    assert "truncated" in messages[1]
    assert "cannot be opened as a video" in messages[2]
    assert "no video stream" in messages[3]
    assert "no video frames" in messages[4]
    assert "16000x16000" in messages[5] and "OMNIEMBED_MAX_VIDEO_PIXELS" in messages[5]
    assert "36,001.0 s" in messages[6] and "OMNIEMBED_MAX_VIDEO_SECONDS" in messages[6]
    assert "0 bytes" in messages[7]
    assert out[-1].meta.segments[-1].end_sec == 12.0  # type: ignore[union-attr]
    with pytest.raises(InputUnreadable) as raised:  # errors="raise": the first bad video, with its index
        engine.embed_batch("efficientnet-lite0", videos=[videos.halves(), videos.not_video(), videos.halves()],
                           runtime="torch")
    assert raised.value.index == 1
    # and the decoding ahead stops with the call: no thread of the pipeline's is left running
    assert not any(t.name.startswith("omniembed-prepare") for t in threading.enumerate())


def test_limits_come_from_settings(videos: VideoFiles, settings: omniembed.Settings) -> None:
    path = videos.halves()
    small = settings.model_copy(update={"max_video_bytes": 1000, "max_video_pixels": 320 * 239,
                                        "max_video_seconds": 11.0})
    with pytest.raises(InputTooLarge, match="OMNIEMBED_MAX_VIDEO_BYTES"):
        VideoReader(path, small)
    with pytest.raises(InputTooLarge, match="OMNIEMBED_MAX_VIDEO_PIXELS"):
        VideoReader(path, small.model_copy(update={"max_video_bytes": 10**9}))
    with pytest.raises(InputTooLarge, match="OMNIEMBED_MAX_VIDEO_SECONDS"):
        VideoReader(path, small.model_copy(update={"max_video_bytes": 10**9, "max_video_pixels": 10**9}))


def test_audio_track(videos: VideoFiles, settings: omniembed.Settings, engine: omniembed.Engine) -> None:
    import soundfile as sf

    track = extract_audio(videos.halves(), settings)
    assert track.sample_rate == 16000 and track.samples.dtype == np.float32 and track.samples.ndim == 1
    assert len(track.samples) == 12 * 16000  # cut where the pictures end (AAC pads its last frame)
    rms = [float(np.sqrt(np.mean(h**2))) for h in np.split(track.samples, 2)]
    assert min(rms) > 0.01  # speech in both halves
    speech, rate = sf.read(videos.root / "speech0.wav", dtype="float32")
    assert abs(rms[0] - float(np.sqrt(np.mean(speech**2))) * len(speech) / rate / 6) < 0.5 * rms[0]
    assert len(extract_audio(videos.halves(), settings, sample_rate=8000, end_sec=3.0).samples) == 3 * 8000
    with pytest.raises(InputUnreadable, match="no audio stream"):
        extract_audio(videos.silent(), settings)
    # the "audio" option: the track's segments under an audio model, offsets exact
    result = engine.embed("sfx-cnn", video=videos.halves(), embedding_option="audio", segment_sec=2.5,
                          start_offset_sec=1.0, end_offset_sec=7.0, runtime="torch")
    assert [(s.start_sec, s.end_sec) for s in result.meta.segments] == [(1.0, 3.5), (3.5, 6.0), (6.0, 7.0)]
    assert result.meta.modality == "video" and result.meta["embedding_option"] == "audio"
    rate = engine.load("sfx-cnn", runtime="torch").preparers[Modality.AUDIO].frontend.sample_rate  # type: ignore[attr-defined]
    at_rate = extract_audio(videos.halves(), settings, sample_rate=rate)  # the option extracts at the model's rate
    cut = (at_rate.samples[: 7 * rate], rate)  # the same track, cut at end_offset_sec by hand
    direct = engine.embed("sfx-cnn", audio=cut, segment_sec=2.5, start_offset_sec=1.0, runtime="torch")
    np.testing.assert_allclose(result.data, direct.data, atol=1e-5)
    np.testing.assert_allclose(result.vector, direct.vector, atol=1e-5)
    with pytest.raises(ParameterInvalid, match="does not embed audio"):
        engine.embed("efficientnet-lite0", video=videos.halves(), embedding_option="audio")
    with pytest.raises(InputUnreadable, match="no audio stream"):
        engine.embed("sfx-cnn", video=videos.silent(), embedding_option="audio", runtime="torch")


def test_options_are_checked(videos: VideoFiles, engine: omniembed.Engine) -> None:
    path: Path = videos.halves()
    for kwargs, param in (
        ({"end_offset_sec": 0.0}, "end_offset_sec"), ({"overlap_sec": 1.0}, "overlap_sec"),
        ({"segment_sec": 0}, "segment_sec"), ({"embedding_option": "smell"}, "embedding_option"),
    ):
        with pytest.raises(ParameterInvalid) as info:
            engine.embed("efficientnet-lite0", video=path, runtime="torch", **kwargs)  # type: ignore[arg-type]
        assert info.value.param == param
    with pytest.raises(ParameterInvalid, match="applies to videos") as info:
        engine.embed("efficientnet-lite0", image=np.zeros((8, 8, 3), np.uint8), end_offset_sec=3.0)
    assert info.value.param == "end_offset_sec"
    with pytest.raises(ParameterInvalid, match="past the end") as past:
        engine.embed("efficientnet-lite0", video=path, start_offset_sec=12.0, runtime="torch")
    assert past.value.index is None  # one input: no position to name
