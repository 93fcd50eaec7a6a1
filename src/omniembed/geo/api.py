"""The Earth-observation face, with rs-embed 0.3's call shapes: ``get_embedding``, ``get_embeddings_batch``,
``list_models``, ``describe_model``, ``reset_runtime``, ``inspect_model_input``.

A thin face over the one pipeline: a region is an input like an audio clip. The region preparer
(``geo.preparer``) reads it through a backend and plans tiles; the pipeline batches the tiles of many
regions, encodes them through the model's runtime (ONNX Runtime by default on CPU, PyTorch, compiled bf16)
and the preparer stitches each region's grid back and pools it. Results are float32 vectors (pooled) or
``xarray.DataArray`` grids (d, y, x) with the CRS and coordinates that place them on the map; ``meta`` is
rs-embed's plain, JSON-ready dict (``GeoMeta``, which also keeps the typed fields as attributes). Specs are
validated here, at use (``SpecError``); requests a model cannot serve raise a ``ModelError`` (see
``omniembed.geo.errors``), as rs-embed's do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, Literal

import numpy as np

from omniembed.api import Engine, get_engine
from omniembed.contract import LoadedModel, Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import ModelNotFound, OmniEmbedError, ParameterInvalid, ParameterNotProvided, WeightsNotFound
from omniembed.geo.backends import ProductBackend, Raster, local_source, resolve_backend
from omniembed.geo.backends.report import chw_report
from omniembed.geo.errors import ModelRequestInvalid, SpecError, UnknownModel, model_error
from omniembed.geo.models import geo_spec_info, image_raster
from omniembed.geo.preparer import GeoEmbedding, GeoMeta, RegionCall, RegionPreparer, jsonable, to_dataarray
from omniembed.geo.specs import (
    DEFAULT_WINDOW,
    BBox,
    FetchSpec,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    TimeWindow,
)
from omniembed.inputs.raster import RasterInput, rgb_unit
from omniembed.model_config import describe_settings, resolve_settings, selected_model
from omniembed.pipeline import run
from omniembed.registry import ModelSpec
from omniembed.runtime import Encoder

__all__ = [
    "GeoEmbedding", "describe_model", "get_embedding", "get_embeddings_batch", "inspect_model_input", "list_models",
    "region_inputs", "reset_runtime", "to_dataarray",
]


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def _geo_capable(spec: ModelSpec) -> bool:
    return bool({Modality.GEO, Modality.IMAGE} & set(spec.modalities))


GEO_MODALITIES = (Modality.GEO, Modality.IMAGE)
"""The models usable on regions: geo models and image models (on RGB composites)."""


def _spec(eng: Engine, model: str) -> ModelSpec:
    """The registry's spec for ``model`` (name or alias), as a ``ModelError`` when unknown or not for regions.
    An unknown name is answered with close names among the models usable on regions only."""
    try:
        spec = eng.spec(model)
    except ModelNotFound as exc:
        message = eng.registry.not_found_message(
            model, GEO_MODALITIES, runnable=eng.weights_available,
            advice="omniembed.geo.list_models() lists the models usable on regions.")
        raise model_error(ModelNotFound(message, param="model", model=exc.model or model)) from None
    except OmniEmbedError as exc:
        raise model_error(exc) from None
    if not _geo_capable(spec):
        raise ModelRequestInvalid(f"model {spec.name!r} embeds {', '.join(map(str, spec.modalities))}, not images "
                                  "or regions; see omniembed.geo.list_models()", param="model")
    return spec


def list_models(*, include_aliases: bool = False, engine: Engine | None = None) -> list[str]:
    """The sorted names of every model usable on regions (geo models, precomputed products, image models on
    RGB composites); with ``include_aliases`` their aliases too. Imports no ML library."""
    eng = _engine(engine)
    names: set[str] = set()
    for spec in eng.registry:
        if _geo_capable(spec):
            names.add(spec.name)
            if include_aliases:
                names.update(spec.aliases)
    return sorted(names)


def _modalities(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """The input branches a model exposes (rs-embed's ``modality=``): one, ``s2``, for raster models."""
    if spec.option("precomputed"):
        return {}
    info = geo_spec_info(spec)
    return {"s2": {"collection": "COPERNICUS/S2_SR_HARMONIZED", "bands": info["bands"]}}


def describe_model(model: str, *, engine: Engine | None = None) -> dict[str, Any]:
    """What a model takes and gives, without loading it: rs-embed's keys (``type``, ``backend``, ``output``,
    ``inputs``, ``defaults``, ``modalities``, ``model_config``) and omniembed's (``name``, ``aliases``, ``kind``,
    ``bands``, ``scale_m``, ``dim``, ``input_size``, ``grid_cell``)."""
    eng = _engine(engine)
    spec = _spec(eng, model)
    info = geo_spec_info(spec)
    precomputed = bool(spec.option("precomputed"))
    return {
        **info,
        "type": "precomputed" if precomputed else "on_the_fly",
        "backend": ["auto", "local", "stac", "gee", "tensor"],
        "output": ["pooled", "grid"],
        "inputs": {"bands": info["bands"]},
        "defaults": {"scale_m": info["scale_m"], "image_size": info["input_size"], "input_prep": "tile",
                     **({} if precomputed else {"modality": "s2"})},
        "modalities": _modalities(spec),
        "model_config": describe_settings(spec),
        "description": spec.description,
        "license": spec.license,
    }


def reset_runtime(*, engine: Engine | None = None) -> dict[str, int]:
    """Drop the loaded models (and their runtimes) of the engine, so the next call loads afresh."""
    n = _engine(engine).unload()
    return {"models_cleared": n, "runtime_caches_cleared": n}


# --------------------------------------------------------------------------------------------------------------
# request checks


def input_prep_of(value: InputPrepSpec | str | None) -> InputPrepSpec:
    """``input_prep`` as a spec; None is rs-embed's default, ``InputPrepSpec.tile()``: a region that is one
    model input is resized to it, a larger one is tiled at its read resolution."""
    return InputPrepSpec.coerce(value)


def _check_spatial(spatial: Any, index: int | None = None) -> None:
    if not isinstance(spatial, (BBox, PointBuffer)):
        raise ModelRequestInvalid(f"Invalid spatial spec type: {type(spatial).__name__} (use a BBox or a "
                                  "PointBuffer)", param="spatial", index=index)
    try:
        spatial.validate()
    except SpecError as exc:
        raise exc.at_index(index) from None


DEFAULT_TEMPORAL = TemporalSpec.range(DEFAULT_WINDOW.start, DEFAULT_WINDOW.end)


def window(temporal: TemporalSpec | None, *, stacklevel: int = 3) -> TimeWindow:
    """The dates of ``temporal``; ``None`` warns and uses rs-embed's default window (2022-06-01..2022-09-01)."""
    if temporal is None:
        warnings.warn("temporal=None: using the default window 2022-06-01..2022-09-01 (as rs-embed); pass "
                      "temporal=TemporalSpec.range(...) or TemporalSpec.year(...) to choose", UserWarning,
                      stacklevel=stacklevel)
        return DEFAULT_WINDOW
    if not isinstance(temporal, TemporalSpec):
        raise ModelRequestInvalid("temporal must be a TemporalSpec (TemporalSpec.range / .year) or None",
                                  param="temporal")
    return temporal.window()


def _check_output(output: OutputSpec | None) -> OutputSpec:
    output = output if output is not None else OutputSpec.pooled()
    if not isinstance(output, OutputSpec):
        raise ModelRequestInvalid("output must be OutputSpec.pooled(...) or OutputSpec.grid(...)", param="output")
    if hasattr(output, "scale_m"):  # an older spec object
        raise ModelRequestInvalid("output.scale_m is no longer supported; use fetch=FetchSpec(scale_m=...)",
                                  param="output")
    return output


def _check_options(model: str, sensor: SensorSpec | None, fetch: FetchSpec | None,
                   model_kwargs: dict[str, Any]) -> None:
    """The call's sensor and fetch checked. ``model_kwargs`` here are refused: where a face passes model
    settings on, it checks them with ``_configured`` (against the model's spec) and passes ``{}``."""
    if model_kwargs:
        raise ModelRequestInvalid(f"model {model!r} does not accept model-specific keyword arguments here "
                                  f"({', '.join(sorted(model_kwargs))})", param=sorted(model_kwargs)[0])
    if sensor is not None and fetch is not None:
        raise ModelRequestInvalid("Use either sensor=... or fetch=..., not both (fetch adjusts the model's default "
                                  "sensor)", param="fetch")
    if sensor is not None:
        if not isinstance(sensor, SensorSpec):
            raise ModelRequestInvalid("sensor must be a SensorSpec or None", param="sensor")
        if isinstance(sensor.collection, str) and sensor.collection.strip().lower().startswith("hf:"):
            raise ModelRequestInvalid(
                f"sensor collection {sensor.collection!r} names a checkpoint, which is rs-embed's older way to pick "
                "RemoteCLIP's weights; omniembed reads weights from OMNIEMBED_MODEL_DIR/<model>/ or the Hugging "
                "Face cache (`omniembed models prepare <model>`), and a sensor collection names the data to read",
                param="sensor")
        sensor.validate()
    if fetch is not None:
        if not isinstance(fetch, FetchSpec):
            raise ModelRequestInvalid("fetch must be a FetchSpec or None", param="fetch")
        fetch.validate()


def _configured(eng: Engine, model: str, model_kwargs: dict[str, Any]) -> tuple[ModelSpec, dict[str, str]]:
    """``model``'s spec (``_spec``), switched to the model that runs under the call's model settings
    (``variant=...``: rs-embed's ``model_config``), and the settings resolved (canonical values, defaults
    filled in). An unknown setting or value is a ``ModelRequestInvalid`` naming the allowed ones."""
    try:
        spec = _spec(eng, model)
    except UnknownModel as exc:
        if not model_kwargs:
            raise
        keys = ", ".join(sorted(model_kwargs))
        raise UnknownModel(f"{exc.message} Its settings ({keys}) cannot be checked: an unknown model does not "
                           "accept model-specific keyword arguments.", **exc.fields()) from None
    try:
        config = resolve_settings(spec, model_kwargs)
    except ParameterInvalid as exc:
        raise ModelRequestInvalid(exc.message, **exc.fields()) from None
    target = selected_model(spec, config)
    return (spec if target == spec.name else _spec(eng, target)), config


def _weights_named(exc: OmniEmbedError, spec: ModelSpec) -> OmniEmbedError:
    """A missing-weights error that names the checkpoint file the model reads, when its spec names one."""
    marker = spec.weights.marker
    if not isinstance(exc, WeightsNotFound) or not marker or "*" in marker or marker in exc.message:
        return exc
    where = f" from {spec.weights.hub_id}" if spec.weights.hub_id else ""
    return type(exc)(f"{exc.message} It needs the checkpoint {marker}{where}.",
                     **exc.fields())


def _check_modality(spec: ModelSpec, modality: str | None) -> None:
    if modality is not None and modality not in _modalities(spec):
        have = ", ".join(_modalities(spec)) or "none"
        raise ModelRequestInvalid(f"model {spec.name!r} does not expose modality {modality!r} (it has: {have})",
                                  param="modality")


# --------------------------------------------------------------------------------------------------------------
# setup


def _resolve_backend(backend: Any, sensor: SensorSpec | None, fetch: FetchSpec | None, name: str, raster: RasterInput,
                     sources: dict[str, str]) -> tuple[Any, SensorSpec]:
    """The backend object and the sensor to read with. ``sources`` are the named sources of the settings
    (``OMNIEMBED_GEO_SOURCES``): a name used as ``backend="local:NAME"`` or as a sensor collection stands for
    its folder, file or catalog URL. With ``backend="local:PATH"`` a sensor's collection id (an Earth Engine id
    such as ``COPERNICUS/S2_SR_HARMONIZED``) picks PATH's subfolder of that name, else labels PATH's files
    (``LocalBackend``). A sensor left at rs-embed's default ``scale_m`` reads local files and precomputed
    products at their native resolution. A precomputed product's reads are checked to be its raster."""
    source = local_source(backend, sources)
    if sensor is None:
        if source is None and isinstance(backend, str) and backend.strip().lower() == "local":
            raise ParameterNotProvided("backend='local' needs the files: pass backend='local:/path/to/folder' or "
                                       "sensor=SensorSpec(collection='/path/to/folder', bands=...)", param="sensor")
        bands = () if raster.precomputed else raster.bands
        sensor = SensorSpec(source or raster.collection, bands=bands, scale_m=raster.scale_m).with_fetch(fetch)
        native = source is not None or not isinstance(backend, str) or raster.precomputed  # files, arrays, products
        if native and (fetch is None or fetch.scale_m is None):
            sensor = dataclasses.replace(sensor, scale_m=None)
    elif not sensor.bands and not raster.precomputed:
        sensor = dataclasses.replace(sensor, bands=raster.bands)
    src, sensor = resolve_backend(backend, sensor, sources)
    if sensor.scale_is_default and raster.precomputed:
        sensor = dataclasses.replace(sensor, scale_m=None)
    if not raster.precomputed and len(sensor.bands) != len(raster.bands):
        raise ModelRequestInvalid(f"model {name!r} takes {len(raster.bands)} bands ({', '.join(raster.bands)}); "
                                  f"sensor gives {len(sensor.bands)} ({', '.join(map(str, sensor.bands))})",
                                  param="bands")
    if raster.precomputed:
        src = ProductBackend(src, name, raster.bands, raster.normalize)
    return src, sensor


def _raster_of(spec: ModelSpec, loaded: LoadedModel | None) -> RasterInput:
    if Modality.GEO in spec.modalities:
        if loaded is None:  # the contract without loading: bands, scale and size from the spec
            return RasterInput(tuple(spec.option("bands", ())), int(spec.option("input_size") or 224), 1, rgb_unit,
                               "", scale_m=float(spec.option("scale_m", 10.0)),
                               precomputed=bool(spec.option("precomputed")))
        assert loaded.raster is not None, f"geo model {spec.name} loaded without its RasterInput"
        return loaded.raster
    return image_raster(spec)


def _setup(spec: ModelSpec, temporal: TimeWindow, sensor: SensorSpec | None, fetch: FetchSpec | None,
           output: OutputSpec, backend: Any, device: str, prep: InputPrepSpec, runtime: str | None,
           precision: str | None, eng: Engine,
           keep_reads: bool = False) -> tuple[LoadedModel, RegionPreparer, Encoder, SensorSpec]:
    """The loaded model, the call's region preparer, the encoder that runs its rows and the sensor read."""
    try:
        loaded = eng.load(spec.name, runtime=runtime, device=device, precision=precision)
    except OmniEmbedError as exc:
        raise model_error(_weights_named(exc, spec)) from None
    if Modality.GEO in spec.modalities:
        raster, image, encoder = _raster_of(spec, loaded), None, loaded.encoders[Modality.GEO]
    else:  # any image model: RGB composites, one vector per tile
        raster, image, encoder = image_raster(spec), loaded.preparers[Modality.IMAGE], loaded.encoders[Modality.IMAGE]
    src, sensor = _resolve_backend(backend, sensor, fetch, spec.name, raster, eng.settings.geo_sources)
    call = RegionCall(src, sensor, temporal, output, prep, eng.settings, keep_reads)
    return loaded, RegionPreparer(raster, call, image, (spec.pooling, spec.normalize)), encoder, sensor


def _describe_backend(backend: Any) -> str:
    return backend if isinstance(backend, str) else type(backend).__name__


def _with_meta(emb: Any, extra: dict[str, Any]) -> Any:
    """``emb`` with the call's rs-embed keys added to its meta (the region's own keys, set by the preparer, and
    its ``input_prep`` facts win); a grid's attributes are the meta too, as rs-embed's."""
    if not isinstance(emb, Embedding):
        return emb
    region = dict(emb.meta.extra)
    prep = {**extra.get("input_prep", {}), **region.get("input_prep", {})}
    meta = GeoMeta.of(dataclasses.replace(emb.meta, extra={}), **{**extra, **region, "input_prep": prep})
    if hasattr(emb.data, "attrs"):
        emb.data.attrs = {**meta, "crs": emb.data.attrs["crs"], "transform": emb.data.attrs["transform"]}
    return GeoEmbedding(emb.data, meta, pooled=emb.pooled, read=getattr(emb, "read", None))


def _outside() -> int:
    """The ``stacklevel`` that names the first caller outside omniembed (the user's line) in a warning."""
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("omniembed."):
        frame, level = frame.f_back, level + 1
    return level


def _temporal_meta(temporal: TemporalSpec | None, when: TimeWindow, precomputed: bool) -> dict[str, Any]:
    """rs-embed's ``meta["temporal"]``: the resolved window as a range; a precomputed product asked for a year
    keeps the year (as rs-embed's products do)."""
    if precomputed and isinstance(temporal, TemporalSpec) and temporal.mode == "year":
        return {"mode": "year", "year": temporal.year, "start": when.start.isoformat(), "end": when.end.isoformat()}
    return {"mode": "range", "start": when.start.isoformat(), "end": when.end.isoformat()}


def _call_meta(spec: ModelSpec, temporal: TemporalSpec | None, when: TimeWindow, used: SensorSpec,
               output: OutputSpec, backend: Any, prep: InputPrepSpec, requested: str,
               raster: RasterInput) -> dict[str, Any]:
    """The keys every region of a call shares, in rs-embed's names and types (``build_meta``'s ``type``,
    ``backend``, ``source``, ``sensor``, ``temporal``; the embedders' ``start``/``end``, ``bands``,
    ``cls_removed``; the ``input_prep`` block's ``requested_mode``: 'default' when not given)."""
    precomputed = bool(spec.option("precomputed"))
    # a ViT's grid is its patch tokens with the class token dropped (prithvi, remoteclip); a model's spec can
    # say otherwise with the option cls_token
    vit = Modality.GEO in spec.modalities and not precomputed and raster.patch >= 8
    return {"type": "precomputed" if precomputed else "on_the_fly", "backend": _describe_backend(backend),
            "source": used.collection, "sensor": jsonable(used),
            "temporal": _temporal_meta(temporal, when, precomputed),
            "start": when.start.isoformat(), "end": when.end.isoformat(),
            "bands": tuple(str(b) for b in (used.bands or raster.bands)), "output": output.mode,
            "grid_orientation": output.grid_orientation, "cls_removed": bool(spec.option("cls_token", vit)),
            "input_prep": {"mode": prep.mode, "requested_mode": requested, "max_tiles": prep.max_tiles,
                           "max_tiles_hard": prep.hard_limit, "tile_snap_frac": float(prep.tile_snap_frac)}}


_GATHERED: ContextVar[dict[tuple[Any, ...], tuple[list[float], int]] | None] = ContextVar("geo_gathered_warnings",
                                                                                          default=None)
"""Inside ``warnings_once()``: per warning, the values of the regions concerned and the regions seen so far."""


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """Within this block the coverage and resolution warnings of every call are gathered and given once at the
    end, counted over all the calls (an export's chunks warn as one call)."""
    gathered: dict[tuple[Any, ...], tuple[list[float], int]] = {}
    token = _GATHERED.set(gathered)
    try:
        yield
    finally:
        _GATHERED.reset(token)
        for key, (values, total) in gathered.items():
            if values:
                _give(key, values, total)


def _warn(key: tuple[Any, ...], values: list[float], total: int) -> None:
    """The warning ``key`` about ``values`` (one per region concerned) of a call on ``total`` regions: given
    now, or gathered inside ``warnings_once()``. Calls with no region concerned count their regions too."""
    gathered = _GATHERED.get()
    if gathered is not None:
        have, seen = gathered.get(key, ([], 0))
        gathered[key] = (have + values, seen + total)
    elif values:
        _give(key, values, total)


def _give(key: tuple[Any, ...], values: list[float], total: int) -> None:
    if key[0] == "coverage":
        threshold = key[1]
        warnings.warn(f"{len(values)} of {total} regions are less than {threshold:.0%} covered by the source "
                      f"(lowest: {min(values):.1%} of the region's pixels have data), so their embeddings describe "
                      "only that part; meta['coverage'] gives each region's fraction (the threshold is the setting "
                      "OMNIEMBED_GEO_MIN_COVERAGE)", UserWarning, stacklevel=_outside())
    else:
        _, name, want = key
        warnings.warn(f"{len(values)} of {total} regions were read at the files' native {values[0]:g} m, where "
                      f"rs-embed reads {name!r} at {want:g} m by default, so rs-embed gives other vectors: pass "
                      f"fetch=FetchSpec(scale_m={want:g}) for rs-embed's resolution, or fetch=FetchSpec(scale_m="
                      f"{values[0]:g}) to keep this one without this warning", UserWarning, stacklevel=_outside())


def _warn_coverage(results: Sequence[Any], threshold: float) -> None:
    """One warning for the regions of a call whose read holds less than ``threshold`` of their pixels."""
    low = [float(r.meta["coverage"]) for r in results
           if isinstance(r, Embedding) and float(r.meta.get("coverage", 1.0)) < threshold]
    _warn(("coverage", threshold), low, len(results))


def _warn_resolution(spec: ModelSpec, results: Sequence[Any], used: SensorSpec, backend: Any,
                     raster: RasterInput) -> None:
    """One warning when files were read at their native resolution and that is not the resolution rs-embed
    reads the model at (e.g. prithvi: 30 m; 10 m Sentinel-2 files), so rs-embed's script gives other vectors.
    Caller-supplied arrays (a backend object) and precomputed products are read as they are, as in rs-embed."""
    if used.scale_m is not None or not isinstance(backend, str) or raster.precomputed:
        return
    want = float(raster.scale_m)
    off = [float(r.meta["scale_m"]) for r in results if isinstance(r, Embedding)
           and abs(float(r.meta.get("scale_m", want)) - want) > 0.01 * want]
    _warn(("resolution", spec.name, want), off, len(results))


# --------------------------------------------------------------------------------------------------------------
# embeddings


def get_embeddings_batch(
    model: str,
    *,
    spatials: list[BBox | PointBuffer],
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
    errors: Literal["raise", "return"] = "raise",
    progress: Callable[[int], None] | None = None,
    keep_reads: bool = False,
    **model_kwargs: Any,
) -> list[Any]:
    """Embed many regions with one loaded model; one result per region, same order.

    As rs-embed: ``fetch`` adjusts the model's default sensor (not with ``sensor``); ``temporal=None`` warns
    and uses 2022-06-01..2022-09-01; ``input_prep`` None is rs-embed's default ``tile`` (a region
    that is one model input is resized to it). omniembed's:
    ``backend`` may also be ``local:/folder`` or a backend object such as ``TensorBackend(array, transform,
    crs)``; ``runtime`` / ``precision`` as for ``omniembed.embed``; with ``errors="return"`` a region that fails
    (no data, too large, a backend error) gets its error, with its index in ``spatials``, in its place;
    ``keep_reads=True`` keeps each region's raster as read on its result (``GeoEmbedding.read``: what
    ``inspect_model_input`` would read, without reading it again)."""
    spatial_list(spatials)  # as in rs-embed: the request is checked before the model is looked up
    output = _check_output(output)
    _check_options(model, sensor, fetch, {})
    eng = _engine(engine)
    spec, config = _configured(eng, model, model_kwargs)
    _check_modality(spec, modality)
    when = window(temporal)
    prep = input_prep_of(input_prep)
    loaded, preparer, encoder, used = _setup(spec, when, sensor, fetch, output, backend, device, prep, runtime,
                                             precision, eng, keep_reads)
    options = Options(batch_size=prep.batch_size, normalize=False)
    try:  # rs-embed's classes: a band the source lacks is a ModelError there too
        results = [model_error(r) if isinstance(r, OmniEmbedError) else r
                   for r in run(loaded, Modality.GEO, list(spatials), options, errors=errors, progress=progress,
                                preparer=preparer, encoder=encoder)]
    except OmniEmbedError as exc:
        raise model_error(exc) from None
    extra = _call_meta(spec, temporal, when, used, output, backend, prep,
                       "default" if input_prep is None else prep.mode, preparer.raster)
    if config:  # the model settings it ran with (rs-embed's model_config), canonical, defaults filled in
        extra["model_config"] = config
    out = [_with_meta(r, extra) for r in results]
    _warn_coverage(out, eng.settings.geo_min_coverage)
    _warn_resolution(spec, out, used, backend, preparer.raster)
    return out


def get_embedding(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
    **model_kwargs: Any,
) -> GeoEmbedding:
    """Embed one region: a float32 vector (``OutputSpec.pooled()``, default) or a grid DataArray (d, y, x)
    (``OutputSpec.grid()``). ``backend``: ``auto``, ``local`` (``local:/folder`` or a sensor collection that
    is a path), ``stac``, ``gee``, or a backend object such as ``TensorBackend(array, transform, crs)``."""
    if temporal is None:
        window(None)  # warns here, once, naming the caller's line
        temporal = DEFAULT_TEMPORAL
    try:
        result: GeoEmbedding = get_embeddings_batch(
            model, spatials=[spatial], temporal=temporal, sensor=sensor, fetch=fetch, modality=modality, output=output,
            backend=backend, device=device, input_prep=input_prep, runtime=runtime, precision=precision,
            engine=engine, **model_kwargs)[0]
    except OmniEmbedError as exc:
        if exc.index is None:
            raise
        raise exc.at_index(None) from None  # one region: no position to name
    return result


def region_inputs(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    backend: Any = "auto",
    input_prep: InputPrepSpec | str | None = None,
    engine: Engine | None = None,
) -> dict[str, np.ndarray]:
    """The exact encoder feeds ``get_embedding`` gives ``model`` for one region (one row per tile): to check a
    model against a reference implementation, or to see what it is fed."""
    eng = _engine(engine)
    spec = _spec(eng, model)
    _check_spatial(spatial)
    _check_options(spec.name, sensor, fetch, {})
    _, preparer, _, _ = _setup(spec, window(temporal), sensor, fetch, OutputSpec.pooled(), backend, "cpu",
                               input_prep_of(input_prep), None, "fp32", eng)
    rows = preparer.prepare([spatial], Options())[0]
    if isinstance(rows, OmniEmbedError):
        raise rows.at_index(None)
    return preparer.collate(rows)


def inspect_model_input(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    backend: Any = "auto",
    value_range: tuple[float, float] | None = None,
    return_arrays: bool = False,
    engine: Engine | None = None,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """Read what ``model`` would be fed for ``spatial`` (bands, resolution, dates) without loading the model,
    and report it in rs-embed's shape: ``ok``, ``model``, ``backend``, ``n_frames``, ``n_empty``, ``frames``
    (per frame ``index``, ``start``, ``end``, ``empty`` and, unless empty, ``report``: shape, per-band
    statistics, percentiles, histogram, ``issues``; with ``return_arrays`` its ``array_chw``), ``fetch_meta``,
    ``sensor``, ``temporal``, ``artifacts``. omniembed's keys beside them: ``bands``, ``crs``, ``transform``,
    per frame ``date``, ``shape`` and ``stats`` (min, max, mean, NaN fraction, and the fraction outside
    ``value_range``), and with ``return_arrays`` ``arrays``, the raw (bands, rows, cols) arrays. A
    precomputed product's source is checked to be the product, and reported as read."""
    eng = _engine(engine)
    spec, _config = _configured(eng, model, model_kwargs)
    _check_spatial(spatial)
    _check_options(spec.name, sensor, fetch, {})
    _check_modality(spec, modality)
    when = window(temporal)
    raster = _raster_of(spec, None) if Modality.GEO in spec.modalities else image_raster(spec)
    src, used = _resolve_backend(backend, sensor, fetch, spec.name, raster, eng.settings.geo_sources)
    if isinstance(src, ProductBackend):
        src = dataclasses.replace(src, values=None)  # the bands are checked; the values shown as read
    try:
        read = src.read(spatial, when, used, eng.settings)
    except OmniEmbedError as exc:  # a band the source lacks is a ModelError, as in get_embedding
        raise model_error(exc) from None
    return inspection(read, spec.name, when, dataclasses.asdict(used), temporal, backend, value_range=value_range,
                      return_arrays=return_arrays)


def inspection(read: Raster, model: str, when: TimeWindow, sensor: dict[str, Any], temporal: TemporalSpec | None,
               backend: Any, *, value_range: tuple[float, float] | None = None,
               return_arrays: bool = False) -> dict[str, Any]:
    """``inspect_model_input``'s report of a raster already read (``read``, e.g. ``GeoEmbedding.read``) for
    ``model`` with ``sensor`` (the sensor read, as a dict)."""
    frames = []
    data = np.asarray(read.data, dtype=np.float32)
    for i, frame in enumerate(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = {"min": np.nanmin(frame, axis=(1, 2)).tolist(), "max": np.nanmax(frame, axis=(1, 2)).tolist(),
                     "mean": np.nanmean(frame, axis=(1, 2)).tolist(),
                     "nan_frac": np.isnan(frame).mean(axis=(1, 2)).tolist()}
        if value_range is not None:
            lo, hi = value_range
            stats["outside_range_frac"] = ((frame < lo) | (frame > hi)).mean(axis=(1, 2)).tolist()
        day = read.dates[i] if i < len(read.dates) else None
        empty = bool(np.isnan(frame).all())
        if len(data) > 1 and day is not None:  # one frame per date: the day it shows
            start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
        else:  # a composite of the window
            start, end = when.start.isoformat(), when.end.isoformat()
        entry: dict[str, Any] = {"index": i, "start": start, "end": end, "empty": empty,
                                 "date": day.isoformat() if day else None, "shape": list(frame.shape),
                                 "stats": stats}
        if not empty:
            entry["report"] = chw_report(frame, name=f"{model}_input_t{i}", value_range=value_range,
                                         fill_value=sensor.get("fill_value"))
        if return_arrays:
            entry["array_chw"] = frame
        frames.append(entry)
    n_empty = sum(f["empty"] for f in frames)
    out: dict[str, Any] = {
        "ok": n_empty < len(frames) and all(f["report"]["ok"] for f in frames if not f["empty"]),
        "model": model, "backend": _describe_backend(backend), "n_frames": len(frames), "n_empty": n_empty,
        "frames": frames,
        "fetch_meta": {"sources": [str(s) for s in read.sources], "composite": sensor.get("composite")},
        "sensor": sensor, "temporal": temporal.to_dict() if temporal is not None else None,
        "artifacts": None, "bands": list(read.bands), "crs": read.grid.crs,
        "transform": list(read.grid.transform)[:6],
    }
    if return_arrays:
        out["arrays"] = list(data)
    return out


def inputs_for_model(spec: ModelSpec, loaded: LoadedModel | None = None) -> RasterInput:
    """The raster contract of a model (loaded: exact; not loaded: from its spec)."""
    return _raster_of(spec, loaded) if Modality.GEO in spec.modalities else image_raster(spec)


def spatial_list(spatials: Sequence[Any]) -> list[BBox | PointBuffer]:
    """``spatials`` checked as a non-empty list of valid regions (``ModelError`` / ``SpecError``)."""
    if not isinstance(spatials, list) or not spatials:
        raise ModelRequestInvalid("spatials must be a non-empty list[SpatialSpec] (BBox / PointBuffer)",
                                  param="spatials")
    for i, s in enumerate(spatials):
        _check_spatial(s, i)
    return spatials
