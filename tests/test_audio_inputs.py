"""Audio inputs: every source kind, formats, down-mixing, resampling, limits, bad inputs, segments and offsets."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import omniembed
from audio_data import AudioFiles, noise, tone
from omniembed.errors import InputTooLarge, InputUnreadable, ParameterInvalid
from omniembed.inputs.audio import load_audio, plan_segments, resample

RATE = 22050


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> AudioFiles:
    return AudioFiles(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def torch_engine(settings: omniembed.Settings) -> omniembed.Engine:
    return omniembed.Engine(settings.model_copy(update={"runtime": "torch"}))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


# -- the loader -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_formats_decode_to_the_same_tone(files: AudioFiles, settings: omniembed.Settings, fmt: str) -> None:
    path = files.write(f"tone440.{fmt.lower()}", tone(1.0, RATE, 440.0), RATE, format=fmt)
    clip = load_audio(str(path), settings)
    assert clip.sample_rate == RATE
    assert clip.seconds == pytest.approx(1.0, abs=0.1)  # MP3 adds encoder delay/padding
    assert peak_hz(clip.samples, RATE) == pytest.approx(440.0, abs=3.0)
    if fmt in ("WAV", "FLAC"):  # lossless: the samples themselves
        np.testing.assert_allclose(clip.samples, tone(1.0, RATE, 440.0), atol=1e-4)


def test_every_source_kind_gives_the_same_samples(
    files: AudioFiles, settings: omniembed.Settings, http_server: object
) -> None:
    samples = tone(0.5, RATE, 330.0)
    path = files.write("tone330.wav", samples, RATE, subtype="FLOAT")
    data = path.read_bytes()
    http_server.routes["/a.wav"] = (200, {"Content-Type": "audio/wav"}, data)  # type: ignore[attr-defined]
    url = http_server.url("/a.wav")  # type: ignore[attr-defined]
    private_ok = settings.model_copy(update={"allow_private_urls": True})
    data_url = "data:audio/wav;base64," + base64.b64encode(data).decode()
    sources = [str(path), path, data, io.BytesIO(data), (samples, RATE), url, data_url]
    for source in sources:
        clip = load_audio(source, private_ok)
        assert clip.sample_rate == RATE
        np.testing.assert_array_equal(clip.samples, samples)
    assert load_audio(url, private_ok).description == url
    # where paths are not allowed (HTTP), bare base64 is audio too; a data URL of another type is not
    bare = base64.b64encode(data).decode()
    np.testing.assert_array_equal(load_audio(bare, private_ok, allow_paths=False).samples, samples)
    with pytest.raises(InputUnreadable, match="not audio"):
        load_audio("data:text/plain;base64," + bare, private_ok)
    with pytest.raises(InputUnreadable, match="not valid base64"):
        load_audio("data:audio/wav;base64,@@@@", private_ok)


def test_multichannel_is_mixed_down(files: AudioFiles, settings: omniembed.Settings) -> None:
    left = tone(0.5, RATE, 440.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    clip = load_audio(str(files.write("stereo.wav", stereo, RATE, subtype="FLOAT")), settings)
    np.testing.assert_allclose(clip.samples, left / 2, atol=1e-6)
    # (channels, frames) arrays are recognised too
    np.testing.assert_allclose(load_audio((stereo.T, RATE), settings).samples, left / 2, atol=1e-6)


def test_resampling_keeps_pitch_and_duration() -> None:
    out = resample(tone(1.0, RATE, 440.0), RATE, 16000)
    assert len(out) == 16000
    assert peak_hz(out, 16000) == pytest.approx(440.0, abs=2.0)
    same = tone(0.1, 16000)
    assert resample(same, 16000, 16000) is same


def test_int16_arrays_are_scaled(settings: omniembed.Settings) -> None:
    pcm = (tone(0.2, RATE) * 32767).astype(np.int16)
    clip = load_audio((pcm, RATE), settings)
    np.testing.assert_allclose(clip.samples, tone(0.2, RATE), atol=1e-4)


# -- bad inputs -------------------------------------------------------------------------------------
def test_bad_inputs_are_reported_in_place(
    files: AudioFiles, torch_engine: omniembed.Engine, http_server: object
) -> None:
    http_server.routes["/private.wav"] = (200, {}, b"RIFF")  # type: ignore[attr-defined]
    good = files.write("good.wav", tone(3.0, 16000), 16000)
    items = [
        str(files.zero_bytes()),
        str(files.header_only()),
        str(files.text_as_mp3()),
        str(files.three_hours()),
        http_server.url("/private.wav"),  # type: ignore[attr-defined]
        str(good),
        str(files.root / "missing.wav"),
        np.zeros(100, np.float32),
        (np.zeros(0, np.float32), 16000),
    ]
    out = torch_engine.embed_batch("speaker-ge2e", audios=items, errors="return")
    expected = [
        InputUnreadable, InputUnreadable, InputUnreadable, InputTooLarge, ParameterInvalid,
        omniembed.Embedding, InputUnreadable, ParameterInvalid, InputUnreadable,
    ]
    assert [type(r) for r in out] == expected
    for i, result in enumerate(out):
        if isinstance(result, omniembed.OmniEmbedError):
            assert result.index == i
            assert "audios[" not in result.message and "item" not in result.message  # the position is a field
    assert "0 bytes" in out[0].message
    assert "no audio samples" in out[1].message
    assert "10,800.0 s" in out[3].message and "OMNIEMBED_MAX_AUDIO_SECONDS" in out[3].message
    assert "loopback" in out[4].message
    assert http_server.hits == []  # type: ignore[attr-defined]


def test_byte_limit(files: AudioFiles, settings: omniembed.Settings) -> None:
    small = settings.model_copy(update={"max_audio_bytes": 1000})
    path = files.write("two-sec.wav", tone(2.0, 16000), 16000)
    with pytest.raises(InputTooLarge, match="OMNIEMBED_MAX_AUDIO_BYTES"):
        load_audio(str(path), small)
    with pytest.raises(InputTooLarge):
        load_audio(io.BytesIO(path.read_bytes()), small)


def test_paths_can_be_refused(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    path = files.write("paths.wav", tone(2.0, 16000), 16000)
    with pytest.raises(ParameterInvalid, match="file paths are not accepted"):
        torch_engine.embed("speaker-ge2e", audio=str(path), allow_paths=False)
    # the same audio as bytes is fine
    torch_engine.embed("speaker-ge2e", audio=path.read_bytes(), allow_paths=False)


# -- segments and offsets ---------------------------------------------------------------------------
def test_plan_segments() -> None:
    rate = 10
    assert plan_segments(300, rate, 12.0, 6.0, 0.0) == (120, [(120, 180), (180, 240), (240, 300)])
    assert plan_segments(100, rate, 0.0, 4.0, 1.0) == (0, [(0, 40), (30, 70), (60, 100)])
    assert plan_segments(95, rate, 0.0, 4.0, 0.0)[1][-1] == (80, 95)  # the last one is shorter
    assert plan_segments(95, rate, 2.0, None, 0.0) == (20, [])  # model windows
    assert len(plan_segments(100, rate, 0.0, 4.0, 1.0, max_segments=3)[1]) == 3  # the count is exact
    with pytest.raises(ParameterInvalid, match=r"into 4 segments.*OMNIEMBED_MAX_SEGMENTS"):
        plan_segments(100, rate, 0.0, 3.0, 0.0, max_segments=3)
    with pytest.raises(ParameterInvalid, match="into 28799 segments"):  # an hour at 16 kHz, 1/8 s apart
        plan_segments(3600 * 16000, 16000, 0.0, 0.25, 0.125, max_segments=10_000)
    for offset in (-1.0, 9.5, 20.0):
        with pytest.raises(ParameterInvalid, match="start_offset_sec"):
            plan_segments(95, rate, offset, 4.0, 0.0)
    with pytest.raises(ParameterInvalid, match="overlap_sec"):
        plan_segments(95, rate, 0.0, None, 1.0)


def test_offsets_segments_hold_the_audio_of_their_times(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    path = files.halves()  # 0-15 s tone, 15-30 s noise, 16 kHz (the model's rate: no resampling)
    samples, rate = sf.read(path, dtype="float32")
    result = torch_engine.embed("speaker-ge2e", audio=str(path), start_offset_sec=12, segment_sec=6)
    starts = [s.start_sec for s in result.meta.segments]
    assert starts == [12.0, 18.0, 24.0]
    assert [s.end_sec for s in result.meta.segments] == [18.0, 24.0, 30.0]
    assert result.data.shape == (3, 256)
    for row, start in zip(result.data, starts, strict=True):
        piece = samples[int(start * rate) : int((start + 6) * rate)]
        direct = torch_engine.embed("speaker-ge2e", audio=(piece, rate))
        assert float(row @ direct.vector) > 0.99999
    # and not the audio of other times: the tone at 0-6 s is a different vector
    early = torch_engine.embed("speaker-ge2e", audio=(samples[: 6 * rate], rate)).vector
    assert float(result.data[0] @ early) < 0.99
    # the pooled vector is the normalised mean of the segments
    mean = result.data.mean(axis=0)
    np.testing.assert_allclose(result.pooled, mean / np.linalg.norm(mean), atol=1e-6)


def test_offset_past_the_end_or_negative(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    path = str(files.write("three-sec.wav", tone(3.0, 16000), 16000))
    with pytest.raises(ParameterInvalid, match="past the end"):
        torch_engine.embed("speaker-ge2e", audio=path, start_offset_sec=3.5)
    with pytest.raises(ParameterInvalid, match="start_offset_sec"):
        torch_engine.embed("speaker-ge2e", audio=path, start_offset_sec=-1)


def test_default_segments_are_the_model_windows(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    path = str(files.write("four-sec.wav", noise(4.0, 16000), 16000))
    result = torch_engine.embed("speaker-ge2e", audio=path, start_offset_sec=1.0)
    segments = result.meta.segments
    assert [s.start_sec for s in segments] == pytest.approx([1.0 + 0.77 * k for k in range(len(segments))])
    assert all(s.end_sec <= 4.0 for s in segments) and segments[0].end_sec == pytest.approx(2.6)
    assert result.meta.input.length == 3 * 16000 and not result.meta.input.padded
    assert "start_offset_sec=1" in result.meta.preprocessing


def test_short_clip_is_padded_and_says_so(torch_engine: omniembed.Engine) -> None:
    short = torch_engine.embed("speaker-ge2e", audio=(noise(0.5, 16000), 16000))
    assert short.meta.input.padded
    assert short.data.shape == (1, 256)
    assert short.meta.segments[0].end_sec == pytest.approx(0.5)
    long = torch_engine.embed("speaker-ge2e", audio=(noise(2.0, 16000), 16000))
    assert not long.meta.input.padded


def test_silence_gives_a_finite_vector(torch_engine: omniembed.Engine) -> None:
    result = torch_engine.embed("speaker-ge2e", audio=(np.zeros(32000, np.float32), 16000))
    assert np.all(np.isfinite(result.data)) and np.all(np.isfinite(result.vector))


def test_twelvelabs_shape_is_derivable(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    result = torch_engine.embed("speaker-ge2e", audio=str(files.halves()), start_offset_sec=20, segment_sec=5)
    segments = [
        {"float_": row.tolist(), "start_offset_sec": seg.start_sec, "end_offset_sec": seg.end_sec}
        for row, seg in zip(result.data, result.meta.segments, strict=True)
    ]
    assert [s["start_offset_sec"] for s in segments] == [20.0, 25.0]
    assert all(len(s["float_"]) == 256 for s in segments)


def test_audio_data_helpers_make_real_files(files: AudioFiles) -> None:
    info = sf.info(str(files.three_hours()))
    assert info.frames / info.samplerate == pytest.approx(3 * 3600)
    assert Path(files.three_hours()).stat().st_size < 2_000_000
