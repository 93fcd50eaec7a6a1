"""speaker-ge2e: the GE2E speaker encoder (3-layer LSTM, 256-d) whose weights ship in PyPI ``resemblyzer``.

Front end as resemblyzer's documented use, ``embed_utterance(preprocess_wav(path))``: 16 kHz mono raised
to -30 dBFS (never lowered), long silences shortened by voice-activity detection (webrtcvad), 40-band mel
power spectrogram (25 ms / 10 ms), partial windows of 1.6 s at 1.3 per second. Without ``segment_sec``
each partial window is a segment and the pooled vector (mean of the unit-length partials, normalised) is
resemblyzer's ``embed_utterance``; with ``segment_sec`` each segment is the utterance embedding of its
own audio, preprocessed on its own. Segment times are real times in the original clip (docs/audio.md).

``speaker-ge2e-untrimmed`` is the same network without the silence trimming (every sample embedded;
windows every 0.77 s of real time), i.e. ``embed_utterance(normalize_volume(wav, -30, increase_only=True))``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

WEIGHTS = "pretrained.pt"

TRIMMED = ModelSpec(
    name="speaker-ge2e",
    loader="omniembed.models.ge2e:load",
    modalities=(Modality.AUDIO,),
    dim=256,
    pooling="mean",
    normalize=True,
    weights=WeightsSource(package="resemblyzer", marker=WEIGHTS),
    license="Apache-2.0",
    aliases=("ge2e", "resemblyzer"),
    description=(
        "Speaker (voice) embeddings: GE2E LSTM encoder from resemblyzer, long silences trimmed, 1.6 s windows, "
        "unit length"
    ),
    options=(
        ("sample_rate", 16000),
        ("n_fft", 400),
        ("hop", 160),
        ("n_mels", 40),
        ("htk", False),
        ("mel_norm", "slaney"),
        ("gain", "dbfs:-30"),
        ("rule", "ge2e"),
        ("window_frames", 160),
        ("rate", 1.3),
        ("min_coverage", 0.75),
        ("vad_trim", True),
    ),
)


SPECS = (
    TRIMMED,
    dataclasses.replace(
        TRIMMED,
        name="speaker-ge2e-untrimmed",
        aliases=(),
        description="speaker-ge2e without the silence trimming: every sample embedded, windows every 0.77 s",
        options=(*((k, v) for k, v in TRIMMED.options if k != "vad_trim"), ("network", "speaker-ge2e")),
    ),
)


def build(weights: Path) -> Any:
    """The GE2E network with resemblyzer's checkpoint loaded (strict: every network key must match)."""
    import torch
    from torch import nn

    from omniembed.models._audio import masked_window_mean

    class GE2E(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, p, frames, mels = windows.shape
            _, (hidden, _) = self.lstm(windows.reshape(b * p, frames, mels))
            raw = torch.relu(self.linear(hidden[-1]))
            unit = raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)
            result: torch.Tensor = masked_window_mean(unit, mask)
            return result

    state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
    # similarity_weight/bias only scale the training loss; they are not part of the encoder.
    state = {k: v for k, v in state.items() if not k.startswith("similarity_")}
    model = GE2E()
    model.load_state_dict(state, strict=True)
    return model.eval()


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    from omniembed.models._audio import load_windowed

    return load_windowed(spec, folder, runtime, device, settings, weights_file=WEIGHTS, build=build)
