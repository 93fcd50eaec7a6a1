"""Earth-observation embeddings with rs-embed 0.3's public API: change the import and run.

    >>> from omniembed.geo import PointBuffer, TemporalSpec, OutputSpec, get_embedding
    >>> emb = get_embedding("remoteclip", spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    ...                     temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    ...                     output=OutputSpec.pooled(pooling="mean"), backend="local:/data/s2")

Every name of ``rs_embed.__all__`` is here (``inspect_provider_patch``/``inspect_gee_patch`` as
``inspect_model_input``'s siblings; the pretty-warning switches as no-ops), plus ``Embedding``, ``SpecError``,
``ModelError`` and omniembed's own (backends, ``region_inputs``, ``TimeWindow``). Differences: docs/geo.md,
"Coming from rs-embed". Importing this package imports no ML or raster library; they load on first use.
"""

from omniembed.geo.api import (
    GeoEmbedding,
    describe_model,
    get_embedding,
    get_embeddings_batch,
    inspect_model_input,
    list_models,
    region_inputs,
    reset_runtime,
    to_dataarray,
)
from omniembed.geo.backends import Backend, LocalBackend, Raster, TensorBackend, get_backend
from omniembed.geo.compat import (
    disable_pretty_warnings,
    enable_pretty_warnings,
    inspect_gee_patch,
    inspect_provider_patch,
)
from omniembed.geo.errors import ModelError, SpecError
from omniembed.geo.export import BatchExporter, export_batch
from omniembed.geo.load import ExportResult, ModelResult, load_export
from omniembed.geo.model import Model
from omniembed.geo.specs import (
    BBox,
    FetchSpec,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    SpatialSpec,
    TemporalSpec,
    TimeWindow,
)
from omniembed.geo.types import (
    ExportConfig,
    ExportLayout,
    ExportModelRequest,
    ExportTarget,
    ModelConfig,
    UserData,
)
from omniembed.geo.user_data import get_embedding_from_data, get_embeddings_batch_from_data, list_models_for_data
from omniembed.version import __version__

Embedding = GeoEmbedding
"""rs-embed's ``Embedding`` (``data``, ``meta``): what every function here returns."""

__all__ = [
    "BBox",
    "Backend",
    "BatchExporter",
    "Embedding",
    "ExportConfig",
    "ExportLayout",
    "ExportModelRequest",
    "ExportResult",
    "ExportTarget",
    "FetchSpec",
    "GeoEmbedding",
    "InputPrepSpec",
    "LocalBackend",
    "Model",
    "ModelConfig",
    "ModelError",
    "ModelResult",
    "OutputSpec",
    "PointBuffer",
    "Raster",
    "SensorSpec",
    "SpatialSpec",
    "SpecError",
    "TemporalSpec",
    "TensorBackend",
    "TimeWindow",
    "UserData",
    "__version__",
    "describe_model",
    "disable_pretty_warnings",
    "enable_pretty_warnings",
    "export_batch",
    "get_backend",
    "get_embedding",
    "get_embedding_from_data",
    "get_embeddings_batch",
    "get_embeddings_batch_from_data",
    "inspect_gee_patch",
    "inspect_model_input",
    "inspect_provider_patch",
    "list_models",
    "list_models_for_data",
    "load_export",
    "region_inputs",
    "reset_runtime",
    "to_dataarray",
]
