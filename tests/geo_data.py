"""Geo test helpers: the real test rasters (made by tests/data/make_geo_data.py into a temp folder, once per
session) and a tiny translation-equivariant geo model registered only in test engines."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omniembed.api import Engine
from omniembed.embedding import Modality
from omniembed.models import default_registry
from omniembed.registry import ModelSpec, Registry, WeightsSource
from omniembed.settings import Settings

DATA_SCRIPT = Path(__file__).parent / "data" / "make_geo_data.py"


def make_geo_data(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_geo_data", DATA_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: Path = module.make(out)
    return result


_made: list[Path] = []


def shared_geo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test rasters, made once per session (each test module's ``geo_dir`` fixture calls this)."""
    if not _made:
        _made.append(make_geo_data(tmp_path_factory.mktemp("geo_data")))
    return _made[0]


CONV_SPEC = ModelSpec(
    name="test-conv-geo",
    loader="geo_data:load_conv",
    modalities=(Modality.GEO,),
    dim=8,
    pooling="mean",
    normalize=False,
    weights=WeightsSource(),
    license="test",
    options=(("bands", ("B02", "B03", "B04", "B08")), ("input_size", 32)),
)


def conv_net(seed: int = 0) -> Any:
    """Patchify (4 px, stride 4) -> GELU -> 3x3 conv over cells: translation-equivariant by whole cells,
    receptive field one cell around each cell (so a one-cell tile overlap makes tiling exact)."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 4, stride=4), torch.nn.GELU(), torch.nn.Conv2d(8, 8, 3, padding=1))


def load_conv(spec: ModelSpec, folder: Any, runtime: str, device: str, settings: Settings) -> Any:
    """The conv net as a geo model of the registry: a graph like any model's, so it runs on either runtime."""
    import torch

    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput
    from omniembed.runtime import GraphSpec, build_encoder

    class Grid(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = conv_net()

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (N, 1, 4, S, S) -> (N, 8, S/4, S/4)
            out: torch.Tensor = self.net(pixel_values[:, 0])
            return out

    def normalize(raw: np.ndarray) -> np.ndarray:
        return np.nan_to_num(raw / 10000.0, nan=0.0).astype(np.float32)

    graph = GraphSpec(cache_key="test-conv-geo-v1", build=Grid, input_names=("pixel_values",), output_name="grid",
                      dynamic_axes={"pixel_values": {0: "batch"}},
                      example=lambda: {"pixel_values": np.random.default_rng(0).random((2, 1, 4, 32, 32), np.float32)})
    raster = RasterInput(("B02", "B03", "B04", "B08"), 32, 4, normalize, "reflectance/10000")
    encoder = build_encoder(graph, runtime, device, settings)
    return LoadedModel(spec, "test", {}, {Modality.GEO: encoder}, runtime, device, raster=raster)


def geo_engine(tmp: Path, *specs: ModelSpec, **settings: Any) -> Engine:
    """An engine whose registry holds the built-in models plus ``specs``."""
    registry = Registry(list(default_registry()) + list(specs))
    return Engine(Settings(cache_dir=tmp / "cache", hub_offline=True, **settings), registry)


IMAGE_SPEC = ModelSpec(
    name="test-image-stats",
    loader="geo_data:load_image_stats",
    modalities=(Modality.IMAGE,),
    dim=6,
    pooling="mean",
    normalize=False,
    weights=WeightsSource(),
    license="test",
    options=(("image_crop_size", 16),),
)


def load_image_stats(spec: ModelSpec, folder: Any, runtime: str, device: str, settings: Settings) -> Any:
    """A stand-in image model (any registered image model goes through the same engine path): per-channel
    mean and standard deviation of the 0..1 pixels."""
    from omniembed.contract import LoadedModel, Prepared
    from omniembed.embedding import InputInfo

    class Preparer:
        def contract(self, options: Any) -> str:
            return "rgb/255"

        def prepare(self, items: Any, options: Any) -> list[Any]:
            out = []
            for img in items:
                arr = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
                out.append(Prepared({"pixel_values": arr}, 1, InputInfo("image", "pil")))
            return out

        def collate(self, batch: Any) -> dict[str, np.ndarray]:
            return {"pixel_values": np.stack([b.features["pixel_values"] for b in batch])}

    class Encoder:
        runtime, device = "numpy", "cpu"

        def __call__(self, feeds: Any) -> np.ndarray:
            x = feeds["pixel_values"]
            return np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1).astype(np.float32)

    return LoadedModel(spec, "test", {Modality.IMAGE: Preparer()}, {Modality.IMAGE: Encoder()}, "numpy", "cpu")


def folder_export(spatials: Any, temporal: Any, models: Any, out: Any, fmt: str = "npz", *, ids: Any = None,
                  names: Any = None, resume: bool = True, continue_on_error: bool = True, chunk_size: int = 8,
                  per_model_sensors: dict[str, Any] | None = None, input_prep: Any = None, **kw: Any) -> Any:
    """omniembed's folder export (``ExportTarget.folder``) with the options these tests use, through the
    keyword-only rs-embed signature of ``export_batch``."""
    from omniembed.geo import ExportConfig, ExportModelRequest, ExportTarget
    from omniembed.geo.export import export_batch

    sensors = per_model_sensors or {}
    model_list = [models] if isinstance(models, str) else list(models)
    requests = [ExportModelRequest(m, sensor=sensors[m]) if m in sensors else m for m in model_list]
    return export_batch(spatials=list(spatials), temporal=temporal, models=requests,
                        target=ExportTarget.folder(str(out), names=ids if ids is not None else names),
                        config=ExportConfig(format=fmt, resume=resume, continue_on_error=continue_on_error,
                                            chunk_size=chunk_size, input_prep=input_prep), **kw)
