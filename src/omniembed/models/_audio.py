"""Shared loader of the window-based audio models (GE2E, sfx-cnn): a mel front end + a small torch network.

The network takes ``windows`` (batch, windows, frames, mels) and ``window_mask`` (batch, windows) and
returns one vector per row: the masked mean of its per-window embeddings. Specs that differ only in their
front end (e.g. ``speaker-ge2e`` and ``speaker-ge2e-untrimmed``) name one ``network`` option and so share
one cached graph.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.embedding import Modality
from omniembed.errors import RuntimeUnavailable
from omniembed.registry import ModelSpec

__all__ = ["load_windowed", "masked_window_mean"]


def masked_window_mean(per_window: Any, mask: Any) -> Any:
    """``(B*P, D)`` window embeddings and a ``(B, P)`` mask -> ``(B, D)`` mean over the real windows."""
    b, p = mask.shape
    rows = per_window.reshape(b, p, -1) * mask.unsqueeze(-1)
    return rows.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def load_windowed(
    spec: ModelSpec,
    folder: Path,
    runtime: str,
    device: str,
    settings: Any,
    *,
    weights_file: str,
    build: Callable[[Path], Any],
) -> Any:
    """A ``LoadedModel`` for a window-based audio model whose checkpoint is ``folder / weights_file``."""
    from omniembed.contract import LoadedModel
    from omniembed.inputs.audio import AudioPreparer
    from omniembed.inputs.audio_frontend import MelFrontEnd
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    frontend = MelFrontEnd.from_options(dict(spec.options))
    if frontend.vad_trim:
        _require_webrtcvad(spec)
    version = fingerprint(folder, (weights_file,))
    names = ("windows", "window_mask")

    def example() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        windows = rng.random((2, 2, frontend.window_frames, frontend.n_mels), dtype=np.float32)
        return {"windows": windows, "window_mask": np.array([[1, 1], [1, 0]], np.float32)}

    axes = {"windows": {0: "batch", 1: "windows"}, "window_mask": {0: "batch", 1: "windows"}}
    key = f"{spec.option('network', spec.name)}-{version}-g1"
    graph = GraphSpec(key, lambda: build(folder / weights_file), names, "embedding", axes, example)
    encoder = build_encoder(graph, runtime, device, settings)
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={Modality.AUDIO: AudioPreparer(frontend, settings)},
        encoders={Modality.AUDIO: encoder},
        runtime=runtime,
        device=device,
    )


def _require_webrtcvad(spec: ModelSpec) -> None:
    """Fail at load time, not on every clip, where the voice-activity detector is missing."""
    try:
        import webrtcvad  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"{spec.name} trims long silences with webrtcvad, which is not installed here: "
            "pip install webrtcvad-wheels",
            param="model", model=spec.name, hint="pip install webrtcvad-wheels",
        ) from exc
