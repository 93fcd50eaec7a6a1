"""Writers: per-item records (the unit of resume) and the final files of each format, all atomic
(written to a temporary name in the same folder, then renamed).

Every final file carries its georeference and provenance the way GIS tools read it:

- GeoParquet 1.1 (written by geopandas): CRS as PROJJSON (EPSG:4326), WKB polygons, a ``bbox`` covering column.
- NetCDF / Zarr grids: CF conventions (a ``spatial_ref`` grid-mapping variable with ``crs_wkt`` and
  ``GeoTransform``, ``grid_mapping`` on the data, x/y with standard names and units; written by rioxarray),
  plus GDAL's ``_CRS`` attribute in Zarr for GDAL < 3.9, which does not read the CF grid mapping there.
- Pooled NetCDF / Zarr: per region its id, centroid lon/lat and polygon (WKT, EPSG:4326).
- GeoTIFF: Cloud-Optimized GeoTIFF (tiled, overviews when larger than a tile), nodata NaN, band descriptions.
- Global attributes / tags everywhere: model, model_version, start_date, end_date, omniembed_version.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omniembed.atomic import atomic_path
from omniembed.version import __version__

__all__ = ["FORMATS", "band_names", "item_fingerprint", "load_item", "load_item_input", "save_item", "write_final",
           "write_grid_file"]

FORMATS = ("npz", "netcdf", "zarr", "geotiff", "geoparquet")
CONVENTIONS = "CF-1.8"
LONLAT = "EPSG:4326"


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, default=str).encode(), dtype=np.uint8)


def save_item(path: Path, data: Any, meta: dict[str, Any], *, fingerprint: str | None = None,
              request: Mapping[str, Any] | None = None, inputs: np.ndarray | None = None,
              input_meta: Mapping[str, Any] | None = None, inputs_state: str = "not_saved") -> None:
    """One embedding (vector or grid DataArray) as an .npz with its metadata (JSON) inside, the fingerprint
    of the request that made it (``resume`` reuses the item only for the same fingerprint) and, when saved,
    the model's input array with what describes it."""
    arrays: dict[str, Any] = {"meta": _json_bytes(meta)}
    if fingerprint is not None:
        arrays["request"] = _json_bytes({"fingerprint": fingerprint, "request": request, "inputs": inputs_state})
    if inputs is not None:
        arrays["input"] = np.asarray(inputs, dtype=np.float32)
        arrays["input_meta"] = _json_bytes(dict(input_meta or {}))
    if hasattr(data, "dims"):
        arrays |= {"data": np.asarray(data.values, dtype=np.float32), "x": data.x.values, "y": data.y.values,
                   "band": np.asarray([str(b) for b in data[data.dims[0]].values]),
                   "dims": np.asarray([str(d) for d in data.dims]),
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

        dims = tuple(str(d) for d in z["dims"]) if "dims" in z else ("band", "y", "x")
        da = xr.DataArray(z["data"], dims=dims,
                          coords={dims[0]: list(z["band"]), dims[1]: z["y"], dims[2]: z["x"]},
                          attrs={"crs": bytes(z["crs"]).decode(), "transform": tuple(z["transform"].tolist())})
        return da, meta


def item_fingerprint(path: Path) -> tuple[str | None, str]:
    """(the request fingerprint stored in an item, None when it has none or cannot be read; what became of
    the model's input: ``saved``, ``not_saved``, ``not_applicable`` (a precomputed product) or ``failed``)."""
    try:
        with np.load(path) as z:
            if "request" not in z.files:
                return None, "not_saved"
            stored = json.loads(bytes(z["request"]).decode())
            return stored.get("fingerprint"), str(stored.get("inputs") or "not_saved")
    except (OSError, ValueError, KeyError):
        return None, "not_saved"


def load_item_input(path: Path) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """(the model's input array, its description) saved with an item; (None, None) when none was saved."""
    with np.load(path) as z:
        if "input" not in z.files:
            return None, None
        return np.asarray(z["input"]), json.loads(bytes(z["input_meta"]).decode())


def band_names(da: Any) -> list[str]:
    """The grid's band names; a model grid's bare indices (0, 1, ...) become ``emb_000``, ``emb_001``, ..."""
    names = [str(b) for b in da[da.dims[0]].values]
    if names and all(n.isdigit() for n in names):
        width = max(3, len(str(len(names) - 1)))
        return [f"emb_{int(n):0{width}d}" for n in names]
    return names


def _provenance(models: Sequence[str], versions: Sequence[str], start: str | None, end: str | None) -> dict[str, str]:
    """Global attributes / tags: what made the file (netCDF attributes cannot be None: absent ones are left out)."""
    attrs = {"model": ", ".join(models), "model_version": ", ".join(versions), "start_date": start, "end_date": end,
             "omniembed_version": __version__, "source": f"omniembed {__version__}"}
    return {k: v for k, v in attrs.items() if v}


def _record_attrs(record: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, str]:
    attrs = _provenance([record["model"]], [str(meta.get("model_version") or "")], record.get("start"),
                        record.get("end"))
    attrs["region_id"] = str(record["id"])
    attrs["region"] = json.dumps(record["spatial"])
    if meta.get("preprocessing"):
        attrs["preprocessing"] = str(meta["preprocessing"])
    return attrs


def _polygon(bounds: Sequence[float]) -> Any:
    from shapely.geometry import box

    return box(*bounds)


def _write_geoparquet(target: Path, records: list[dict[str, Any]], vectors: list[np.ndarray],
                      metas: list[dict[str, Any]]) -> None:
    """GeoParquet 1.1 through geopandas: WKB polygons (lon/lat), CRS EPSG:4326 as PROJJSON, bbox covering."""
    import geopandas

    gdf = geopandas.GeoDataFrame({
        "id": [r["id"] for r in records],
        "model": [r["model"] for r in records],
        "model_version": [str(m.get("model_version") or "") for m in metas],
        "embedding": [np.asarray(v, dtype=np.float32) for v in vectors],
        "spatial": [json.dumps(r["spatial"]) for r in records],
        "start": [r.get("start") for r in records],
        "end": [r.get("end") for r in records],
    }, geometry=[_polygon(r["lonlat_bounds"]) for r in records], crs=LONLAT)
    with atomic_path(target) as tmp:
        gdf.to_parquet(tmp, index=False, geometry_encoding="WKB", write_covering_bbox=True, schema_version="1.1.0")


def _pooled_dataset(records: list[dict[str, Any]], vectors: list[np.ndarray], metas: list[dict[str, Any]]) -> Any:
    """One (roi, dim) variable per model, with each region's id, centroid lon/lat and polygon (WKT) as
    coordinates along its roi dimension, so the rows can be put on a map."""
    import xarray as xr

    by_model: dict[str, list[int]] = {}
    for k, r in enumerate(records):
        by_model.setdefault(r["model"], []).append(k)
    ds = xr.Dataset()
    versions = []
    for model, ks in by_model.items():
        roi, polys = f"{model}_roi", [_polygon(records[k]["lonlat_bounds"]) for k in ks]
        version = str(metas[ks[0]].get("model_version") or "")
        versions.append(version)
        coords = {
            roi: xr.Variable(roi, [records[k]["id"] for k in ks], {"long_name": "region id"}),
            f"{model}_lon": xr.Variable(roi, [p.centroid.x for p in polys], {
                "standard_name": "longitude", "long_name": "region centroid longitude", "units": "degrees_east"}),
            f"{model}_lat": xr.Variable(roi, [p.centroid.y for p in polys], {
                "standard_name": "latitude", "long_name": "region centroid latitude", "units": "degrees_north"}),
            f"{model}_geometry": xr.Variable(roi, [p.wkt for p in polys], {
                "long_name": "region polygon (WKT, lon/lat)", "crs": LONLAT}),
        }
        ds[model] = xr.DataArray(np.stack([vectors[k] for k in ks]), dims=(roi, f"{model}_dim"), coords=coords,
                                 attrs={"long_name": f"{model} embedding", "model": model, "model_version": version})
    ds.attrs = {"Conventions": CONVENTIONS, "title": "omniembed region embeddings",
                **_provenance(list(by_model), versions, records[0].get("start"), records[0].get("end"))}
    return ds


def _grid_array(da: Any, attrs: Mapping[str, str]) -> Any:
    """The grid as CF: ``spatial_ref`` grid mapping (crs_wkt, GeoTransform), x/y with standard names and
    units, NaN fill value; ``crs``/``transform`` attributes kept for readers of earlier exports."""
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr
    from affine import Affine
    from pyproj import CRS

    crs = CRS.from_user_input(da.attrs["crs"])
    transform = Affine(*da.attrs["transform"][:6])
    bdim, ydim, xdim = da.dims
    out = xr.DataArray(np.asarray(da.values, dtype=np.float32), dims=(str(bdim), "y", "x"),
                       coords={str(bdim): band_names(da), "y": np.asarray(da[ydim].values, dtype=np.float64),
                               "x": np.asarray(da[xdim].values, dtype=np.float64)},
                       attrs={"long_name": "embedding"})
    out = out.rio.write_crs(crs.to_wkt()).rio.write_transform(transform).rio.write_coordinate_system()
    out.attrs |= {"crs": str(da.attrs["crs"]), "transform": list(transform)[:6]}
    out.encoding["_FillValue"] = np.float32(np.nan)
    return out.to_dataset(name="embedding").assign_attrs({"Conventions": CONVENTIONS, **attrs})


def _gdal_crs(crs_text: str) -> dict[str, str]:
    """GDAL's Zarr ``_CRS`` attribute (read by every GDAL with a Zarr driver; the CF grid mapping from 3.9)."""
    from pyproj import CRS

    crs = CRS.from_user_input(crs_text)
    out = {"wkt": crs.to_wkt()}
    authority = crs.to_authority()
    if authority and authority[0] == "EPSG":
        out["url"] = f"http://www.opengis.net/def/crs/EPSG/0/{authority[1]}"
    return out


def _write_cog(target: Path, da: Any, attrs: Mapping[str, str]) -> None:
    """Cloud-Optimized GeoTIFF: tiled, deflate, overviews (averaged) when larger than a tile, nodata NaN,
    band descriptions and provenance tags."""
    import rasterio
    from affine import Affine

    bands, height, width = da.shape
    profile = {"driver": "COG", "count": bands, "height": height, "width": width, "dtype": "float32",
               "crs": da.attrs["crs"], "transform": Affine(*da.attrs["transform"][:6]), "nodata": float("nan"),
               "compress": "deflate", "predictor": 3, "blocksize": 256, "overview_resampling": "average"}
    with atomic_path(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.asarray(da.values, dtype=np.float32))
        for i, name in enumerate(band_names(da), start=1):
            dst.set_band_description(i, name)
        dst.update_tags(**attrs, TIFFTAG_SOFTWARE=f"omniembed {__version__}")


def write_grid_file(fmt: str, target: Path, da: Any, attrs: Mapping[str, str] | None = None) -> None:
    """One grid DataArray (band, y, x) with ``crs``/``transform`` attrs to a GeoTIFF (COG), NetCDF or Zarr."""
    attrs = dict(attrs) if attrs is not None else _provenance([], [], None, None)
    if fmt == "geotiff":
        _write_cog(target, da, attrs)
        return
    ds = _grid_array(da, attrs)
    if fmt == "netcdf":
        with atomic_path(target) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
    else:
        ds["embedding"].attrs["_CRS"] = _gdal_crs(da.attrs["crs"])
        with atomic_path(target, directory=True) as tmp:
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)


def write_final(fmt: str, out_dir: Path, records: list[dict[str, Any]],
                load: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]) -> list[str]:
    """Assemble the finished items into the format's files; returns the files written (relative).
    ``load(record)`` gives the item's (data, meta)."""
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
                da, meta = load(r)
                write_grid_file(fmt, target, da, _record_attrs(r, meta))
            r["file"] = rel
            written.append(rel)
        return written
    loaded = [load(r) for r in records]
    vectors = [np.asarray(data, dtype=np.float32) for data, _ in loaded]
    metas = [meta for _, meta in loaded]
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
        _write_geoparquet(out_dir / "embeddings.parquet", records, vectors, metas)
        written.append("embeddings.parquet")
    elif fmt == "netcdf":
        with atomic_path(out_dir / "embeddings.nc") as tmp:
            _pooled_dataset(records, vectors, metas).to_netcdf(tmp, engine="h5netcdf")
        written.append("embeddings.nc")
    elif fmt == "zarr":
        with atomic_path(out_dir / "embeddings.zarr", directory=True) as tmp:
            _pooled_dataset(records, vectors, metas).to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        written.append("embeddings.zarr")
    for r in records:
        r["file"] = written[0]
    return written
