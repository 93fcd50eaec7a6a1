"""A precomputed product's source, checked: the raster a backend reads for ``gse`` (or any product whose
``RasterInput`` is ``precomputed``) must be that product's raster, with its band count and, where the file
names its bands, its band names; anything else is refused before it can be written under the product's name.
The product's own ``normalize`` then maps the read to its values (``gse``: int8 codes dequantised)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from omniembed.errors import OmniEmbedError
from omniembed.geo.backends.base import Raster
from omniembed.geo.errors import ModelRequestInvalid
from omniembed.geo.specs import SensorSpec, SpatialSpec, TimeWindow
from omniembed.settings import Settings

__all__ = ["ProductBackend", "check_product"]

_UNNAMED = re.compile(r"band\d+")  # what the readers call a band the file leaves unnamed


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:3])}, ..., {names[-1]}"


def check_product(read: Raster, product: str, bands: tuple[str, ...]) -> Raster:
    """``read`` with its bands in the product's order, or ``ModelRequestInvalid`` naming what the source has and
    what the product needs. A source whose bands are unnamed is taken by its band count alone."""
    got = tuple(read.bands)
    want = {b.upper(): i for i, b in enumerate(bands)}
    unnamed = all(not b or _UNNAMED.fullmatch(b) for b in got)
    if len(got) == len(bands) and (unnamed or {b.upper() for b in got} == set(want)):
        if unnamed or [b.upper() for b in got] == [b.upper() for b in bands]:
            return replace(read, bands=bands)
        order = sorted(range(len(got)), key=lambda i: want[got[i].upper()])
        return replace(read, data=read.data[:, order], bands=bands)
    plural = "s" if len(got) != 1 else ""
    raise ModelRequestInvalid(
        f"model {product!r} reads a precomputed product of {len(bands)} bands ({_listed(bands)}); the source has "
        f"{len(got)} band{plural} ({_listed(got)}), so it is not that product. Point the backend at the files of "
        f"{product!r}, or embed this imagery with a model that computes embeddings (see list_models())",
        param="sensor", detail="sources: " + ", ".join(read.sources))


@dataclass(frozen=True, eq=False)
class ProductBackend:
    """``inner``, whose reads are checked to be ``product``'s raster (``check_product``) and mapped to its
    values by ``values`` (the product's ``RasterInput.normalize``; None: as read)."""

    inner: Any
    product: str
    bands: tuple[str, ...]
    values: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", type(self.inner).__name__))

    def read(self, spatial: SpatialSpec, temporal: TimeWindow | None, sensor: SensorSpec,
             settings: Settings) -> Raster:
        read = check_product(self.inner.read(spatial, temporal, sensor, settings), self.product, self.bands)
        if self.values is None:
            return read
        try:
            values = self.values(read.data)
        except OmniEmbedError as exc:  # the product's own check of its values: a ModelError here, as the bands'
            raise ModelRequestInvalid(f"model {self.product!r}: {exc.message}",
                                      **{**exc.fields(), "detail": "sources: " + ", ".join(read.sources)}) from None
        return replace(read, data=np.asarray(values, dtype=np.float32))
