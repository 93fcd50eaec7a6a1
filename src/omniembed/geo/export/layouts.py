"""rs-embed's two export layouts, assembled from finished items: ``per_item`` (one ``.npz``/``.nc`` per region
with every model) and ``combined`` (one file for every region and model). Each file holds its manifest too
(npz: the ``__manifest__`` array; NetCDF: the ``manifest`` global attribute), so ``load_export`` needs no
sidecar; the ``.json`` sidecar is written as well when ``save_manifest``.

Array names as in rs-embed: ``embedding__<model>`` (per item) and ``embeddings__<model>`` (combined). A grid
item also gets ``grid_transform__<model>`` (6 affine terms), ``grid_crs__<model>``, ``grid_x__<model>`` and
``grid_y__<model>`` (cell centres). In per-item NetCDF each model's grid is a CF grid (its own
``spatial_ref__<model>`` grid mapping), so GDAL and rioxarray place it; combined grids are padded with NaN
to the largest region (``grid_shape__<model>`` keeps each region's rows and columns).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.atomic import atomic_path
from omniembed.geo.export.writers import _grid_array, _provenance
from omniembed.geo.types import ExportConfig

__all__ = ["MANIFEST_KEY", "write_combined", "write_per_item"]

MANIFEST_KEY = "__manifest__"
Load = Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]


def status_of(ok: int, total: int) -> str:
    """rs-embed's status of a set of items: ``ok`` (all), ``failed`` (none) or ``partial``."""
    return "ok" if ok == total else ("failed" if ok == 0 else "partial")


def _grid_arrays(model: str, da: Any) -> dict[str, np.ndarray]:
    return {f"grid_transform__{model}": np.asarray(da.attrs["transform"], dtype=np.float64),
            f"grid_crs__{model}": np.asarray(str(da.attrs["crs"])),
            f"grid_x__{model}": np.asarray(da.x.values, dtype=np.float64),
            f"grid_y__{model}": np.asarray(da.y.values, dtype=np.float64),
            f"grid_d__{model}": np.asarray([str(b) for b in da[da.dims[0]].values])}


def _save_npz(path: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    arrays = {**arrays, MANIFEST_KEY: np.frombuffer(json.dumps(manifest, default=str).encode(), dtype=np.uint8)}
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


def _sidecar(path: Path, manifest: dict[str, Any], config: ExportConfig) -> None:
    if config.save_manifest:
        side = path.with_suffix(".json")
        manifest["manifest_path"] = str(side)
        with atomic_path(side) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, default=str))


def _per_item_netcdf(path: Path, items: dict[str, tuple[Any, dict[str, Any]]], manifest: dict[str, Any],
                     record: dict[str, Any]) -> None:
    """One region's models in one NetCDF: pooled vectors as ``embedding__<model>``; grids as CF grids whose
    variables, dimensions and grid mapping carry the ``__<model>`` suffix."""
    import xarray as xr


    parts = []
    for model, (data, meta) in items.items():
        if hasattr(data, "dims"):
            ds = _grid_array(data, {})
            names = {n: f"{n}__{model}" for n in [*ds.variables, *ds.dims]}
            ds = ds.rename(names)
            ds[f"embedding__{model}"].attrs["grid_mapping"] = f"spatial_ref__{model}"
            ds[f"embedding__{model}"].attrs["model_version"] = str(meta.get("model_version") or "")
            ds[f"embedding__{model}"].encoding.pop("grid_mapping", None)
            ds.attrs = {}
            parts.append(ds)
        else:
            parts.append(xr.Dataset({f"embedding__{model}": xr.DataArray(
                np.asarray(data, np.float32), dims=(f"dim__{model}",),
                attrs={"model_version": str(meta.get("model_version") or "")})}))
    ds = xr.merge(parts, combine_attrs="drop") if parts else xr.Dataset()
    lon0, lat0, lon1, lat1 = record["lonlat_bounds"]
    versions = [str(m.get("model_version") or "") for _, m in items.values()]
    ds.attrs = {"Conventions": "CF-1.8", **_provenance(list(items), versions, record["start"], record["end"]),
                "region_id": record["id"], "region": json.dumps(record["spatial"]),
                "geospatial_lon_min": lon0, "geospatial_lat_min": lat0, "geospatial_lon_max": lon1,
                "geospatial_lat_max": lat1, "manifest": json.dumps(manifest)}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def write_per_item(out: Path, fmt: str, ids: list[str], records: list[dict[str, Any]], models: list[str],
                   load: Load, config: ExportConfig, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``out/<id>.npz|.nc`` per region with every model; returns one manifest per region."""
    out.mkdir(parents=True, exist_ok=True)
    by_point: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_point.setdefault(r["point_index"], []).append(r)
    manifests = []
    for k, name in enumerate(ids):
        recs = by_point.get(k, [])
        entries, items = [], {}
        for r in recs:
            entry: dict[str, Any] = {"model": r["model"], "status": "ok" if r["status"] == "done" else "failed"}
            if r["status"] == "done":
                items[r["model"]] = load(r)
            else:
                entry["error"] = r["error"]["message"]
                entry["error_code"] = r["error"]["code"]
            entries.append(entry)
        ok = len(items)
        manifest: dict[str, Any] = {"point_index": k, "id": name, "status": status_of(ok, len(models)),
                                    "models": entries, "summary": {"total_models": len(models), "ok_models": ok,
                                                                   "failed_models": len(models) - ok},
                                    "spatial": recs[0]["spatial"] if recs else None,
                                    "lonlat_bounds": recs[0]["lonlat_bounds"] if recs else None,
                                    "n_items": 1, "layout": "per_item", **meta,
                                    "embedding_meta": {m: im for m, (_, im) in items.items()}}
        path = out / f"{name}{'.npz' if fmt == 'npz' else '.nc'}"
        if fmt == "npz":
            arrays: dict[str, np.ndarray] = {}
            if config.save_embeddings:
                for model, (data, _) in items.items():
                    arrays[f"embedding__{model}"] = np.asarray(getattr(data, "values", data), dtype=np.float32)
                    if hasattr(data, "dims"):
                        arrays |= _grid_arrays(model, data)
            manifest |= {"npz_path": str(path), "npz_keys": sorted(arrays)}
            _save_npz(path, arrays, manifest)
        else:
            manifest["nc_path"] = str(path)
            _per_item_netcdf(path, items if config.save_embeddings else {}, manifest, recs[0])
        _sidecar(path, manifest, config)
        manifests.append(manifest)
    return manifests


def stack_items(values: list[np.ndarray | None]) -> np.ndarray | None:
    """Items (vectors or D x H x W grids; None for failed) as one array, NaN-padded / NaN-filled; None when no
    item is present."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    shape = tuple(max(v.shape[i] for v in present) for i in range(present[0].ndim))
    out = np.full((len(values), *shape), np.nan, dtype=np.float32)
    for i, v in enumerate(values):
        if v is not None:
            out[i][tuple(slice(0, s) for s in v.shape)] = v
    return out


def write_combined(out: Path, fmt: str, ids: list[str], records: list[dict[str, Any]], models: list[str],
                   load: Load, config: ExportConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """One file for all regions and models; returns its manifest."""
    n = len(ids)
    arrays: dict[str, np.ndarray] = {}
    entries = []
    spatials: list[Any] = [None] * n
    bounds: list[Any] = [None] * n
    metas: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        recs = sorted((r for r in records if r["model"] == model), key=lambda r: r["point_index"])
        values: list[np.ndarray | None] = [None] * n
        grids: list[Any] = [None] * n
        metas[model] = [{} for _ in range(n)]
        failed = {}
        for r in recs:
            k = r["point_index"]
            spatials[k], bounds[k] = r["spatial"], r["lonlat_bounds"]
            if r["status"] != "done":
                failed[k] = r["error"]["message"]
                continue
            data, item_meta = load(r)
            metas[model][k] = item_meta
            values[k] = np.asarray(getattr(data, "values", data), dtype=np.float32)
            grids[k] = data if hasattr(data, "dims") else None
        ok = n - len(failed)
        entry: dict[str, Any] = {"model": model, "status": status_of(ok, n), "ok": ok, "failed": len(failed)}
        if failed:
            entry["errors"] = {str(k): v for k, v in sorted(failed.items())}
        entries.append(entry)
        if ok and config.save_embeddings:
            stacked = stack_items(values)
            assert stacked is not None  # ok > 0: at least one item is present
            arrays[f"embeddings__{model}"] = stacked
            if any(g is not None for g in grids):
                nan6 = [np.nan] * 6
                arrays[f"grid_transform__{model}"] = np.asarray(
                    [g.attrs["transform"] if g is not None else nan6 for g in grids], dtype=np.float64)
                arrays[f"grid_crs__{model}"] = np.asarray([str(g.attrs["crs"]) if g is not None else "" for g in grids])
                arrays[f"grid_shape__{model}"] = np.asarray(
                    [g.shape[1:] if g is not None else (0, 0) for g in grids], dtype=np.int64)
    states = {e["status"] for e in entries}
    manifest: dict[str, Any] = {
        "layout": "combined", "status": states.pop() if len(states) == 1 else "partial",
        "n_items": n, "ids": ids, "spatials": spatials, "lonlat_bounds": bounds, "models": entries,
        "summary": {"total_models": len(models), "ok_models": sum(e["status"] == "ok" for e in entries),
                    "failed_models": sum(e["status"] == "failed" for e in entries)}, **meta,
        "embedding_meta": metas,
    }
    if fmt == "npz":
        manifest |= {"npz_path": str(out), "npz_keys": sorted(arrays)}
        _save_npz(out, arrays, manifest)
    else:
        manifest["nc_path"] = str(out)
        _combined_netcdf(out, arrays, manifest, ids, bounds)
    _sidecar(out, manifest, config)
    return manifest


def _combined_netcdf(out: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any], ids: list[str],
                     bounds: list[Any]) -> None:
    """The combined arrays along an ``item`` dimension, with each region's id, centroid lon/lat and polygon."""
    import xarray as xr
    from shapely.geometry import box

    polys = [box(*b) if b is not None else None for b in bounds]
    coords = {
        "item": xr.Variable("item", ids, {"long_name": "region id"}),
        "lon": xr.Variable("item", [p.centroid.x if p else np.nan for p in polys],
                           {"standard_name": "longitude", "units": "degrees_east"}),
        "lat": xr.Variable("item", [p.centroid.y if p else np.nan for p in polys],
                           {"standard_name": "latitude", "units": "degrees_north"}),
        "geometry": xr.Variable("item", [p.wkt if p else "" for p in polys],
                                {"long_name": "region polygon (WKT, lon/lat)", "crs": "EPSG:4326"}),
    }
    data_vars = {}
    for key, arr in arrays.items():
        model = key.split("__", 1)[1]
        rest = {1: (f"dim__{model}",), 3: (f"d__{model}", f"y__{model}", f"x__{model}")}.get(arr.ndim - 1)
        if key.startswith("grid_transform"):
            rest = ("affine",)
        elif key.startswith("grid_shape"):
            rest = ("yx",)
        elif key.startswith("grid_crs"):
            rest = ()
        values = arr if arr.dtype.kind != "U" else arr.astype(object)
        data_vars[key] = xr.DataArray(values, dims=("item", *(rest or ())))
    ds = xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.8", "title": "omniembed region embeddings",
                                                     "manifest": json.dumps(manifest, default=str)})
    with atomic_path(out) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
