"""Precomputed embedding rasters: ``gse`` (alias ``gse_annual``), Google's 64-band annual Satellite
Embedding (AlphaEarth Foundations, 10 m), or any embedding raster with one band per dimension.

No encoder runs: the backend reads the product (a local folder of exported GeoTIFFs, a STAC collection,
or GEE ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``) and each pixel is one grid cell; pooled output is the
mean (or max) over the region's valid pixels. The source must have the product's 64 bands (named
A00..A63 where the file names them; the geo face refuses any other raster) with values in [-1, 1], or
the int8 codes of Google's AlphaEarth COGs, dequantised here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omniembed.embedding import Modality
from omniembed.errors import ParameterInvalid
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


def embedding_values(raw: np.ndarray) -> np.ndarray:
    """A read of the product as its float values: floats in [-1, 1] as they are; the int8 codes of the
    AlphaEarth COGs (integers in -127..127, -128 = no data) dequantised as Google documents,
    sign(v) * (v / 127.5)^2. Anything else is not this product (``ParameterInvalid``)."""
    data = np.asarray(raw, dtype=np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0 or float(np.abs(finite).max()) <= 1.0 + 1e-4:
        return data
    if float(finite.min()) >= -128.0 and float(finite.max()) <= 127.0 and bool(np.all(finite == np.round(finite))):
        out = np.sign(data) * (data / np.float32(127.5)) ** 2
        out[data == -128.0] = np.nan
        return out.astype(np.float32)
    raise ParameterInvalid(
        f"the source's values run from {float(finite.min()):g} to {float(finite.max()):g}: gse's embeddings are "
        "unit vectors with values in [-1, 1] (or int8 codes -127..127 read at their native resolution); point "
        "the backend at the product's own files, and leave scale_m unset for its int8 COGs", param="sensor")


def load(spec: ModelSpec, folder: Path | None, runtime: str, device: str, settings: Any) -> Any:
    from omniembed.contract import LoadedModel
    from omniembed.inputs.raster import RasterInput
    from omniembed.runtime import PassThroughEncoder

    raster = RasterInput(GSE_BANDS, 0, 1, embedding_values, "precomputed embedding raster; no encoder", scale_m=10.0,
                         collection=str(spec.option("collection")), precomputed=True)
    return LoadedModel(spec, "precomputed", {}, {Modality.GEO: PassThroughEncoder("grid")}, "precomputed", "cpu",
                       raster=raster)
