"""sfx-cnn: the sound-effects CNN of aisfx (ISMIR 2022, "X-Sequential-CE"), 512-d per ~2.3 s block.

The weights ship in PyPI ``aisfx`` (``aisfx/models/checkpoint.pth``; install it with ``--no-deps``, its
pins are old); only the embedding network is used, the per-dataset classifier heads are dropped. Front
end as aisfx's librosa path: 44.1 kHz mono scaled to peak 1, 96-band HTK mel power spectrogram (2048 /
1024 samples, filters of unit sum), ``log10(1 + 10000 x)``, divided by the paper's maximum 9.4578;
blocks of 100 frames (2.32 s) every 50 frames, an incomplete last block dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

WEIGHTS = "checkpoint.pth"
SPEC_MAX = 9.457798957824707  # aisfx's 'original' min-max normalisation: min 0, this max

SPECS = (
    ModelSpec(
        name="sfx-cnn",
        loader="omniembed.models.sfx:load",
        modalities=(Modality.AUDIO,),
        dim=512,
        pooling="mean",
        normalize=False,
        # aisfx pins old librosa/numpy; only its weight file is used.
        weights=WeightsSource(package="aisfx", package_subdir="models", marker=WEIGHTS,
                              install="pip install --no-deps aisfx"),
        license="see the aisfx package (PyPI)",
        aliases=("aisfx",),
        description="Sound-effect embeddings: 9-layer CNN from aisfx, one vector per 2.32 s block",
        options=(
            ("sample_rate", 44100),
            ("n_fft", 2048),
            ("hop", 1024),
            ("n_mels", 96),
            ("fmin", 0.0),
            ("fmax", 22050.0),
            ("htk", True),
            ("mel_norm", 1.0),
            ("gain", "peak"),
            ("compression", "log10_1e4"),
            ("scale", 1.0 / SPEC_MAX),
            ("rule", "blocks"),
            ("window_frames", 100),
            ("window_hop_frames", 50),
        ),
    ),
)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The embedding network's tensors from aisfx's checkpoint (a pickle holding numpy scalars)."""
    import numpy as np
    import torch
    from numpy._core.multiarray import scalar

    allowed: list[Any] = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Int64DType]
    with torch.serialization.safe_globals(allowed):
        weights, _datasets = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "embedding_net."
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def build(weights: Path) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from omniembed.models._audio import masked_window_mean

    class ConvBlock(nn.Module):
        def __init__(self, cin: int, cout: int, pool: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn1, self.bn2, self.pool = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout), pool

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
            return F.max_pool2d(x, self.pool) if self.pool > 1 else x

    class SfxCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_block1, self.conv_block2 = ConvBlock(1, 64, 2), ConvBlock(64, 128, 2)
            self.conv_block3, self.conv_block4 = ConvBlock(128, 256, 2), ConvBlock(256, 512, 1)

        def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, p, frames, mels = windows.shape
            x = windows.reshape(b * p, 1, frames, mels)
            for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
                x = block(x)
            per_window = x.mean(dim=3).amax(dim=2)  # mean over frequency, max over time
            result: torch.Tensor = masked_window_mean(per_window, mask)
            return result

    model = SfxCnn()
    model.load_state_dict(read_checkpoint(weights), strict=True)
    return model.eval()


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    from omniembed.models._audio import load_windowed

    return load_windowed(spec, folder, runtime, device, settings, weights_file=WEIGHTS, build=build)
