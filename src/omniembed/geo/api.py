"""The Earth-observation face: ``get_embedding``, ``get_embeddings_batch``, ``list_models``.

A thin face over the one pipeline: a region is an input like an audio clip. The region preparer
(``geo.preparer``) reads it through a backend and plans tiles; the pipeline batches the tiles of many
regions, encodes them through the model's runtime (ONNX Runtime by default on CPU, PyTorch, compiled bf16)
and the preparer stitches each region's grid back and pools it. Results are float32 vectors (pooled) or
``xarray.DataArray`` grids (band, y, x) with the CRS and coordinates that place them on the map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.geo.backends import get_backend
from omniembed.geo.models import geo_spec_info, image_raster
from omniembed.geo.preparer import GeoEmbedding, RegionCall, RegionPreparer, to_dataarray
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from omniembed.inputs.raster import RasterInput
from omniembed.pipeline import LoadedModel, Options, run
from omniembed.runtime import Encoder

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = [
    "GeoEmbedding", "get_embedding", "get_embeddings_batch", "list_models", "region_inputs", "to_dataarray",
]


def _engine(engine: Engine | None) -> Engine:
    from omniembed.api import get_engine

    return engine if engine is not None else get_engine()


def list_models(engine: Engine | None = None) -> list[dict[str, Any]]:
    """Every model usable on regions (geo models, precomputed products, image models on RGB composites)
    with its bands, resolution, dimension and pooled/grid support. Imports no ML library."""
    eng = _engine(engine)
    return [geo_spec_info(s) for s in eng.registry if {Modality.GEO, Modality.IMAGE} & set(s.modalities)]


def _resolve_backend(
    backend: Any, sensor: SensorSpec | None, name: str, raster: RasterInput, sources: dict[str, str]
) -> tuple[Any, SensorSpec]:
    """``sources`` are the named sources of the settings (``OMNIEMBED_GEO_SOURCES``): a name used as
    ``backend="local:NAME"`` or as a sensor collection stands for its folder, file or catalog URL."""
    source = None
    if isinstance(backend, str) and backend.startswith("local:"):
        backend, source = "local", backend[len("local:"):]
        source = sources.get(source, source)
    if sensor is not None and sensor.collection in sources:
        sensor = dataclasses.replace(sensor, collection=sources[sensor.collection])
    if sensor is None:
        collection = source or raster.collection
        local = source is not None or backend == "local" or not isinstance(backend, str)  # files/arrays: native res
        if backend == "local" and source is None:
            raise ParameterNotProvided("backend='local' needs the files: pass backend='local:/path/to/folder' or "
                                       "sensor=SensorSpec(collection='/path/to/folder')", param="sensor")
        bands = () if raster.precomputed else raster.bands
        sensor = SensorSpec(collection, bands=bands, scale_m=None if local else raster.scale_m)
    elif not sensor.bands and not raster.precomputed:
        sensor = dataclasses.replace(sensor, bands=raster.bands)
    if not raster.precomputed and len(sensor.bands) != len(raster.bands):
        raise ParameterInvalid(f"model {name!r} takes {len(raster.bands)} bands ({', '.join(raster.bands)}); "
                               f"sensor gives {len(sensor.bands)} ({', '.join(map(str, sensor.bands))})",
                               param="bands")
    return get_backend(backend, sensor), sensor


def _check_spatial(spatial: Any, index: int | None = None) -> None:
    if not isinstance(spatial, (BBox, PointBuffer)):
        raise ParameterInvalid(f"spatial must be a BBox or a PointBuffer, not {type(spatial).__name__}",
                               param="spatial", index=index)


def _setup(model: str, temporal: TemporalSpec | None, sensor: SensorSpec | None, output: OutputSpec, backend: Any,
           device: str, prep: InputPrepSpec, runtime: str | None, precision: str | None,
           engine: Engine | None) -> tuple[LoadedModel, RegionPreparer, Encoder]:
    """The loaded model, the call's region preparer and the encoder that runs its rows."""
    eng = _engine(engine)
    spec = eng.spec(model)
    if Modality.GEO in spec.modalities:
        loaded = eng.load(spec.name, runtime=runtime, device=device, precision=precision)
        assert loaded.raster is not None, f"geo model {spec.name} loaded without its RasterInput"
        raster, image, encoder = loaded.raster, None, loaded.encoders[Modality.GEO]
    elif Modality.IMAGE in spec.modalities:  # any image model: RGB composites, one vector per tile
        loaded = eng.load(spec.name, runtime=runtime, device=device, precision=precision)
        raster, image, encoder = image_raster(spec), loaded.preparers[Modality.IMAGE], loaded.encoders[Modality.IMAGE]
    else:
        raise ParameterInvalid(f"model {spec.name!r} embeds {', '.join(map(str, spec.modalities))}, not images or "
                               "regions; see omniembed.geo.list_models()", param="model")
    src, sensor = _resolve_backend(backend, sensor, spec.name, raster, eng.settings.geo_sources)
    if output.mode == "grid" and output.scale_m is not None:
        sensor = dataclasses.replace(sensor, scale_m=output.scale_m)
    call = RegionCall(src, sensor, temporal, output, prep, eng.settings)
    return loaded, RegionPreparer(raster, call, image, (spec.pooling, spec.normalize)), encoder


def region_inputs(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    backend: Any = "auto",
    input_prep: InputPrepSpec | str = "resize",
    engine: Engine | None = None,
) -> dict[str, np.ndarray]:
    """The exact encoder feeds ``get_embedding`` gives ``model`` for one region (one row per tile): to check a
    model against a reference implementation, or to see what it is fed."""
    _check_spatial(spatial)
    _, preparer, _ = _setup(model, temporal, sensor, OutputSpec.pooled(), backend, "cpu",
                            InputPrepSpec.coerce(input_prep), None, "fp32", engine)
    rows = preparer.prepare([spatial], Options())[0]
    if isinstance(rows, OmniEmbedError):
        raise rows.at_index(None)
    return preparer.collate(rows)


def get_embeddings_batch(
    model: str,
    *,
    spatials: Sequence[BBox | PointBuffer],
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str = "resize",
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
    errors: Literal["raise", "return"] = "raise",
    progress: Callable[[int], None] | None = None,
) -> list[Any]:
    """Embed many regions with one loaded model; one result per region, same order. With
    ``errors="return"`` a region that fails (no data, too large, a backend error) gets its error, with its
    index in ``spatials``, in its place; the other regions are still embedded. ``runtime`` and
    ``precision`` as for ``omniembed.embed`` (default: the engine's settings, ONNX Runtime on CPU)."""
    if isinstance(spatials, (BBox, PointBuffer)) or not isinstance(spatials, Sequence) or not spatials:
        raise ParameterInvalid("spatials must be a non-empty list of BBox / PointBuffer", param="spatials")
    for i, s in enumerate(spatials):
        _check_spatial(s, i)
    if temporal is not None and not isinstance(temporal, TemporalSpec):
        raise ParameterInvalid("temporal must be a TemporalSpec (TemporalSpec.range / .year) or None",
                               param="temporal")
    output = output or OutputSpec.pooled()
    if not isinstance(output, OutputSpec):
        raise ParameterInvalid("output must be OutputSpec.pooled(...) or OutputSpec.grid(...)", param="output")
    prep = InputPrepSpec.coerce(input_prep)
    loaded, preparer, encoder = _setup(model, temporal, sensor, output, backend, device, prep, runtime, precision,
                                       engine)
    options = Options(batch_size=prep.batch_size, normalize=False)
    return run(loaded, Modality.GEO, list(spatials), options, errors=errors, progress=progress, preparer=preparer,
               encoder=encoder)


def get_embedding(
    model: str,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    output: OutputSpec | None = None,
    backend: Any = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str = "resize",
    runtime: str | None = None,
    precision: str | None = None,
    engine: Engine | None = None,
) -> Embedding:
    """Embed one region: a float32 vector (``OutputSpec.pooled()``, default) or a grid DataArray
    (``OutputSpec.grid()``). ``backend``: ``auto``, ``local`` (``local:/folder`` or sensor collection = a
    path), ``stac``, ``gee``, or a backend object such as ``TensorBackend(array, transform, crs)``."""
    _check_spatial(spatial)
    try:
        result: Embedding = get_embeddings_batch(
            model, spatials=[spatial], temporal=temporal, sensor=sensor, output=output, backend=backend,
            device=device, input_prep=input_prep, runtime=runtime, precision=precision, engine=engine)[0]
    except OmniEmbedError as exc:
        if exc.index is None:
            raise
        raise exc.at_index(None) from None  # one region: no position to name
    return result
