"""Audio models against their own packages: speaker-ge2e vs resemblyzer, sfx-cnn vs aisfx, CLAP vs transformers."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import omniembed
from audio_data import AudioFiles, have_espeak, noise, tone

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (make test installs it)")


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> AudioFiles:
    return AudioFiles(tmp_path_factory.mktemp("audio-models"))


@pytest.fixture(scope="session")
def torch_engine(settings: omniembed.Settings) -> omniembed.Engine:
    return omniembed.Engine(settings.model_copy(update={"runtime": "torch"}))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- speaker-ge2e -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def voice_encoder() -> Any:
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def reference_wave(path: Path) -> np.ndarray:
    """The clip at 16 kHz raised to -30 dBFS as resemblyzer's ``preprocess_wav`` does, before its trimming."""
    import librosa
    from resemblyzer import audio as resemblyzer_audio

    wav, _ = librosa.load(str(path), sr=16000)
    return np.asarray(resemblyzer_audio.normalize_volume(wav, -30, increase_only=True))


def with_pauses(files: AudioFiles, voice: str, sentence: int) -> Path:
    """An espeak-ng sentence with 1 s of silence before it, 1.5 s in its middle and 0.8 s after it."""
    speech = files.speech(voice, sentence)
    wave, rate = sf.read(speech, dtype="float32")
    gap = [np.zeros(round(seconds * rate), np.float32) for seconds in (1.0, 1.5, 0.8)]
    half = len(wave) // 2
    return files.write(f"pauses-{voice}{sentence}.wav", np.concatenate([gap[0], wave[:half], gap[1], wave[half:],
                                                                         gap[2]]), rate)


@pytest.mark.parametrize("voice,sentence,pauses", [("a", 0, False), ("b", 1, False), ("a", 0, True), ("b", 1, True)])
def test_ge2e_matches_resemblyzer_documented_use(
    files: AudioFiles, torch_engine: omniembed.Engine, voice_encoder: Any, voice: str, sentence: int, pauses: bool
) -> None:
    """speaker-ge2e is ``VoiceEncoder().embed_utterance(preprocess_wav(path))``: resemblyzer's loading, volume
    normalisation and webrtcvad trimming of long silences, run here by resemblyzer itself."""
    from resemblyzer import preprocess_wav

    path = with_pauses(files, voice, sentence) if pauses else files.speech(voice, sentence)  # 22.05 kHz
    ours = torch_engine.embed("speaker-ge2e", audio=str(path))
    trimmed = preprocess_wav(path)
    ref, partials, slices = voice_encoder.embed_utterance(trimmed, return_partials=True)
    assert float(ours.vector @ ref) >= 0.999
    assert ours.data.shape == partials.shape  # one segment per partial window
    assert np.min(np.sum(unit(ours.data) * partials, axis=1)) >= 0.999
    # segment times are real times in the original clip: each segment starts where its window's audio
    # starts there (16 samples compared: window starts never fall within a trimmed frame)
    original = reference_wave(path)
    segments = ours.meta.segments
    for segment, piece in zip(segments, slices, strict=True):
        at = round(segment.start_sec * 16000)
        np.testing.assert_allclose(original[at : at + 16], trimmed[piece.start : piece.start + 16], atol=2e-3)
    duration = len(original) / 16000
    assert all(a.start_sec < b.start_sec for a, b in itertools.pairwise(segments))
    assert all(s.start_sec + 1.6 - 1e-6 <= s.end_sec <= duration for s in segments)
    if pauses:
        assert 0.85 <= segments[0].start_sec <= 1.0  # 90 ms of the leading 1 s of silence is kept
        assert max(s.end_sec - s.start_sec for s in segments) > 2.5  # a window across the shortened pause
        untrimmed = torch_engine.embed("speaker-ge2e-untrimmed", audio=str(path))
        assert float(untrimmed.vector @ ref) < 0.99  # the pauses matter: this test tells the two apart
    else:
        assert segments[0].start_sec < 0.1


@pytest.mark.parametrize("voice,sentence", [("a", 0), ("b", 1)])
def test_ge2e_untrimmed_is_embed_utterance_without_vad(
    files: AudioFiles, torch_engine: omniembed.Engine, voice_encoder: Any, voice: str, sentence: int
) -> None:
    path = with_pauses(files, voice, sentence)
    ours = torch_engine.embed("speaker-ge2e-untrimmed", audio=str(path))
    ref, partials, slices = voice_encoder.embed_utterance(reference_wave(path), return_partials=True)
    assert float(ours.vector @ ref) >= 0.999
    assert ours.data.shape == partials.shape
    assert np.min(np.sum(unit(ours.data) * partials, axis=1)) >= 0.999
    assert [s.start_sec for s in ours.meta.segments] == pytest.approx([s.start / 16000 for s in slices])
    assert "trimmed" not in ours.meta.preprocessing
    assert "long silences trimmed" in torch_engine.embed("speaker-ge2e", audio=str(path)).meta.preprocessing


def test_trim_silences_shortens_pauses_only(files: AudioFiles) -> None:
    from omniembed.inputs.audio_frontend import trim_silences

    wave = reference_wave(with_pauses(files, "a", 0))
    trim = trim_silences(wave, 16000)
    assert trim is not None and trim.frame == 480
    kept = trim.frames * trim.frame  # first sample of each kept frame
    gaps = np.diff(kept)[np.diff(kept) > trim.frame] - trim.frame
    assert len(gaps) >= 1 and max(gaps) >= 1.5 * 16000 - 2 * 0.18 * 16000  # the 1.5 s pause is cut to <= 180 ms
    assert kept[0] >= 0.9 * 16000 and len(wave) - kept[-1] >= 0.7 * 16000  # leading/trailing silence
    assert len(trim.apply(wave)) == len(trim.frames) * 480
    assert trim.position(0) == kept[0] and trim.position(480 + 5) == kept[1] + 5
    assert trim_silences(np.zeros(32000, np.float32), 16000) is None  # nothing voiced: nothing trimmed
    assert trim_silences(np.zeros(100, np.float32), 16000) is None  # shorter than one 30 ms frame


def test_ge2e_same_voice_scores_higher(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    vec = {
        f"{v}{k}": torch_engine.embed("speaker-ge2e", audio=str(files.speech(v, k))).vector
        for v in "ab" for k in (0, 1)
    }
    same = [vec["a0"] @ vec["a1"], vec["b0"] @ vec["b1"]]  # same voice, different sentences
    different = [vec["a0"] @ vec["b1"], vec["a1"] @ vec["b0"], vec["a0"] @ vec["b0"], vec["a1"] @ vec["b1"]]
    assert min(same) > max(different) + 0.05


@pytest.mark.slow
def test_ge2e_onnx_runtime_matches_torch(
    files: AudioFiles, settings: omniembed.Settings, torch_engine: omniembed.Engine
) -> None:
    onnx_engine = omniembed.Engine(settings.model_copy(update={"runtime": "onnx"}))
    path = str(files.speech("a", 0))
    a = onnx_engine.embed("speaker-ge2e", audio=path, segment_sec=2.0)
    b = torch_engine.embed("speaker-ge2e", audio=path, segment_sec=2.0)
    assert a.meta.runtime == "onnx"
    np.testing.assert_allclose(a.data, b.data, atol=1e-4)


# -- sfx-cnn ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def aisfx_model() -> Any:
    """aisfx's own network loaded with its own ``load_bestModel``. Its ``load_weights`` calls torch.load
    without ``weights_only=False`` and fails on torch >= 2.6 (numpy scalars in the pickle), so the
    checkpoint is read here with those numpy types allow-listed."""
    import torch
    from aisfx import inference
    from numpy._core.multiarray import scalar

    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Int64DType]
    with torch.serialization.safe_globals(allowed):
        weights, datasets = torch.load(inference.get_path_modelWeights(), map_location="cpu", weights_only=True)
    return inference.load_bestModel(weights, datasets, "cpu")


def aisfx_embed(path: Path, model: Any) -> np.ndarray:
    """aisfx's own computation: its librosa spectrogram, its normalisation, blocking and network.

    aisfx's librosa path returns (mel, time) and its blocking cuts along the first axis, so the
    spectrogram is transposed to (time, mel) first, as its essentia path returns it."""
    from aisfx import inference
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram

    spec = compute_spectrogram(
        str(path), inference.SAMPLE_RATE, inference.SPEC_BLOCK_LENGTH, inference.SPEC_HOP_LENGTH,
        inference.MEL_BINS, inference.F_MIN, inference.F_MAX,
    ).T
    out = inference.model_get_embedding(spectrogram_normalize(spec), 0.5, True, model, "cpu")
    return np.asarray(out.numpy())


def sfx_sounds(files: AudioFiles) -> dict[str, Path]:
    return {
        "tone-440": files.write("tone440.wav", tone(5.0, 22050, 440.0), 22050),
        "tone-1000": files.write("tone1000.wav", tone(5.0, 22050, 1000.0, amp=0.3), 22050),
        "noise-0": files.write("noise0.wav", noise(5.0, 22050, seed=0), 22050),
        "noise-1": files.write("noise1.wav", noise(5.0, 22050, amp=0.1, seed=1), 22050),
        "speech-a": files.speech("a", 0),
        "speech-b": files.speech("b", 1),
    }


def test_sfx_matches_aisfx(files: AudioFiles, torch_engine: omniembed.Engine, aisfx_model: Any) -> None:
    for name in ("tone-440", "noise-0", "speech-a"):
        path = sfx_sounds(files)[name]
        ours = torch_engine.embed("sfx-cnn", audio=str(path))
        ref = aisfx_embed(path, aisfx_model)
        assert ours.data.shape == ref.shape, name  # one segment per aisfx block
        assert np.min(np.sum(unit(ours.data) * unit(ref), axis=1)) >= 0.999, name
        assert ours.meta.segments[1].start_sec == pytest.approx(50 * 1024 / 44100)


def test_sfx_separates_tone_noise_and_speech(files: AudioFiles, torch_engine: omniembed.Engine) -> None:
    sounds = sfx_sounds(files)
    names = list(sounds)
    vectors = unit(np.stack([torch_engine.embed("sfx-cnn", audio=str(sounds[n])).vector for n in names]))
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    for i, name in enumerate(names):
        nearest = names[int(np.argmax(sims[i]))]
        assert nearest.split("-")[0] == name.split("-")[0], (name, nearest)


# -- CLAP -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def clap_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A tiny random CLAP saved like a real one: config + weights, feature extractor, tokenizer.

    The feature extractor keeps 2 s windows at 48 kHz and 16 mel bands so the tiny HTS-AT fits."""
    import torch
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    folder = tmp_path_factory.mktemp("models") / "clap"
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    text = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=37, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id)
    audio = dict(spec_size=64, num_mel_bins=16, window_size=4, patch_stride=2, patch_embeds_hidden_size=16,
                 hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], enable_fusion=False)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).eval().save_pretrained(folder)
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=48000, max_length_s=2,
                                     truncation="rand_trunc", padding="repeatpad")
    extractor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_clap_matches_transformers(clap_dir: Path, settings: omniembed.Settings) -> None:
    import torch
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    engine = omniembed.Engine(settings.model_copy(update={"runtime": "torch", "model_dir": clap_dir.parent}))
    rate = 48000
    wave = np.concatenate([tone(2.0, rate, 300.0), noise(2.0, rate), tone(1.0, rate, 900.0)])
    result = engine.embed("clap", audio=(wave, rate))
    assert [(s.start_sec, s.end_sec) for s in result.meta.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    longer = engine.embed("clap", audio=(wave, rate), segment_sec=4.0)  # two windows averaged
    texts = ["a dog barking", "rain on a tin roof"]
    text = engine.embed_batch("clap", texts)

    model = ClapModel.from_pretrained(clap_dir).eval()
    extractor = ClapFeatureExtractor.from_pretrained(clap_dir)
    tokenizer = AutoTokenizer.from_pretrained(clap_dir)
    with torch.no_grad():
        pieces = [wave[: 2 * rate], wave[2 * rate : 4 * rate], wave[4 * rate :]]
        feats = extractor(pieces, sampling_rate=rate, return_tensors="pt")
        ref_audio = model.get_audio_features(**feats).pooler_output.numpy()
        tokens = tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
        ref_text = model.get_text_features(**tokens).pooler_output.numpy()
    assert np.min(np.sum(result.data * ref_audio, axis=1)) >= 0.9999
    assert float(longer.data[0] @ unit(ref_audio[:2].mean(axis=0))) >= 0.9999
    for got, want in zip(text, ref_text, strict=True):
        assert float(got.vector @ want) >= 0.9999
    assert text[0].meta.modality == "text" and result.meta.modality == "audio"
    # one space: a text and an audio vector have the same size and are unit length
    assert result.data.shape[1] == text[0].vector.shape[0] == 16
    assert np.linalg.norm(result.pooled) == pytest.approx(1.0, abs=1e-5)
