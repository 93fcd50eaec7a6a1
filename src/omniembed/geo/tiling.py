"""Fitting a region to a model's fixed input: ``resize`` (squeeze to one input) or ``tile`` (input-sized
tiles with overlap, reflection-padded edges, stitched by cropping the overlaps: no averaging, no seams).

A ``Plan`` holds one region's model inputs and how their output grids go back together; plans of many
regions are run in shared batches by the caller and assembled with ``Plan.assemble``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from omniembed.geo.errors import InputPrepInvalid
from omniembed.geo.specs import InputPrepSpec

__all__ = ["Plan", "choose_mode", "fits_one_tile", "plan_resize", "plan_tiles", "resize", "tile_layout"]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """(frames, bands, rows, cols) -> (frames, bands, size, size), bilinear (antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    if t.shape[-2:] == (size, size):
        return img.astype(np.float32)
    shrink = t.shape[-1] > size or t.shape[-2] > size
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    result: np.ndarray = out.numpy()
    return result


def tile_layout(prep: InputPrepSpec, rows: int, cols: int, size: int, patch: int) -> tuple[int, int, int, int]:
    """(overlap px, crop cells, core cells, tile count) of tiling a ``rows`` x ``cols`` region into ``size`` tiles."""
    cells_per_tile = size // patch
    overlap = prep.overlap_px(size, patch)
    crop = math.ceil(overlap / patch) if overlap else 0
    core = cells_per_tile - 2 * crop
    if core < 1:
        raise InputPrepInvalid(f"overlap {overlap} px leaves no tile core with {size} px tiles; use a smaller "
                               "overlap or a larger tile_stride", param="input_prep")
    ny, nx = max(1, round(rows / patch)), max(1, round(cols / patch))
    return overlap, crop, core, math.ceil(ny / core) * math.ceil(nx / core)


def fits_one_tile(prep: InputPrepSpec, rows: int, cols: int, size: int) -> bool:
    """Whether a ``rows`` x ``cols`` region is one ``size`` tile, as rs-embed decides: each side at most the
    tile, or over it by no more than ``tile_snap_frac`` of a tile (rs-embed snaps that overhang away by
    downscaling when tiles touch, ``tile_stride`` None or the tile size)."""
    touching = prep.tile_stride is None or prep.tile_stride == size
    snap = round(min(0.5, max(0.0, float(prep.tile_snap_frac))) * size) if touching else 0
    return max(rows, cols) <= size + snap


def choose_mode(prep: InputPrepSpec, rows: int, cols: int, size: int, patch: int | None = None, *,
                output_mode: str = "grid") -> str:
    """``tile`` or ``resize``, as rs-embed resolves them. ``tile`` (rs-embed's default) resizes a region that is
    one tile (``fits_one_tile``): the model sees it whole, as rs-embed's single call does. ``auto`` resizes for
    pooled output (as rs-embed), and for a grid tiles only when the region is more than ``auto_factor`` times
    the input on a side and needs at most ``max_tiles`` tiles."""
    if prep.mode == "resize" or fits_one_tile(prep, rows, cols, size):
        return "resize"
    if prep.mode == "tile":
        return "tile"
    if output_mode != "grid" or max(rows, cols) <= prep.auto_factor * size:
        return "resize"
    if patch is not None and tile_layout(prep, rows, cols, size, patch)[3] > prep.max_tiles:
        return "resize"
    return "tile"


@dataclass
class Plan:
    """One region's model inputs (``tiles``: N x frames x bands x S x S) and how to stitch their grids.

    ``cells`` is the stitched grid's (rows, cols); ``cell_px`` the size of one cell in pixels of the read
    raster (y, x), so the grid's transform is the raster's scaled by it."""

    tiles: np.ndarray
    origins: list[tuple[int, int]]
    crop: int
    core: int
    cells: tuple[int, int]
    cell_px: tuple[float, float]
    mode: str
    padded: bool = False
    grids: np.ndarray | None = None
    """The model's output for ``tiles`` (N x D x g x g), set by whoever runs the plan."""
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    """Side inputs for models conditioned on time/place (``temporal``: frames x 2, ``location``: 2)."""

    def assemble(self, grids: np.ndarray) -> np.ndarray:
        """Stitch the model's per-tile grids (N x D x g x g) into (D, rows, cols): each tile gives only the
        cells of its core (the overlap ring is cropped), so neighbouring tiles meet without a seam."""
        if self.mode == "resize":
            return grids[0]
        d = grids.shape[1]
        ny = max(o[0] for o in self.origins) + self.core
        nx = max(o[1] for o in self.origins) + self.core
        out = np.full((d, ny, nx), np.nan, dtype=np.float32)
        c0, c1 = self.crop, self.crop + self.core
        for (y, x), g in zip(self.origins, grids, strict=True):
            out[:, y:y + self.core, x:x + self.core] = g[:, c0:c1, c0:c1]
        return out[:, : self.cells[0], : self.cells[1]]


def plan_resize(img: np.ndarray, size: int, patch: int) -> Plan:
    rows, cols = img.shape[-2:]
    g = size // patch
    return Plan(resize(img, size)[None], [(0, 0)], 0, g, (g, g), (rows / g, cols / g), "resize")


def _fit(img: np.ndarray, patch: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    """Crop or reflect-pad rows/cols to the nearest whole number of cells (at least one)."""
    rows, cols = img.shape[-2:]
    ny, nx = max(1, round(rows / patch)), max(1, round(cols / patch))
    img = img[..., : ny * patch, : nx * patch]
    pad_y, pad_x = ny * patch - img.shape[-2], nx * patch - img.shape[-1]
    if pad_y or pad_x:
        img = np.pad(img, ((0, 0), (0, 0), (0, pad_y), (0, pad_x)), mode="reflect" if min(rows, cols) > 1 else "edge")
    return img, (ny, nx), bool(pad_y or pad_x)


def plan_tiles(img: np.ndarray, size: int, patch: int, prep: InputPrepSpec) -> Plan:
    """Cut (frames, bands, rows, cols) into ``size`` tiles overlapping by ``overlap`` px (a whole number of
    cells; default one cell), reflection-padded by the overlap on every side. Above ``max_tiles`` tiles it
    warns, above ``max_tiles_hard`` it refuses (rs-embed's limits)."""
    if prep.tile_size is not None and prep.tile_size != size:
        raise InputPrepInvalid(f"tile_size must equal the model's input size ({size} px) for this model",
                               param="input_prep")
    _, crop, core, count = tile_layout(prep, img.shape[-2], img.shape[-1], size, patch)
    if count > prep.hard_limit:
        raise InputPrepInvalid(
            f"the region needs {count} tiles of {size} px (more than max_tiles_hard={prep.hard_limit}); use a "
            "smaller region, a coarser scale_m, input_prep='resize', or InputPrepSpec.tile(max_tiles_hard=...)",
            param="input_prep")
    if count > prep.max_tiles:
        warnings.warn(f"the region needs {count} tiles of {size} px (more than max_tiles={prep.max_tiles}): "
                      "this may be slow; raise max_tiles to silence this, or use input_prep='resize'",
                      UserWarning, stacklevel=2)
    img, (ny, nx), padded = _fit(img, patch)
    ty, tx = math.ceil(ny / core), math.ceil(nx / core)
    o = crop * patch
    extra_y, extra_x = ty * core * patch - img.shape[-2], tx * core * patch - img.shape[-1]
    big = np.pad(img, ((0, 0), (0, 0), (o, o + extra_y), (o, o + extra_x)), mode="reflect") if o or extra_y or \
        extra_x else img
    tiles, origins = [], []
    for i in range(ty):
        for j in range(tx):
            y, x = i * core * patch, j * core * patch
            tiles.append(big[:, :, y:y + size, x:x + size])
            origins.append((i * core, j * core))
    return Plan(np.stack(tiles).astype(np.float32), origins, crop, core, (ny, nx), (float(patch), float(patch)),
                "tile", padded=padded or bool(extra_y or extra_x))
