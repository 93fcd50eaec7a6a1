"""``load_export``: read an export back as rs-embed's ``ExportResult`` (one ``ModelResult`` per model, rows in
region order, NaN rows for regions that failed), whichever layout wrote it: a combined file (``.npz`` /
``.nc`` / its ``.json``), a per-item folder, or omniembed's folder (``manifest.json`` + ``.items``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.geo.export.layouts import MANIFEST_KEY, stack_items, status_of
from omniembed.geo.export.manifest import array_key
from omniembed.geo.export.writers import load_item, load_item_input

__all__ = ["ExportResult", "ModelResult", "load_export"]


@dataclass
class ModelResult:
    """One model over all regions: ``embeddings`` (n_items, D) pooled or (n_items, D, H, W) grids (NaN where a
    region failed; None when all failed), ``inputs`` (n_items, C, H, W) the rasters the model was fed when the
    export saved them (``save_inputs``; NaN-padded to the largest, NaN rows where none), ``meta`` per region."""

    name: str
    status: str
    embeddings: np.ndarray | None
    inputs: np.ndarray | None
    meta: list[dict[str, Any]]
    error: str | None = None
    grids: list[Any] = field(default_factory=list)
    """omniembed: each region's grid as a georeferenced ``xarray.DataArray`` (None for failed or pooled)."""


@dataclass
class ExportResult:
    """A loaded export: ``layout``, ``spatials`` (dicts), ``temporal``, ``n_items``, ``status``, ``models`` (by
    name) and the raw ``manifest``."""

    layout: str
    spatials: list[dict[str, Any]]
    temporal: dict[str, Any] | None
    n_items: int
    status: str
    models: dict[str, ModelResult]
    manifest: dict[str, Any]

    def embedding(self, model: str) -> np.ndarray:
        if model not in self.models:
            raise KeyError(f"Model {model!r} not found in export. Available models: {sorted(self.models)}")
        result = self.models[model]
        if result.embeddings is None:
            raise ValueError(f"Model {model!r} has no embeddings (status={result.status!r}). Error: {result.error}")
        return result.embeddings

    @property
    def ok_models(self) -> list[str]:
        return [n for n, r in self.models.items() if r.status == "ok"]

    @property
    def failed_models(self) -> list[str]:
        return [n for n, r in self.models.items() if r.status == "failed"]


def _grid(arrays: Any, name: str, values: np.ndarray, index: int | None = None) -> Any:
    model = array_key(name) if f"grid_transform__{name}" not in arrays else name  # earlier exports: raw name
    key = f"grid_transform__{model}"
    if key not in arrays:
        return None
    import xarray as xr

    pick = (lambda a: a[index]) if index is not None else (lambda a: a)
    transform = tuple(np.asarray(pick(arrays[key]), dtype=float).tolist())
    crs = str(np.asarray(pick(arrays[f"grid_crs__{model}"])))
    if index is not None:
        h, w = (int(v) for v in arrays[f"grid_shape__{model}"][index])
        values = values[:, :h, :w]
        xs = transform[2] + transform[0] * (np.arange(w) + 0.5)
        ys = transform[5] + transform[4] * (np.arange(h) + 0.5)
        ds: list[Any] = list(range(values.shape[0]))
    else:
        xs, ys = arrays[f"grid_x__{model}"], arrays[f"grid_y__{model}"]
        ds = [str(b) for b in arrays[f"grid_d__{model}"]]
    return xr.DataArray(values, dims=("d", "y", "x"), coords={"d": ds, "y": ys, "x": xs},
                        attrs={"crs": crs, "transform": transform})


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, manifest) of a combined or per-item file."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != MANIFEST_KEY}
            manifest = json.loads(bytes(z[MANIFEST_KEY]).decode()) if MANIFEST_KEY in z.files else {}
        return arrays, manifest
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        manifest = json.loads(ds.attrs.get("manifest", "{}"))
        arrays = {str(k): np.asarray(v.values) for k, v in ds.data_vars.items() if not str(k).startswith("spatial_ref")}
        for k in list(arrays):
            if k.startswith("embedding__") and f"x__{k.split('__', 1)[1]}" in ds.coords:  # a per-item CF grid
                model = k.split("__", 1)[1]
                da = ds[k]
                arrays |= {f"grid_transform__{model}": np.asarray(da.attrs.get("transform", [np.nan] * 6)),
                           f"grid_crs__{model}": np.asarray(da.attrs.get("crs", "")),
                           f"grid_x__{model}": np.asarray(ds[f"x__{model}"].values),
                           f"grid_y__{model}": np.asarray(ds[f"y__{model}"].values),
                           f"grid_d__{model}": np.asarray([str(b) for b in ds[da.dims[0]].values])}
    return arrays, manifest


def _rows(ref: Any, arrays: dict[str, np.ndarray], n: int) -> np.ndarray | None:
    """A combined manifest's array reference (``npz_key`` [+ ``indices``] or ``npz_keys`` + ``indices``) as
    (n, ...) rows, NaN where a region has none."""
    if not isinstance(ref, dict):
        return None
    if ref.get("npz_key") in arrays:
        arr = np.asarray(arrays[ref["npz_key"]], dtype=np.float32)
        idx = ref.get("indices")
        if idx is None:
            return arr
        rows: list[np.ndarray | None] = [None] * n
        for j, i in enumerate(idx):
            rows[int(i)] = arr[j]
        return stack_items(rows)
    keys, idx = ref.get("npz_keys") or [], ref.get("indices") or []
    rows = [None] * n
    for k, i in zip(keys, idx, strict=False):
        if k in arrays:
            rows[int(i)] = np.asarray(arrays[k], dtype=np.float32)
    return stack_items(rows)


def _combined(path: Path) -> ExportResult:
    if path.suffix == ".json":
        manifest = json.loads(path.read_text())
        path = Path(manifest.get("npz_path") or manifest.get("nc_path") or path.with_suffix(".npz"))
    arrays, manifest = _read(path)
    n = int(manifest.get("n_items", 0))
    models: dict[str, ModelResult] = {}
    for entry in manifest.get("models", []):
        name = entry["model"]
        key = (entry.get("embeddings") or {}).get("npz_key") or f"embeddings__{name}"
        emb = arrays.get(key)
        metas = entry.get("metas") or manifest.get("embedding_meta", {}).get(name) or [{}] * n
        errors = entry.get("errors_by_index") or entry.get("errors") or {}
        gkey = array_key(name) if f"grid_transform__{array_key(name)}" in arrays else name
        grids = [_grid(arrays, gkey, emb[i], i) if emb is not None and str(i) not in errors else None
                 for i in range(n)] if f"grid_transform__{gkey}" in arrays else []
        error = entry.get("error") or ("; ".join(errors.values()) if entry["status"] == "failed" else None)
        models[name] = ModelResult(name, entry["status"], emb, _rows(entry.get("inputs"), arrays, n),
                                   [m or {} for m in metas], error if entry["status"] == "failed" else None, grids)
    return ExportResult("combined", manifest.get("spatials", []), manifest.get("temporal"), n,
                        manifest.get("status", "ok"), models, manifest)


def _per_item(folder: Path) -> ExportResult:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npz", ".nc") and p.is_file())
    points = []
    for p in files:
        arrays, manifest = _read(p)
        if "point_index" in manifest:
            points.append((manifest["point_index"], arrays, manifest))
    if not points:
        raise ValueError(f"{folder} holds no export files (per-item .npz/.nc or manifest.json)")
    points.sort(key=lambda t: t[0])
    names = list(dict.fromkeys(e["model"] for _, _, m in points for e in m.get("models", [])))
    models = {}
    for name in names:
        values: list[np.ndarray | None] = []
        inputs: list[np.ndarray | None] = []
        metas: list[dict[str, Any]] = []
        grids: list[Any] = []
        errors: list[str] = []
        for _, arrays, manifest in points:
            entry: dict[str, Any] = next((e for e in manifest.get("models", []) if e["model"] == name), {})
            key = (entry.get("embedding") or {}).get("npz_key") or f"embedding__{name}"
            v = arrays.get(key)
            values.append(None if v is None else np.asarray(v, np.float32))
            x = arrays.get((entry.get("input") or {}).get("npz_key", ""))
            inputs.append(None if x is None else np.asarray(x, np.float32))
            metas.append(entry.get("meta") or manifest.get("embedding_meta", {}).get(name) or {})
            grids.append(_grid(arrays, name, np.asarray(v, np.float32)) if v is not None else None)
            if entry.get("error"):
                errors.append(str(entry["error"]))
        ok = sum(v is not None for v in values)
        status = status_of(ok, len(values))
        models[name] = ModelResult(name, status, stack_items(values), stack_items(inputs), metas,
                                   "; ".join(errors) if status == "failed" else None,
                                   grids if any(g is not None for g in grids) else [])
    manifests = [m for _, _, m in points]
    states = {m.status for m in models.values()}
    return ExportResult("per_item", [m.get("spatial") or {} for m in manifests], manifests[0].get("temporal"),
                        len(points), states.pop() if len(states) == 1 else "partial", models,
                        {"items": manifests})


def _folder(folder: Path) -> ExportResult:

    manifest = json.loads((folder / "manifest.json").read_text())
    items = manifest["items"]
    ids = list(dict.fromkeys(r["id"] for r in items))
    models = {}
    for name in manifest["models"]:
        recs = {r["id"]: r for r in items if r["model"] == name}
        values: list[np.ndarray | None] = []
        inputs: list[np.ndarray | None] = []
        metas: list[dict[str, Any]] = []
        grids: list[Any] = []
        for i in ids:
            r = recs.get(i)
            if r is None or r["status"] != "done":
                values.append(None)
                inputs.append(None)
                metas.append({})
                grids.append(None)
                continue
            data, meta = load_item(folder / r["item_file"])
            inputs.append(load_item_input(folder / r["item_file"])[0])
            values.append(np.asarray(getattr(data, "values", data), np.float32))
            metas.append(meta)
            grids.append(data if hasattr(data, "dims") else None)
        ok = sum(v is not None for v in values)
        status = status_of(ok, len(ids))
        errs = [r["error"]["message"] for r in recs.values() if r["status"] != "done"]
        models[name] = ModelResult(name, status, stack_items(values), stack_items(inputs), metas,
                                   "; ".join(errs) if status == "failed" else None,
                                   grids if any(g is not None for g in grids) else [])
    first = {r["id"]: r["spatial"] for r in items}
    states = {m.status for m in models.values()}
    return ExportResult("folder", [first[i] for i in ids], manifest.get("temporal"), len(ids),
                        states.pop() if len(states) == 1 else "partial", models, manifest)


def load_export(path: str | os.PathLike[str]) -> ExportResult:
    """Load an export written by ``export_batch``: a file (combined: ``.npz``, ``.nc`` or its ``.json``) or a
    folder (per-item files, or omniembed's folder with ``manifest.json``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"Export path does not exist: {str(p)!r}")
    if p.is_dir():
        return _folder(p) if (p / "manifest.json").is_file() else _per_item(p)
    return _combined(p)
