"""Precomputed embedding rasters: ``gse`` (alias ``gse_annual``), Google's 64-band annual Satellite
Embedding (AlphaEarth Foundations, 10 m), or any embedding raster with one band per dimension.

No encoder runs: the backend reads the product (a local folder of exported GeoTIFFs, a STAC collection,
or GEE ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``) and each pixel is one grid cell; pooled output is the
mean (or max) over the region's valid pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.registry import ModelSpec, WeightsSource

LOADER = "omniembed.models.gse:load"
GSE_BANDS = tuple(f"A{i:02d}" for i in range(64))

SPECS = (
    ModelSpec(
        name="gse",
        loader=LOADER,
        modalities=(Modality.GEO,),
        dim=64,
        pooling="mean",
        normalize=False,
        weights=WeightsSource(),
        license="CC-BY-4.0",
        aliases=("gse_annual", "satellite_embedding", "alphaearth"),
        description="Precomputed 64-d annual Satellite Embedding rasters (AlphaEarth); read, not computed",
        options=(("precomputed", True), ("bands", GSE_BANDS), ("scale_m", 10.0),
                 ("collection", "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL")),
    ),
)


def load(spec: ModelSpec, folder: Path | None, runtime: str, device: str, settings: Any) -> Any:
    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput
    from omniembed.runtime import PassThroughEncoder

    def identity(raw: Any) -> Any:
        return raw

    raster = RasterInput(GSE_BANDS, 0, 1, identity, "precomputed embedding raster; no encoder", scale_m=10.0,
                         collection=str(spec.option("collection")), precomputed=True)
    return LoadedModel(spec, "precomputed", {}, {Modality.GEO: PassThroughEncoder("grid")}, "precomputed", "cpu",
                       raster=raster)
