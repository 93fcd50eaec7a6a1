"""What a model takes from a region of the Earth: its raster contract, as data.

A geo model module describes its input with a ``RasterInput`` (bands, input size, output cell size,
frames, how raw reads become model units) and its network as a ``GraphSpec`` like every other model.
Reading rasters, planning tiles and stitching grids live once, in ``omniembed.geo``; model modules never
import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["S2_RGB", "RasterInput", "rgb_unit"]

S2_RGB = ("B04", "B03", "B02")
"""Sentinel-2 red, green, blue: what image models see of a region (a true-colour composite)."""


def rgb_unit(raw: np.ndarray) -> np.ndarray:
    """RGB reads to 0..1: Sentinel-2 reflectance x 10000 stretched over 0..0.3 (true colour), 8-bit /255."""
    finite = raw[np.isfinite(raw)]
    scale = 255.0 if finite.size and finite.max() <= 255 else 3000.0
    return np.clip(np.nan_to_num(raw, nan=0.0) / scale, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class RasterInput:
    """A model's raster contract.

    The geo preparer reads ``bands`` (``frames`` of them for multi-temporal models), maps the read
    (frames, bands, rows, cols; NaN = no data) through ``normalize`` to model units with no NaN, and cuts
    it into ``input_size`` tiles (or resizes it to one). The encoder maps a batch of tiles, fed as
    ``pixel_values`` (N, frames, bands, S, S), to grids (N, D, S/patch, S/patch); models with ``coords``
    also get ``temporal`` (N, frames, 2: year, day of year), ``location`` (N, 2: lat, lon) and
    ``has_time`` (N: 1 where every frame is dated). A ``precomputed`` product has no network: the raster
    read IS the embedding (one cell per pixel)."""

    bands: tuple[str, ...]
    input_size: int
    patch: int
    normalize: Callable[[np.ndarray], np.ndarray]
    contract: str
    frames: int = 1
    coords: bool = False
    scale_m: float = 10.0
    collection: str = "COPERNICUS/S2_SR_HARMONIZED"
    precomputed: bool = False
