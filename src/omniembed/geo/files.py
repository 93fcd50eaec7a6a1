"""Files around an export that the CLI and the playground share: regions read from GeoJSON, one grid
written to or read back from a GIS file (GeoTIFF, NetCDF, Zarr, or an export's ``.npz`` item), and a
grid's PCA false-colour preview.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.geo.export.writers import load_item, save_item, write_grid_file
from omniembed.geo.specs import BBox, PointBuffer

__all__ = ["GRID_SUFFIXES", "pca_rgb", "read_grid", "read_rois", "write_grid"]

GRID_SUFFIXES = {".tif": "geotiff", ".tiff": "geotiff", ".nc": "netcdf", ".zarr": "zarr"}
"""Suffixes of the GIS files one grid is written to (anything else: an ``.npz`` item)."""


def write_grid(da: Any, path: Path, provenance: dict[str, Any]) -> None:
    """Write one grid (an ``xarray.DataArray`` (d, y, x) with its CRS) to ``path``, by its suffix."""
    fmt = GRID_SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        write_grid_file(fmt, path, da, {k: v for k, v in provenance.items() if v is not None})
    else:
        save_item(path, da, {})


def read_grid(path: Path) -> np.ndarray:
    """A grid file (GeoTIFF, NetCDF, Zarr or an export's ``.npz`` item) as a float32 (d, y, x) array."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            return np.asarray(src.read(), dtype=np.float32)
    if suffix in (".nc", ".zarr"):
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf" if suffix == ".nc" else "zarr") as ds:
            return np.asarray(ds["embedding"].values, dtype=np.float32)
    data, _ = load_item(path)
    return np.asarray(data, dtype=np.float32)


def read_rois(path: Path) -> tuple[list[BBox | PointBuffer], list[str]]:
    """Regions of a GeoJSON file: each feature's bounding box (lon/lat); ids from ``id`` or properties."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParameterInvalid(f"{path} is not a readable GeoJSON file: {exc}", param="rois") from None
    features = doc.get("features", [doc] if doc.get("type") == "Feature" else [])
    rois: list[BBox | PointBuffer] = []
    ids: list[str] = []
    for k, f in enumerate(features):
        geom, props = f.get("geometry") or {}, f.get("properties") or {}
        if geom.get("type") == "Point" and "buffer_m" in props:
            lon, lat = geom["coordinates"][:2]
            rois.append(PointBuffer(lon, lat, props["buffer_m"]))
        else:
            from shapely.geometry import shape

            try:
                rois.append(BBox(*shape(geom).bounds))
            except OmniEmbedError:
                raise
            except Exception as exc:
                raise ParameterInvalid(f"feature {k} of {path} has no usable geometry: {exc}", param="rois") from None
        ids.append(str(f.get("id", props.get("id", f"roi{k:05d}"))))
    if not rois:
        raise ParameterInvalid(f"{path} holds no features", param="rois")
    return rois, ids


def pca_rgb(grid: np.ndarray) -> np.ndarray:
    """(D, H, W) -> (H, W, 3) uint8: the first three principal components, 2-98 % stretched."""
    d, h, w = grid.shape
    flat = np.nan_to_num(grid.reshape(d, -1).T.astype(np.float64))
    flat -= flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    comps = flat @ vt[: min(3, d)].T
    if comps.shape[1] < 3:
        comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = np.percentile(comps, 2, axis=0), np.percentile(comps, 98, axis=0)
    rgb = np.clip((comps - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    return (rgb.reshape(h, w, 3) * 255).round().astype(np.uint8)
