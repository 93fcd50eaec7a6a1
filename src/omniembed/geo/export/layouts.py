"""rs-embed's two export layouts, assembled from finished items: ``per_item`` (one ``.npz``/``.nc`` per region
with every model) and ``combined`` (one file for every region and model). Each file holds its manifest too
(npz: the ``__manifest__`` array; NetCDF: the ``manifest`` global attribute), so ``load_export`` needs no
sidecar; the ``.json`` sidecar is written as well when ``save_manifest``.

Array names and manifest entries as rs-embed 0.3.1 writes them (``<key>`` is the model name with runs of
other characters than letters, digits and ``_`` made one ``_``):

- per item: ``embedding__<key>`` and, with ``save_inputs``, ``input_chw__<key>`` (the raster the model was
  fed, raw units; one input shared by models that read the same pixels is stored once, the later entries
  say ``dedup_reused``); each ``models[]`` entry has ``model``, ``status``, ``sensor``, ``input`` (``npz_key``,
  ``dtype``, ``shape``, ``sha1``, ``inspection``), ``embedding`` (``npz_key``, ``dtype``, ``shape``,
  ``sha1``), ``meta`` (the embedding's meta), ``error`` when failed, and ``resume_skipped``.
- combined: ``embeddings__<key>`` (regions x ..., NaN rows for failed regions, grids NaN-padded to the
  largest region with ``grid_shape__<key>`` keeping each region's rows and columns) and ``inputs_bchw__<key>``
  (or ``input_chw__<key>__<i>`` per region when their shapes differ); each entry has ``embeddings``,
  ``inputs``, ``metas``, ``failed_indices`` / ``errors_by_index``; the summary counts ``partial_models``.

A grid item also gets ``grid_transform__<key>`` (6 affine terms), ``grid_crs__<key>``, ``grid_x__<key>`` and
``grid_y__<key>`` (cell centres). In per-item NetCDF each model's grid is a CF grid (its own
``spatial_ref__<key>`` grid mapping with ``crs_wkt`` and ``GeoTransform``), so GDAL and rioxarray place it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.atomic import atomic_path
from omniembed.geo.export.manifest import array_key, digest, models_status, models_summary, utc_now
from omniembed.geo.export.writers import _grid_array, _provenance
from omniembed.geo.types import ExportConfig
from omniembed.version import __version__

__all__ = ["MANIFEST_KEY", "Loaders", "write_combined", "write_per_item"]

MANIFEST_KEY = "__manifest__"


@dataclass(frozen=True)
class Loaders:
    """How the layouts read a finished item: ``item(record)`` gives (vector or grid, meta), ``input(record)``
    (the model's input array, its description) or (None, None)."""

    item: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]
    input: Callable[[dict[str, Any]], tuple[np.ndarray | None, dict[str, Any] | None]]


def status_of(ok: int, total: int) -> str:
    """rs-embed's status of a set of items: ``ok`` (all), ``failed`` (none) or ``partial``."""
    return "ok" if ok == total else ("failed" if ok == 0 else "partial")


def _grid_arrays(key: str, da: Any) -> dict[str, np.ndarray]:
    return {f"grid_transform__{key}": np.asarray(da.attrs["transform"], dtype=np.float64),
            f"grid_crs__{key}": np.asarray(str(da.attrs["crs"])),
            f"grid_x__{key}": np.asarray(da.x.values, dtype=np.float64),
            f"grid_y__{key}": np.asarray(da.y.values, dtype=np.float64),
            f"grid_d__{key}": np.asarray([str(b) for b in da[da.dims[0]].values])}


def _error_fields(error: dict[str, Any]) -> dict[str, Any]:
    """A failed entry's error: rs-embed's ``error`` (a string), plus the code and the whole error as data."""
    return {"error": str(error.get("message", "")), "error_code": error.get("code"), "error_detail": error}


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


def _per_item_netcdf(path: Path, items: dict[str, tuple[Any, dict[str, Any]]], inputs: dict[str, np.ndarray],
                     manifest: dict[str, Any], record: dict[str, Any]) -> None:
    """One region's models in one NetCDF: pooled vectors as ``embedding__<key>``; grids as CF grids whose
    variables, dimensions and grid mapping carry the ``__<key>`` suffix (each with its own ``spatial_ref__<key>``,
    so GDAL and rioxarray read every grid's CRS and transform); inputs as ``input_chw__<key>``."""
    import xarray as xr

    parts = []
    for model, (data, meta) in items.items():
        key = array_key(model)
        version = {"model": model, "model_version": str(meta.get("model_version") or "")}
        if hasattr(data, "dims"):
            ds = _grid_array(data, {})
            ds = ds.rename({n: f"{n}__{key}" for n in [*ds.variables, *ds.dims]})
            var = ds[f"embedding__{key}"]
            var.encoding.pop("grid_mapping", None)
            var.attrs |= {"grid_mapping": f"spatial_ref__{key}", **version}
            ds.attrs = {}
            parts.append(ds)
        else:
            parts.append(xr.Dataset({f"embedding__{key}": xr.DataArray(
                np.asarray(data, np.float32), dims=(f"dim__{key}",), attrs=version)}))
    for ikey, x in inputs.items():
        dims = tuple(f"{d}__{ikey}" for d in ("frame", "band", "row", "col")[4 - x.ndim:])
        parts.append(xr.Dataset({ikey: xr.DataArray(x, dims=dims, attrs={"long_name": "model input (raw units)"})}))
    # distinct names, so nothing conflicts: "no_conflicts" keeps every variable's attributes (the grid
    # mappings' crs_wkt / GeoTransform and the data's grid_mapping), where "drop" would strip them all
    ds = xr.merge(parts, combine_attrs="no_conflicts", compat="no_conflicts", join="outer") if parts else xr.Dataset()
    lon0, lat0, lon1, lat1 = record["lonlat_bounds"]
    versions = [str(m.get("model_version") or "") for _, m in items.values()]
    ds.attrs = {"Conventions": "CF-1.8", **_provenance(list(items), versions, record["start"], record["end"]),
                "region_id": record["id"], "region": json.dumps(record["spatial"]),
                "geospatial_lon_min": lon0, "geospatial_lat_min": lat0, "geospatial_lon_max": lon1,
                "geospatial_lat_max": lat1, "manifest": json.dumps(manifest, default=str)}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def _entry(record: dict[str, Any], loaders: Loaders, config: ExportConfig, arrays: dict[str, np.ndarray],
           shared: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], tuple[Any, dict[str, Any]] | None]:
    """One model's ``models[]`` entry of a per-item manifest (its arrays added to ``arrays``; ``shared``:
    the inputs already stored for this region, by digest) and the loaded item."""
    model, key = record["model"], array_key(record["model"])
    entry: dict[str, Any] = {"model": model, "status": "ok", "sensor": record.get("sensor")}
    if record["status"] != "done":
        entry |= {"status": "failed", **_error_fields(record["error"]), "input": None, "embedding": None,
                  "meta": None, "resume_skipped": False}
        return entry, None
    data, meta = loaders.item(record)
    entry["sensor"] = meta.get("sensor") or record.get("sensor")
    entry["input"] = None
    x, about = loaders.input(record) if config.save_inputs else (None, None)
    if x is not None:
        sha = digest(x)
        if sha in shared:
            entry["input"] = {**shared[sha], "dedup_reused": True}
        else:
            arrays[f"input_chw__{key}"] = x
            entry["input"] = shared[sha] = {"npz_key": f"input_chw__{key}", "dtype": str(x.dtype),
                                             "shape": list(x.shape), "sha1": sha, **(about or {})}
    if config.save_embeddings:
        e = np.asarray(getattr(data, "values", data), dtype=np.float32)
        arrays[f"embedding__{key}"] = e
        entry["embedding"] = {"npz_key": f"embedding__{key}", "dtype": str(e.dtype), "shape": list(e.shape),
                              "sha1": digest(e)}
        entry["meta"] = meta
        if hasattr(data, "dims"):
            arrays |= _grid_arrays(key, data)
    else:
        entry["embedding"], entry["meta"] = None, None
    entry["resume_skipped"] = bool(record.get("resume_skipped"))
    return entry, (data, meta)


def write_per_item(out: Path, fmt: str, ids: list[str], records: list[dict[str, Any]], models: list[str],
                   loaders: Loaders, config: ExportConfig, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``out/<id>.npz|.nc`` per region with every model; returns one manifest per region."""
    out.mkdir(parents=True, exist_ok=True)
    by_point: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_point.setdefault(r["point_index"], []).append(r)
    manifests = []
    for k, name in enumerate(ids):
        recs = by_point.get(k, [])
        entries: list[dict[str, Any]] = []
        items: dict[str, tuple[Any, dict[str, Any]]] = {}
        arrays: dict[str, np.ndarray] = {}
        shared: dict[str, dict[str, Any]] = {}
        for r in recs:
            entry, item = _entry(r, loaders, config, arrays, shared)
            entries.append(entry)
            if item is not None:
                items[r["model"]] = item
        fingerprint = hashlib.sha1("".join(r["request_fingerprint"] for r in recs).encode()).hexdigest()
        manifest: dict[str, Any] = {
            "created_at": utc_now(), "point_index": k, "id": name, "status": models_status(entries),
            "backend": meta["backend"], "device": meta["device"], "models": entries,
            "spatial": recs[0]["spatial"] if recs else None, "temporal": meta["temporal"], "output": meta["output"],
            "summary": models_summary(entries, partial=False), "request_fingerprint": fingerprint,
            "resume_skipped": bool(recs) and all(r.get("resume_skipped") for r in recs),
            "lonlat_bounds": recs[0]["lonlat_bounds"] if recs else None, "n_items": 1, "layout": "per_item",
            "format": meta["format"], "window": meta["window"], "input_prep": meta["input_prep"],
            "omniembed_version": __version__,
        }
        path = out / f"{name}{'.npz' if fmt == 'npz' else '.nc'}"
        if fmt == "npz":
            manifest |= {"npz_path": str(path), "npz_keys": sorted(arrays)}
            _save_npz(path, arrays, manifest)
        else:
            manifest |= {"nc_path": str(path), "nc_variables": sorted(
                k for k in arrays if k.startswith(("embedding__", "input_chw__")))}
            inputs = {k: v for k, v in arrays.items() if k.startswith("input_chw__")}
            _per_item_netcdf(path, items if config.save_embeddings else {}, inputs, manifest, recs[0])
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


def _combined_inputs(key: str, inputs: list[np.ndarray | None], arrays: dict[str, np.ndarray],
                     shared: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A model's inputs over the regions, as rs-embed stores them: ``inputs_bchw__<key>`` when they stack
    (``indices`` when some regions have none), else one ``input_chw__<key>__<i>`` per region; an identical
    set already stored for another model is referenced (``dedup_reused``)."""
    idx = [i for i, x in enumerate(inputs) if x is not None]
    if not idx:
        return None
    present = [inputs[i] for i in idx]
    assert all(x is not None for x in present)
    if len({x.shape for x in present if x is not None}) == 1:
        stacked = np.stack([x for x in present if x is not None])
        sha = digest(stacked) + repr(idx)
        if sha in shared:
            return {**shared[sha], "dedup_reused": True}
        arrays[f"inputs_bchw__{key}"] = stacked
        ref: dict[str, Any] = {"npz_key": f"inputs_bchw__{key}", "shape": list(stacked.shape),
                               "dtype": str(stacked.dtype)}
        if len(idx) != len(inputs):
            ref["indices"] = idx
    else:
        sha = "".join(digest(x) for x in present if x is not None) + repr(idx)
        if sha in shared:
            return {**shared[sha], "dedup_reused": True}
        keys = [f"input_chw__{key}__{i:05d}" for i in idx]
        arrays |= {k: x for k, x in zip(keys, present, strict=True) if x is not None}
        ref = {"npz_keys": keys, "indices": idx}
    shared[sha] = ref
    return ref


def write_combined(out: Path, fmt: str, ids: list[str], records: list[dict[str, Any]], models: list[str],
                   loaders: Loaders, config: ExportConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """One file for all regions and models; returns its manifest."""
    n = len(ids)
    arrays: dict[str, np.ndarray] = {}
    entries = []
    spatials: list[Any] = [None] * n
    bounds: list[Any] = [None] * n
    shared: dict[str, dict[str, Any]] = {}
    for model in models:
        key = array_key(model)
        recs = sorted((r for r in records if r["model"] == model), key=lambda r: r["point_index"])
        values: list[np.ndarray | None] = [None] * n
        grids: list[Any] = [None] * n
        metas: list[dict[str, Any] | None] = [None] * n
        inputs: list[np.ndarray | None] = [None] * n
        failed: dict[int, dict[str, Any]] = {}
        sensor = next((r.get("sensor") for r in recs if r.get("sensor")), None)
        for r in recs:
            k = r["point_index"]
            spatials[k], bounds[k] = r["spatial"], r["lonlat_bounds"]
            if r["status"] != "done":
                failed[k] = r["error"]
                continue
            data, item_meta = loaders.item(r)
            metas[k] = item_meta
            sensor = item_meta.get("sensor") or sensor
            values[k] = np.asarray(getattr(data, "values", data), dtype=np.float32)
            grids[k] = data if hasattr(data, "dims") else None
            if config.save_inputs:
                inputs[k] = loaders.input(r)[0]
        ok = n - len(failed)
        entry: dict[str, Any] = {"model": model, "sensor": sensor, "status": status_of(ok, n), "ok": ok,
                                 "failed": len(failed), "embeddings": None, "metas": metas,
                                 "inputs": _combined_inputs(key, inputs, arrays, shared),
                                 "resume_skipped": bool(recs) and all(r.get("resume_skipped") for r in recs),
                                 "resume_skipped_indices": [r["point_index"] for r in recs if r.get("resume_skipped")]}
        if failed:
            entry["failed_indices"] = sorted(failed)
            entry["errors_by_index"] = {str(k): e.get("message", "") for k, e in sorted(failed.items())}
            if not ok:  # the whole model failed: rs-embed's model-level error
                entry |= _error_fields(failed[min(failed)])
        if ok and config.save_embeddings:
            stacked = stack_items(values)
            assert stacked is not None  # ok > 0: at least one item is present
            arrays[f"embeddings__{key}"] = stacked
            entry["embeddings"] = {"npz_key": f"embeddings__{key}", "shape": list(stacked.shape),
                                   "dtype": str(stacked.dtype)}
            if any(g is not None for g in grids):
                nan6 = [np.nan] * 6
                arrays[f"grid_transform__{key}"] = np.asarray(
                    [g.attrs["transform"] if g is not None else nan6 for g in grids], dtype=np.float64)
                arrays[f"grid_crs__{key}"] = np.asarray([str(g.attrs["crs"]) if g is not None else "" for g in grids])
                arrays[f"grid_shape__{key}"] = np.asarray(
                    [g.shape[1:] if g is not None else (0, 0) for g in grids], dtype=np.int64)
        entries.append(entry)
    manifest: dict[str, Any] = {
        "created_at": utc_now(), "status": models_status(entries), "stage": "done", "resume_incomplete": False,
        "backend": meta["backend"], "device": meta["device"], "models": entries, "n_items": n,
        "temporal": meta["temporal"], "output": meta["output"], "spatials": spatials,
        "summary": models_summary(entries), "completed_at": utc_now(),
        "request_fingerprint": hashlib.sha1("".join(r["request_fingerprint"] for r in records).encode()).hexdigest(),
        "resume_skipped": bool(entries) and all(e["resume_skipped"] for e in entries),
        "layout": "combined", "ids": ids, "lonlat_bounds": bounds, "format": meta["format"],
        "window": meta["window"], "input_prep": meta["input_prep"], "omniembed_version": __version__,
    }
    if fmt == "npz":
        manifest |= {"npz_path": str(out), "npz_keys": sorted(arrays)}
        _save_npz(out, arrays, manifest)
    else:
        manifest |= {"nc_path": str(out), "nc_variables": sorted(arrays)}
        _combined_netcdf(out, arrays, manifest, ids, bounds)
    _sidecar(out, manifest, config)
    return manifest


def _dims(key: str, arr: np.ndarray) -> tuple[str, ...]:
    """A combined array's NetCDF dimensions: ``item`` first for per-region rows, then its own."""
    kind, rest = key.split("__", 1)
    own = rest.replace("__", "_")
    if kind == "inputs_bchw":
        return (f"input_item__{own}", *(f"{d}__{own}" for d in ("frame", "band", "row", "col")[5 - arr.ndim:]))
    if kind == "input_chw":
        return tuple(f"{d}__{own}" for d in ("frame", "band", "row", "col")[4 - arr.ndim:])
    if kind == "grid_transform":
        return ("item", "affine")
    if kind == "grid_shape":
        return ("item", "yx")
    if kind == "grid_crs":
        return ("item",)
    return ("item", *({1: (f"dim__{own}",), 3: (f"d__{own}", f"y__{own}", f"x__{own}")}.get(arr.ndim - 1, ())))


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
    data_vars = {key: xr.DataArray(arr if arr.dtype.kind != "U" else arr.astype(object), dims=_dims(key, arr))
                 for key, arr in arrays.items()}
    ds = xr.Dataset(data_vars, coords=coords, attrs={"Conventions": "CF-1.8", "title": "omniembed region embeddings",
                                                     "manifest": json.dumps(manifest, default=str)})
    with atomic_path(out) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
