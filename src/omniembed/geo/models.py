"""What a geo model is to the geo API (``GeoNet``), loading one through the engine, and the adapter that
lets any image model of the registry embed RGB composites (one vector per tile)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.embedding import Modality
from omniembed.errors import ModelLoadFailed, OmniEmbedError, ParameterInvalid
from omniembed.registry import ModelSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["GEO_LOADER_KEY", "GeoNet", "geo_spec_info", "load_geo", "rgb_unit"]

GEO_LOADER_KEY = "geo"
S2_RGB = ("B04", "B03", "B02")


@dataclass
class GeoNet:
    """A geo model ready to run.

    ``prepare`` maps a raw read (frames, bands, rows, cols; NaN = no data) to model units with no NaN;
    ``run`` maps a batch (N, frames, bands, S, S) to grids (N, D, S/patch, S/patch). Precomputed
    products have no ``run``: the raster IS the embedding (one cell per pixel)."""

    name: str
    version: str
    bands: tuple[str, ...]
    dim: int
    input_size: int
    patch: int
    prepare: Callable[[np.ndarray], np.ndarray]
    run: Callable[..., np.ndarray] | None
    contract: str
    collection: str = "COPERNICUS/S2_SR_HARMONIZED"
    scale_m: float = 10.0
    frames: int = 1
    device: str = "cpu"
    coords: bool = False
    """When True, ``run(batch, side)`` also gets ``side``: ``temporal`` (N, frames, 2) = (year, day of year)
    when every frame is dated, and ``location`` (N, 2) = (lat, lon) of the region's centre."""

    @property
    def precomputed(self) -> bool:
        return self.run is None


def rgb_unit(raw: np.ndarray) -> np.ndarray:
    """RGB reads to 0..1: Sentinel-2 reflectance x 10000 stretched over 0..0.3 (true colour), 8-bit /255."""
    finite = raw[np.isfinite(raw)]
    scale = 255.0 if finite.size and finite.max() <= 255 else 3000.0
    return np.clip(np.nan_to_num(raw, nan=0.0) / scale, 0.0, 1.0).astype(np.float32)


def geo_spec_info(spec: ModelSpec) -> dict[str, Any]:
    """What ``list_models`` shows for a geo-capable model."""
    native = Modality.GEO in spec.modalities
    return {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "kind": "precomputed" if spec.option("precomputed") else ("geo" if native else "image (RGB composite)"),
        "bands": list(spec.option("bands", S2_RGB)),
        "scale_m": spec.option("scale_m", 10.0),
        "dim": spec.dim,
        "input_size": spec.option("input_size") or spec.option("image_crop_size") or spec.option("image_size", 224),
        "pooled": True,
        "grid": True,
        "grid_cell": "pixel" if spec.option("precomputed") else ("patch" if native else "tile"),
    }


def _image_adapter(engine: Engine, spec: ModelSpec, device: str) -> GeoNet:
    """Any registered image model on RGB composites: each tile is one image, so grids have one cell per tile."""
    from PIL import Image

    size = int(spec.option("image_crop_size") or spec.option("image_size") or 224)

    def run(batch: np.ndarray) -> np.ndarray:
        images = [Image.fromarray((np.moveaxis(t[0], 0, -1) * 255).round().astype(np.uint8), "RGB") for t in batch]
        out = engine.embed_batch(spec.name, images=images, device=device)
        return np.stack([e.vector for e in out])[:, :, None, None]

    loaded = engine.load(spec.name, device=device)
    return GeoNet(spec.name, loaded.version, S2_RGB, spec.dim, size, size, rgb_unit, run,
                  f"rgb composite (B04,B03,B02) 0..1 -> 8-bit image -> {spec.name} image preprocessing",
                  device=loaded.device)


def load_geo(engine: Engine, model: str, device: str = "auto") -> GeoNet:
    """Resolve and load a geo model (cached in the engine's model LRU) or adapt an image model."""
    from omniembed.runtime import resolve_runtime
    from omniembed.weights import locate_weights

    spec = engine.spec(model)
    _, dev = resolve_runtime("torch", device)
    if Modality.GEO not in spec.modalities:
        if Modality.IMAGE in spec.modalities:
            return _image_adapter(engine, spec, dev)
        raise ParameterInvalid(f"model {spec.name!r} embeds {', '.join(map(str, spec.modalities))}, not images or "
                               "regions; see omniembed.geo.list_models()", param="model")

    def build() -> Any:
        w = spec.weights
        needs_weights = any((w.hub_id, w.package, w.local_path))
        folder = locate_weights(spec, engine.settings) if needs_weights else None
        try:
            return spec.load_function()(spec, folder, "torch", dev, engine.settings)
        except OmniEmbedError:
            raise
        except Exception as exc:
            raise ModelLoadFailed(f"geo model {spec.name!r} could not be loaded from {folder}: "
                                  f"{type(exc).__name__}: {exc}", param="model") from exc

    loaded = engine.models.get_or_load((spec.name, "geo", dev), build)
    net = loaded.extras[GEO_LOADER_KEY] if hasattr(loaded, "extras") else loaded
    if not isinstance(net, GeoNet):
        raise ModelLoadFailed(f"geo model {spec.name!r} did not load as a GeoNet", param="model")
    return net
