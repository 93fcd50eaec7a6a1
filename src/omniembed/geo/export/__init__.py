"""``export_batch``: many regions x models to files, keyword-only with rs-embed 0.3's ``target=ExportTarget(...)``
and ``config=ExportConfig(...)``, with atomic writes and resume.

Each (region, model) item is embedded once and saved atomically as ``<items>/<model>/<id>.npz`` with the
fingerprint of the request that made it (model and its settings, region, time window, sensor / fetch /
modality, output, input preparation, backend; not the format or runtime knobs). A run with ``resume=True``
reuses an item only when its fingerprint is this request's, so an export killed half way embeds only the
missing items, and a changed request recomputes what it changes and never serves a vector made for another.
rs-embed's layouts mark reused items ``resume_skipped`` in their manifests; ``<items>/runs.jsonl`` logs which
run embedded which item, and the folder layout's manifest is the same whichever run embedded its items. When
every item is done the target's files are (re)assembled from the items:

- ``ExportTarget.folder(out_dir)`` (omniembed): ``manifest.json`` and the format's GIS files: ``npz``,
  ``netcdf``, ``zarr``, ``geotiff`` (grids), ``geoparquet`` (pooled vectors with the region polygon);
  items in ``out_dir/.items``. Returns the manifest. Model inputs are not saved here.
- ``ExportTarget.per_item(out_dir, names=)`` (rs-embed): ``out_dir/<name>.npz|.nc`` per region holding every
  model (``embedding__<key>``, with ``save_inputs`` the model's input ``input_chw__<key>``) and a
  ``<name>.json`` manifest as rs-embed writes it; items in ``out_dir/.items``. Returns one manifest per region.
- ``ExportTarget.combined(out_file)`` (rs-embed): one ``.npz|.nc`` with ``embeddings__<key>`` for all
  regions (NaN rows for failed ones), ``inputs_bchw__<key>`` and a ``.json`` manifest; items in
  ``.<file name>.items`` beside it. Returns the manifest.

A model that cannot run at all (an unknown name, refused settings) is, with ``continue_on_error``, recorded
as failed with its error and the other models are written; without it (rs-embed's default) an unknown model
is refused before anything runs, as rs-embed refuses it when it resolves the export's models. ``load_export``
reads all three layouts back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.api import Engine, get_engine
from omniembed.atomic import atomic_path
from omniembed.errors import OmniEmbedError
from omniembed.geo.api import (
    DEFAULT_TEMPORAL,
    _check_modality,
    _check_output,
    _configured,
    get_embeddings_batch,
    inspection,
    spatial_list,
    warnings_once,
    window,
)
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.geo.export.layouts import Loaders, write_combined, write_per_item
from omniembed.geo.export.manifest import jsonable, request_fingerprint
from omniembed.geo.export.ray import chunk_embedder
from omniembed.geo.export.writers import (
    FORMATS,
    item_fingerprint,
    load_item,
    load_item_input,
    save_item,
    write_final,
)
from omniembed.geo.specs import FetchSpec, InputPrepSpec, OutputSpec, SensorSpec, SpatialSpec, TemporalSpec
from omniembed.geo.types import ExportConfig, ExportLayout, ExportModelRequest, ExportTarget, ModelConfig

if TYPE_CHECKING:
    from omniembed.ray import RayEngine

__all__ = ["FORMATS", "LAYOUT_FORMATS", "BatchExporter", "export_batch", "load_item"]

MANIFEST = "manifest.json"
LAYOUT_FORMATS = {ExportLayout.FOLDER: FORMATS, ExportLayout.PER_ITEM: ("npz", "netcdf"),
                  ExportLayout.COMBINED: ("npz", "netcdf")}
EXT = {"npz": ".npz", "netcdf": ".nc", "zarr": ".zarr", "geotiff": ".tif", "geoparquet": ".parquet"}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class _Model:
    name: str
    sensor: SensorSpec | None
    fetch: FetchSpec | None
    modality: str | None
    model_config: dict[str, Any] | None


def _models(models: Any, sensor: SensorSpec | None, fetch: FetchSpec | None, modality: str | None) -> list[_Model]:
    items = [models] if isinstance(models, (str, ExportModelRequest)) else models
    if not isinstance(items, (list, tuple)) or not items:
        raise ModelRequestInvalid("models must be a non-empty list of model names or ExportModelRequest",
                                  param="models")
    out: list[_Model] = []
    for m in items:
        if isinstance(m, str):
            out.append(_Model(m, sensor, fetch, modality, None))
        elif isinstance(m, ExportModelRequest):
            own = m.sensor is not None or m.fetch is not None
            out.append(_Model(m.name, m.sensor if own else sensor, m.fetch if own else fetch,
                              m.modality if m.modality is not None else modality, m.model_config))
        else:
            raise ModelRequestInvalid(f"models holds a {type(m).__name__}; give names or ExportModelRequest",
                                      param="models")
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ModelRequestInvalid(f"a model is named twice in models: {names}", param="models")
    return out


def _target(target: Any, n: int, fmt: str) -> tuple[ExportLayout, Path, list[str], Path]:
    """(layout, output path: folder or file, region names, items folder)."""
    if not isinstance(target, ExportTarget):
        raise ModelRequestInvalid("target must be an ExportTarget (ExportTarget.per_item(out_dir), "
                                  "ExportTarget.combined(out_file) or ExportTarget.folder(out_dir))", param="target")
    if target.layout == ExportLayout.COMBINED:
        if not target.out_file:
            raise ModelRequestInvalid("ExportTarget.COMBINED requires out_file", param="target")
        out = Path(target.out_file).expanduser()
        if not str(out).endswith(EXT[fmt]):
            out = out.with_name(out.name + EXT[fmt])
        return target.layout, out, [f"p{k:05d}" for k in range(n)], out.with_name(f".{out.name}.items")
    if not target.out_dir:
        raise ModelRequestInvalid(f"ExportTarget.{target.layout.name} requires out_dir", param="target")
    prefix = "p" if target.layout == ExportLayout.PER_ITEM else "roi"
    names = [str(x) for x in target.names] if target.names is not None else [f"{prefix}{k:05d}" for k in range(n)]
    if len(names) != n:
        raise ModelRequestInvalid("target.names must have the same length as spatials", param="names")
    ids = [_safe(x) for x in names]
    if len(set(ids)) != len(ids):
        raise ModelRequestInvalid("target.names must be unique", param="names")
    out = Path(target.out_dir).expanduser()
    return target.layout, out, ids, out / ".items"


def export_batch(
    *,
    spatials: list[SpatialSpec],
    temporal: TemporalSpec | None,
    models: list[str | ExportModelRequest],
    target: ExportTarget,
    config: ExportConfig | None = None,
    backend: Any = "auto",
    device: str = "auto",
    output: OutputSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    input_prep: InputPrepSpec | str | None = None,
    engine: Engine | RayEngine | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]] | dict[str, Any]:
    """Embed every region with every model into ``target`` (see the module docstring for the layouts).

    As in rs-embed: ``models`` are names or ``ExportModelRequest`` (per-model sensor / fetch / modality);
    ``config`` holds format, resume, error policy and chunking; ``input_prep`` here or in ``config``, not
    both. Failed items are recorded in the manifests with their error when ``config.continue_on_error``
    (else the first failure is raised) and retried by the next ``resume=True`` run. omniembed's:
    ``engine`` (an ``Engine``; ``"ray"`` or ``omniembed.ray.RayEngine(...)``: regions run on a Ray cluster,
    the files are the same), ``progress`` (called with 1 per item embedded)."""
    config = config if config is not None else ExportConfig()
    if not isinstance(spatials, list) or not spatials:
        raise ModelRequestInvalid("spatials must be a non-empty list[SpatialSpec] (BBox / PointBuffer)",
                                  param="spatials")
    if input_prep is not None and config.input_prep is not None:
        raise ModelRequestInvalid("input_prep was passed both as export_batch(input_prep=...) and as "
                                  "ExportConfig(input_prep=...); pass it once", param="input_prep")
    model_list = _models(models, sensor, fetch, modality)
    fmt = str(config.format).strip().lower()
    layout = target.layout if isinstance(target, ExportTarget) else None
    allowed = LAYOUT_FORMATS.get(layout, FORMATS) if layout is not None else FORMATS
    if fmt not in allowed:
        more = " (zarr, geotiff and geoparquet: ExportTarget.folder)" if layout != ExportLayout.FOLDER else ""
        raise ModelRequestInvalid(f"Unsupported export format: {config.format!r}. Supported: {allowed}{more}",
                                  param="format")
    layout, out, ids, items_dir = _target(target, len(spatials), fmt)
    spatial_list(spatials)
    output = _check_output(output)
    when = window(temporal)
    if fmt == "geotiff" and output.mode != "grid":
        raise ModelRequestInvalid("geotiff holds grids: use output=OutputSpec.grid(), or format npz/netcdf/zarr/"
                                  "geoparquet for pooled vectors", param="format")
    if fmt == "geoparquet" and output.mode != "pooled":
        raise ModelRequestInvalid("geoparquet holds pooled vectors: use output=OutputSpec.pooled()", param="format")
    # as rs-embed: an input_prep not given is left to get_embedding's default (model-aware), so an export
    # gives the vectors get_embedding gives; a given one is checked here, before anything runs
    requested = input_prep if input_prep is not None else config.input_prep
    prep: InputPrepSpec | None = InputPrepSpec.coerce(requested) if requested is not None else None
    if config.infer_batch_size is not None:
        prep = replace(prep if prep is not None else InputPrepSpec.tile(),
                       batch_size=config.effective_infer_batch_size)
    if not config.continue_on_error:  # as rs-embed: an unknown model is refused before anything is written
        _check_models(model_list, engine)
    if not config.resume:
        shutil.rmtree(items_dir, ignore_errors=True)
    items_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(items_dir, out if layout != ExportLayout.COMBINED else out.parent)
    # the model inputs go in rs-embed's layouts; omniembed's folder of GIS files has no place for them
    want_inputs = bool(config.save_inputs) and layout != ExportLayout.FOLDER
    with warnings_once():  # a coverage or resolution warning once per export, not once per chunk
        records = _embed_all(spatials, temporal, when, model_list, ids, items_dir, rel, output, prep, config,
                             backend, device, engine, progress, want_inputs)
    if layout == ExportLayout.FOLDER:
        return _write_folder(out, fmt, records, model_list, output, prep, when)

    base = out if layout == ExportLayout.PER_ITEM else out.parent
    loaders = Loaders(lambda r: load_item(base / r["item_file"]), lambda r: load_item_input(base / r["item_file"]))
    meta = {"backend": str(backend) if isinstance(backend, str) else type(backend).__name__, "device": device,
            "output": jsonable(output), "format": fmt,
            "temporal": (temporal if temporal is not None else DEFAULT_TEMPORAL).to_dict(),
            "window": when.to_dict(), "input_prep": _prep_dict(prep)}
    if layout == ExportLayout.PER_ITEM:
        return write_per_item(out, fmt, ids, records, [m.name for m in model_list], loaders, config, meta)
    return write_combined(out, fmt, ids, records, [m.name for m in model_list], loaders, config, meta)


def _check_models(models: list[_Model], engine: Engine | RayEngine | str | None) -> None:
    """Each model is known to the engine and takes its settings and modality (a Ray cluster's workers check
    their own), so a refusal comes before anything is embedded or written, as rs-embed checks them."""
    if engine is not None and not isinstance(engine, Engine):
        return
    eng = engine if engine is not None else get_engine()
    for m in models:
        spec, _ = _configured(eng, m.name, dict(m.model_config or {}))
        _check_modality(spec, m.modality)


def _request(model: _Model, spatial: SpatialSpec, temporal: TemporalSpec | None, when: Any, output: OutputSpec,
             prep: InputPrepSpec | None, backend: Any) -> dict[str, Any]:
    """Everything that decides one item's vector (what its fingerprint is made of); not runtime knobs."""
    return {"model": model.name, "model_config": model.model_config, "sensor": model.sensor, "fetch": model.fetch,
            "modality": model.modality, "spatial": spatial, "temporal": temporal, "window": when.to_dict(),
            "output": output, "input_prep": _prep_dict(prep), "backend": backend}


def _backend_key(backend: Any) -> Any:
    """The backend as its fingerprint sees it, made once per export: a name as it is; a backend object by its
    type and fields, an array in it by the digest of all its bytes."""
    if isinstance(backend, str):
        return backend
    return {"type": type(backend).__name__, "fields": jsonable(backend, whole_arrays=True)}


def _prep_dict(prep: InputPrepSpec | None) -> dict[str, Any] | None:
    """The input preparation asked for (None: get_embedding's default)."""
    return prep.to_dict() if prep is not None else None


def _meta_dict(meta: Any) -> dict[str, Any]:
    to_dict = getattr(meta, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else dict(meta)


def _model_input(model: _Model, temporal: TemporalSpec | None, when: Any, backend: Any,
                 emb: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The raster ``model`` was fed for a region (bands x rows x cols; frames x bands x rows x cols when
    several), as ``inspect_model_input`` reports it, with its inspection: the read the embedding kept
    (``GeoEmbedding.read``; every chunk is embedded with ``keep_reads`` when inputs are saved)."""
    read = getattr(emb, "read", None)
    if read is None:
        return None, {"error": {"code": "input_unreadable", "message": "the embedding kept no read of its input"}}
    report = inspection(read, model.name, when, dict(emb.meta.get("sensor") or {}),
                        temporal if temporal is not None else DEFAULT_TEMPORAL, backend, return_arrays=True)
    frames = [np.asarray(a, dtype=np.float32) for a in report.pop("arrays", None) or []]
    if not frames:
        return None, {"error": {"code": "input_unreadable", "message": "the backend returned no frames"}}
    x = frames[0] if len(frames) == 1 else np.stack(frames)
    return x, {"inspection": {"ok": bool(report.get("ok")), "report": _without_arrays(report)}}


def _without_arrays(obj: Any) -> Any:
    """A report without its pixel arrays (they are saved as the input array itself)."""
    if isinstance(obj, dict):
        return {k: _without_arrays(v) for k, v in obj.items() if not isinstance(v, np.ndarray)}
    if isinstance(obj, (list, tuple)):
        return [_without_arrays(v) for v in obj if not isinstance(v, np.ndarray)]
    return obj


def _reusable(path: Path, fingerprint: str, want_inputs: bool) -> bool:
    """Whether a finished item was made by this very request (and holds the input when inputs are saved)."""
    if not path.is_file():
        return False
    stored, inputs = item_fingerprint(path)
    return stored == fingerprint and (not want_inputs or inputs in ("saved", "not_applicable"))


def _embed_all(spatials: list[SpatialSpec], temporal: TemporalSpec | None, when: Any, model_list: list[_Model],
               ids: list[str], items_dir: Path, rel: str, output: OutputSpec, prep: InputPrepSpec | None,
               config: ExportConfig, backend: Any, device: str, engine: Engine | RayEngine | str | None,
               progress: Callable[[int], None] | None, want_inputs: bool) -> list[dict[str, Any]]:
    """Embed the items that are missing or were made by another request, save each atomically; one record
    per (model, region), models in order. A model that cannot run at all (unknown, refused settings) fails
    all its regions when ``continue_on_error`` (the other models go on), else its error is raised."""
    embed_chunk: Callable[..., list[Any]] = get_embeddings_batch
    if engine is not None and not hasattr(engine, "embed_batch"):  # "ray" / RayEngine: chunks run on a cluster
        embed_chunk, engine = chunk_embedder(engine), None
    raise_first = not config.continue_on_error or config.fail_on_bad_input
    run_id = uuid.uuid4().hex[:12]
    backend_key = _backend_key(backend)
    records: list[dict[str, Any]] = []
    with (items_dir / "runs.jsonl").open("a", encoding="utf-8") as log:
        for model in model_list:
            mdir = items_dir / _safe(model.name)
            requests = [_request(model, s, temporal, when, output, prep, backend_key) for s in spatials]
            fps = [request_fingerprint(r) for r in requests]
            reused = {k for k in range(len(spatials)) if _reusable(mdir / f"{ids[k]}.npz", fps[k], want_inputs)}
            pending = [k for k in range(len(spatials)) if k not in reused]
            errors: dict[int, OmniEmbedError] = {}
            model_failed = False
            for attempt in range(max(0, int(config.max_retries)) + 1):
                if attempt:
                    time.sleep(float(config.retry_backoff_s) * 2 ** (attempt - 1))
                    pending, errors = sorted(errors), {}
                for start in range(0, len(pending), config.effective_chunk_size):
                    chunk = pending[start:start + config.effective_chunk_size]
                    try:
                        with warnings.catch_warnings():
                            warnings.filterwarnings("ignore", message="temporal=None")  # export_batch warned once
                            results = embed_chunk(
                                model.name, spatials=[spatials[k] for k in chunk],
                                temporal=temporal if temporal is not None else DEFAULT_TEMPORAL,
                                sensor=model.sensor, fetch=model.fetch, modality=model.modality, output=output,
                                backend=backend, device=device, input_prep=prep, engine=engine, errors="return",
                                keep_reads=want_inputs, **(model.model_config or {}))
                    except OmniEmbedError as exc:  # the model cannot run at all: every region of it fails
                        if not config.continue_on_error:
                            raise
                        errors |= {k: exc.at_index(k) for k in pending[start:]}
                        model_failed = True
                        break
                    for k, emb in zip(chunk, results, strict=True):
                        if isinstance(emb, OmniEmbedError):
                            if raise_first and attempt == config.max_retries:
                                raise emb.at_index(k)
                            errors[k] = emb.at_index(k)
                            continue
                        meta = _meta_dict(emb.meta)
                        x, input_meta, state = None, None, "not_saved"
                        if want_inputs:
                            state = "not_applicable" if meta.get("type") == "precomputed" else "saved"
                            if state == "saved":
                                x, input_meta = _model_input(model, temporal, when, backend, emb)
                                state = "saved" if x is not None else "failed"
                        save_item(mdir / f"{ids[k]}.npz", emb.data, meta, fingerprint=fps[k], request=requests[k],
                                  inputs=x, input_meta=input_meta, inputs_state=state)
                        log.write(json.dumps({"run": run_id, "id": ids[k], "model": model.name,
                                              "time": time.time()}) + "\n")
                        log.flush()
                        os.fsync(log.fileno())
                        if progress:
                            progress(1)
                if not errors or model_failed:
                    break
            for k, spatial in enumerate(spatials):
                rec: dict[str, Any] = {"id": ids[k], "point_index": k, "model": model.name,
                                       "spatial": spatial.to_dict(), "lonlat_bounds": list(spatial.lonlat_bounds()),
                                       "output": output.mode, "start": when.start.isoformat(),
                                       "end": when.end.isoformat(),
                                       "sensor": jsonable(model.sensor), "request_fingerprint": fps[k],
                                       "resume_skipped": k in reused,
                                       "item_file": f"{rel}/{_safe(model.name)}/{ids[k]}.npz"}
                rec |= {"status": "error", "error": errors[k].to_dict()} if k in errors else {"status": "done"}
                records.append(rec)
    return records


def _write_folder(out: Path, fmt: str, records: list[dict[str, Any]], model_list: list[_Model], output: OutputSpec,
                  prep: InputPrepSpec | None, when: Any) -> dict[str, Any]:
    records = [{k: v for k, v in r.items() if k != "resume_skipped"} for r in records]  # a rerun: the same file
    done = [r for r in records if r["status"] == "done"]
    files = write_final(fmt, out, done, lambda r: load_item(out / r["item_file"]))
    manifest = {
        "layout": "folder",
        "format": fmt,
        "models": [m.name for m in model_list],
        "output": {"mode": output.mode, "pooling": output.pooling, "grid_orientation": output.grid_orientation},
        "temporal": when.to_dict(),
        "input_prep": _prep_dict(prep),
        "files": files,
        "counts": {"total": len(records), "done": len(done), "error": len(records) - len(done)},
        "items": records,
    }
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


class BatchExporter:
    """rs-embed's class form of ``export_batch``: the same arguments (``models`` may also be ``ModelConfig``),
    then ``.run()``. ``resolved_backend``, ``provider_factory`` and ``progress_factory`` are accepted and not
    used (the engine resolves backends and models itself)."""

    def __init__(self, *, spatials: list[SpatialSpec], temporal: TemporalSpec | None, models: Sequence[Any],
                 target: ExportTarget, output: OutputSpec | None = None, config: ExportConfig | None = None,
                 backend: Any = "auto", device: str = "auto", resolved_backend: Any = None,
                 provider_factory: Any = None, progress_factory: Any = None, sensor: SensorSpec | None = None,
                 engine: Engine | None = None) -> None:
        self.kwargs: dict[str, Any] = {
            "spatials": spatials, "temporal": temporal, "target": target, "output": output, "config": config,
            "backend": backend, "device": device, "sensor": sensor, "engine": engine,
            "models": [ExportModelRequest(m.name, sensor=m.sensor, model_config=m.model_config)
                       if isinstance(m, ModelConfig) else m for m in models],
        }

    def run(self) -> list[dict[str, Any]] | dict[str, Any]:
        return export_batch(**self.kwargs)
