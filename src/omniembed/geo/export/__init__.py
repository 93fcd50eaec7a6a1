"""``export_batch``: many regions x models to files, with a JSON manifest, atomic writes and resume.

Each (region, model) item is embedded once and saved atomically as ``.items/<model>/<id>.npz``: that
file's existence is what "done" means, so an export killed half way and run again embeds only the
missing items (``.items/runs.jsonl`` logs which run embedded which item). When every item is done the
format's files are (re)assembled from the items: ``npz`` (+ manifest), ``netcdf``, ``zarr``,
``geotiff`` (grids), ``geoparquet`` (pooled vectors with the region polygon, readable by geopandas).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.geo.export.writers import FORMATS, atomic_path, load_item, save_item, write_final
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["FORMATS", "export_batch", "load_item"]

MANIFEST = "manifest.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def export_batch(
    spatials: Sequence[BBox | PointBuffer],
    temporal: TemporalSpec | None,
    models: str | Sequence[str],
    out_dir: str | Path,
    format: str = "npz",
    *,
    output: OutputSpec | None = None,
    sensor: SensorSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str = "resize",
    ids: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    per_model_sensors: dict[str, SensorSpec] | None = None,
    resume: bool = True,
    continue_on_error: bool = True,
    chunk_size: int = 8,
    engine: Engine | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed every region with every model into ``out_dir``; returns the manifest (also ``manifest.json``).

    Items already done (by an earlier, possibly interrupted, run into the same folder) are skipped
    (``resume=False`` starts afresh); items that fail are recorded in the manifest with their error and
    retried by the next run (``continue_on_error=False``: the first failure is raised). ``names`` (as in
    rs-embed) is an alias of ``ids``; ``per_model_sensors`` overrides ``sensor`` per model name."""
    import shutil

    from omniembed.geo.api import get_embeddings_batch

    if names is not None:
        if ids is not None:
            raise ParameterInvalid("pass ids= or names=, not both", param="names")
        ids = names

    fmt = format.strip().lower()
    if fmt not in FORMATS:
        raise ParameterInvalid(f"format must be one of {', '.join(FORMATS)}, not {format!r}", param="format")
    output = output or OutputSpec.pooled()
    if fmt == "geotiff" and output.mode != "grid":
        raise ParameterInvalid("geotiff holds grids: use output=OutputSpec.grid(), or format npz/netcdf/zarr/"
                               "geoparquet for pooled vectors", param="format")
    if fmt == "geoparquet" and output.mode != "pooled":
        raise ParameterInvalid("geoparquet holds pooled vectors: use output=OutputSpec.pooled()", param="format")
    model_list = [models] if isinstance(models, str) else list(models)
    if not model_list:
        raise ParameterInvalid("models must name at least one model", param="models")
    spatial_list = list(spatials)
    if not spatial_list:
        raise ParameterInvalid("spatials must be a non-empty list of BBox / PointBuffer", param="spatials")
    id_list = [_safe(str(i)) for i in ids] if ids is not None else [f"roi{k:05d}" for k in range(len(spatial_list))]
    if len(id_list) != len(spatial_list) or len(set(id_list)) != len(id_list):
        raise ParameterInvalid("ids must be unique, one per spatial", param="ids")
    out = Path(out_dir).expanduser()
    items_dir = out / ".items"
    if not resume:
        shutil.rmtree(items_dir, ignore_errors=True)
    items_dir.mkdir(parents=True, exist_ok=True)
    model_sensors = dict(per_model_sensors or {})
    unknown = set(model_sensors) - set(model_list)
    if unknown:
        raise ParameterInvalid(f"per_model_sensors names models not exported: {', '.join(sorted(unknown))}",
                               param="per_model_sensors")
    run_id = uuid.uuid4().hex[:12]
    log = (items_dir / "runs.jsonl").open("a", encoding="utf-8")
    records: list[dict[str, Any]] = []
    try:
        for model in model_list:
            mdir = f".items/{_safe(model)}"
            pending = [k for k in range(len(spatial_list)) if not (out / mdir / f"{id_list[k]}.npz").is_file()]
            errors: dict[int, OmniEmbedError] = {}
            for start in range(0, len(pending), chunk_size):
                chunk = pending[start:start + chunk_size]
                results = get_embeddings_batch(model, spatials=[spatial_list[k] for k in chunk], temporal=temporal,
                                               sensor=model_sensors.get(model, sensor), output=output,
                                               backend=backend, device=device, input_prep=input_prep,
                                               engine=engine, errors="return")
                for k, emb in zip(chunk, results, strict=True):
                    if isinstance(emb, OmniEmbedError):
                        if not continue_on_error:
                            raise emb.at_index(k)
                        errors[k] = emb.at_index(k)
                        continue
                    meta = emb.meta.to_dict()
                    save_item(out / mdir / f"{id_list[k]}.npz", emb.data, meta)
                    log.write(json.dumps({"run": run_id, "id": id_list[k], "model": model, "time": time.time()}) + "\n")
                    log.flush()
                    os.fsync(log.fileno())
                    if progress:
                        progress(1)
            for k, spatial in enumerate(spatial_list):
                rec: dict[str, Any] = {"id": id_list[k], "model": model, "spatial": spatial.to_dict(),
                                       "lonlat_bounds": list(spatial.lonlat_bounds()), "output": output.mode,
                                       "start": temporal.start.isoformat() if temporal else None,
                                       "end": temporal.end.isoformat() if temporal else None,
                                       "item_file": f"{mdir}/{id_list[k]}.npz"}
                if k in errors:
                    rec |= {"status": "error", "error": errors[k].to_dict()}
                else:
                    rec["status"] = "done"
                records.append(rec)
    finally:
        log.close()
    done = [r for r in records if r["status"] == "done"]
    files = write_final(fmt, out, done, lambda r: load_item(out / r["item_file"]))
    manifest = {
        "format": fmt,
        "models": model_list,
        "output": {"mode": output.mode, "pooling": output.pooling, "scale_m": output.scale_m},
        "temporal": temporal.to_dict() if temporal else None,
        "input_prep": InputPrepSpec.coerce(input_prep).to_dict(),
        "files": files,
        "counts": {"total": len(records), "done": len(done), "error": len(records) - len(done)},
        "items": records,
        "run": run_id,
    }
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest
