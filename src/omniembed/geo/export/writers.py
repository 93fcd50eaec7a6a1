"""Writers: per-item records (the unit of resume) and the final files of each format, all atomic
(written to a temporary name in the same folder, then renamed)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMATS", "atomic_path", "load_item", "save_item", "write_final"]

FORMATS = ("npz", "netcdf", "zarr", "geotiff", "geoparquet")


@contextmanager
def atomic_path(target: Path, *, directory: bool = False) -> Any:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) if directory else \
        target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if directory and target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()


def save_item(path: Path, data: Any, meta: dict[str, Any]) -> None:
    """One embedding (vector or grid DataArray) as an .npz with its metadata (JSON) inside."""
    arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if hasattr(data, "dims"):
        arrays |= {"data": np.asarray(data.values, dtype=np.float32), "x": data.x.values, "y": data.y.values,
                   "band": np.asarray([str(b) for b in data.band.values]),
                   "transform": np.asarray(data.attrs["transform"], dtype=np.float64),
                   "crs": np.frombuffer(str(data.attrs["crs"]).encode(), dtype=np.uint8)}
    else:
        arrays["data"] = np.asarray(data, dtype=np.float32)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def load_item(path: Path) -> tuple[Any, dict[str, Any]]:
    """(vector or DataArray, meta) from ``save_item``'s file."""
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        if "x" not in z:
            return z["data"], meta
        import xarray as xr

        da = xr.DataArray(z["data"], dims=("band", "y", "x"),
                          coords={"band": list(z["band"]), "y": z["y"], "x": z["x"]},
                          attrs={"crs": bytes(z["crs"]).decode(), "transform": tuple(z["transform"].tolist())})
        return da, meta


def _polygon_wkb(bounds: Sequence[float]) -> bytes:
    from shapely.geometry import box

    return bytes(box(*bounds).wkb)


def _write_geoparquet(target: Path, records: list[dict[str, Any]], vectors: list[np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": [r["id"] for r in records],
        "model": [r["model"] for r in records],
        "embedding": pa.array([v.tolist() for v in vectors], type=pa.list_(pa.float32())),
        "spatial": [json.dumps(r["spatial"]) for r in records],
        "start": [r.get("start") for r in records],
        "end": [r.get("end") for r in records],
        "geometry": pa.array([_polygon_wkb(r["lonlat_bounds"]) for r in records], type=pa.binary()),
    })
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": None,
                                    "bbox": [min(r["lonlat_bounds"][0] for r in records),
                                             min(r["lonlat_bounds"][1] for r in records),
                                             max(r["lonlat_bounds"][2] for r in records),
                                             max(r["lonlat_bounds"][3] for r in records)]}}}
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def _pooled_dataset(records: list[dict[str, Any]], vectors: list[np.ndarray]) -> Any:
    import xarray as xr

    by_model: dict[str, list[int]] = {}
    for k, r in enumerate(records):
        by_model.setdefault(r["model"], []).append(k)
    ds = xr.Dataset()
    for model, ks in by_model.items():
        ds[model] = xr.DataArray(np.stack([vectors[k] for k in ks]), dims=(f"{model}_roi", f"{model}_dim"),
                                 coords={f"{model}_roi": [records[k]["id"] for k in ks]})
    return ds


def _write_grid_file(fmt: str, target: Path, da: Any) -> None:
    if fmt == "geotiff":
        import rasterio
        from affine import Affine

        with atomic_path(target) as tmp, rasterio.open(
            tmp, "w", driver="GTiff", count=da.shape[0], height=da.shape[1], width=da.shape[2], dtype="float32",
            crs=da.attrs["crs"], transform=Affine(*da.attrs["transform"]), compress="deflate",
        ) as dst:
            dst.write(np.asarray(da.values, dtype=np.float32))
            for i, b in enumerate(da.band.values, start=1):
                dst.set_band_description(i, str(b))
        return
    out = da.copy()
    out.attrs = {"crs": str(da.attrs["crs"]), "transform": list(da.attrs["transform"])}
    out["band"] = [str(b) for b in da.band.values]
    ds = out.to_dataset(name="embedding")
    if fmt == "netcdf":
        with atomic_path(target) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
    else:
        with atomic_path(target, directory=True) as tmp:
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)


def write_final(fmt: str, out_dir: Path, records: list[dict[str, Any]],
                load: Callable[[dict[str, Any]], Any]) -> list[str]:
    """Assemble the finished items into the format's files; returns the files written (relative)."""
    if not records:
        return []
    grid = records[0]["output"] == "grid"
    written: list[str] = []
    if grid:
        ext = {"npz": "npz", "netcdf": "nc", "zarr": "zarr", "geotiff": "tif"}[fmt]
        for r in records:
            rel = f"{r['model']}/{r['id']}.{ext}"
            target = out_dir / rel
            if fmt == "npz":
                with atomic_path(target) as tmp:
                    shutil.copyfile(out_dir / r["item_file"], tmp)
            else:
                _write_grid_file(fmt, target, load(r))
            r["file"] = rel
            written.append(rel)
        return written
    vectors = [np.asarray(load(r), dtype=np.float32) for r in records]
    if fmt == "npz":
        arrays: dict[str, Any] = {}
        for model in dict.fromkeys(r["model"] for r in records):
            ks = [k for k, r in enumerate(records) if r["model"] == model]
            arrays[model] = np.stack([vectors[k] for k in ks])
            arrays[f"{model}__ids"] = np.asarray([records[k]["id"] for k in ks])
        with atomic_path(out_dir / "embeddings.npz") as tmp, tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        written.append("embeddings.npz")
    elif fmt == "geoparquet":
        _write_geoparquet(out_dir / "embeddings.parquet", records, vectors)
        written.append("embeddings.parquet")
    elif fmt == "netcdf":
        with atomic_path(out_dir / "embeddings.nc") as tmp:
            _pooled_dataset(records, vectors).to_netcdf(tmp, engine="h5netcdf")
        written.append("embeddings.nc")
    elif fmt == "zarr":
        with atomic_path(out_dir / "embeddings.zarr", directory=True) as tmp:
            _pooled_dataset(records, vectors).to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        written.append("embeddings.zarr")
    for r in records:
        r["file"] = written[0]
    return written
