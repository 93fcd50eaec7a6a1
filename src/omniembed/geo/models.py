"""Which registered models embed regions, and how: native geo models bring their own ``RasterInput``; any
image model embeds RGB composites (one vector per tile, ``image_raster``); the catalogue row for each."""

from __future__ import annotations

from typing import Any

from omniembed.embedding import Modality
from omniembed.inputs.raster import S2_RGB, RasterInput, rgb_unit
from omniembed.registry import ModelSpec

__all__ = ["geo_spec_info", "image_raster"]


def image_size(spec: ModelSpec) -> int:
    """The square input an image model's preprocessing ends in (its crop, else its resize)."""
    return int(spec.option("image_crop_size") or spec.option("image_size") or 224)


def image_raster(spec: ModelSpec) -> RasterInput:
    """An image model on Sentinel-2 true-colour composites: each tile is one image, so a grid has one cell per
    tile (``patch`` = the tile size)."""
    size = image_size(spec)
    return RasterInput(S2_RGB, size, size, rgb_unit,
                       f"rgb composite (B04,B03,B02) 0..1 -> 8-bit image -> {spec.name} image preprocessing")


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
        "input_size": spec.option("input_size") or image_size(spec),
        "pooled": True,
        "grid": True,
        "grid_cell": "pixel" if spec.option("precomputed") else ("patch" if native else "tile"),
    }
