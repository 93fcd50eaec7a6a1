"""Earth-observation embeddings with the rs-embed call shape: change the import and run.

    >>> from omniembed.geo import PointBuffer, TemporalSpec, OutputSpec, get_embedding
    >>> emb = get_embedding("remoteclip", spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
    ...                     temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
    ...                     output=OutputSpec.pooled(pooling="mean"), backend="local:/data/s2")

Importing this package imports no ML or raster library; they load on first use.
"""

from omniembed.geo.api import (
    GeoEmbedding,
    get_embedding,
    get_embeddings_batch,
    list_models,
    region_inputs,
    to_dataarray,
)
from omniembed.geo.backends import Backend, LocalBackend, Raster, TensorBackend, get_backend
from omniembed.geo.specs import BBox, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, SpatialSpec, TemporalSpec

__all__ = [
    "BBox",
    "Backend",
    "GeoEmbedding",
    "InputPrepSpec",
    "LocalBackend",
    "OutputSpec",
    "PointBuffer",
    "Raster",
    "SensorSpec",
    "SpatialSpec",
    "TemporalSpec",
    "TensorBackend",
    "export_batch",
    "get_backend",
    "get_embedding",
    "get_embeddings_batch",
    "list_models",
    "region_inputs",
    "to_dataarray",
]


def __getattr__(name: str) -> object:
    if name == "export_batch":
        from omniembed.geo.export import export_batch

        return export_batch
    raise AttributeError(name)
