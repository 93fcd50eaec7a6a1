"""rs-embed's request objects for exports and bring-your-own-data: ``ExportTarget`` (where), ``ExportConfig``
(how), ``ExportModelRequest`` (per-model settings), ``ModelConfig`` (a resolved model), ``UserData`` (an
array the caller already has, with what its pixels are). Same names, fields and defaults as rs-embed 0.3,
so rs-embed code builds them unchanged; omniembed adds ``ExportLayout.FOLDER`` (its resumable folder of
GIS files) and ``ExportTarget.folder``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from omniembed.geo.errors import SpecError
from omniembed.geo.specs import FetchSpec, InputPrepSpec, SensorSpec, SpatialSpec, TemporalSpec

__all__ = ["ExportConfig", "ExportLayout", "ExportModelRequest", "ExportTarget", "ModelConfig", "UserData"]


class ExportLayout(enum.Enum):
    """``COMBINED``: one file for every region and model; ``PER_ITEM``: one file per region (all models);
    ``FOLDER`` (omniembed): a resumable folder with a manifest and GIS-ready files per format."""

    COMBINED = "combined"
    PER_ITEM = "per_item"
    FOLDER = "folder"


@dataclass(frozen=True)
class ExportTarget:
    """Where an export goes: ``ExportTarget.combined(out_file)``, ``ExportTarget.per_item(out_dir, names=)``
    or omniembed's ``ExportTarget.folder(out_dir, names=)``. ``names``: one per region (default ``p00000``...
    for ``per_item``, ``roi00000``... for ``folder``)."""

    layout: ExportLayout
    out_file: str | None = None
    out_dir: str | None = None
    names: list[str] | None = None

    @classmethod
    def combined(cls, out_file: str) -> ExportTarget:
        return cls(layout=ExportLayout.COMBINED, out_file=str(out_file))

    @classmethod
    def per_item(cls, out_dir: str, *, names: list[str] | None = None) -> ExportTarget:
        return cls(layout=ExportLayout.PER_ITEM, out_dir=str(out_dir), names=names)

    @classmethod
    def folder(cls, out_dir: str, *, names: list[str] | None = None) -> ExportTarget:
        """omniembed's layout: ``out_dir/.items/<model>/<id>.npz`` (resume), ``manifest.json`` and the format's
        GIS files (GeoParquet, CF NetCDF/Zarr, COG, npz)."""
        return cls(layout=ExportLayout.FOLDER, out_dir=str(out_dir), names=names)


@dataclass(frozen=True)
class ExportConfig:
    """How an export runs, with rs-embed's fields and defaults.

    Used by omniembed: ``format`` (``npz``/``netcdf`` for every layout; ``zarr``, ``geotiff``, ``geoparquet``
    with ``ExportLayout.FOLDER``), ``save_embeddings``, ``save_manifest``, ``chunk_size`` (regions per
    call), ``infer_batch_size`` (tiles per encoder batch), ``continue_on_error`` and ``fail_on_bad_input``
    (a failing region is recorded and the export goes on, unless ``continue_on_error`` is False or
    ``fail_on_bad_input`` is True), ``max_retries`` / ``retry_backoff_s``, ``resume`` (keep finished items
    made for the same request), ``show_progress``, ``input_prep``, ``save_inputs`` (per-item and combined
    files also hold each model's input, as ``inspect_model_input`` reads it; the folder layout saves none).
    Accepted, not used: ``num_workers``, ``async_write``, ``writer_workers`` (omniembed reads the next
    regions while the current ones are encoded)."""

    format: str = "npz"
    save_inputs: bool = True
    save_embeddings: bool = True
    save_manifest: bool = True
    fail_on_bad_input: bool = False
    chunk_size: int = 16
    infer_batch_size: int | None = None
    num_workers: int = 8
    continue_on_error: bool = False
    max_retries: int = 0
    retry_backoff_s: float = 0.0
    async_write: bool = True
    writer_workers: int = 2
    resume: bool = False
    show_progress: bool = True
    input_prep: InputPrepSpec | str | None = None

    @property
    def effective_infer_batch_size(self) -> int:
        return max(1, int(self.infer_batch_size or self.chunk_size))

    @property
    def effective_chunk_size(self) -> int:
        return max(1, int(self.chunk_size))


@dataclass(frozen=True)
class ExportModelRequest:
    """One model of an export with its own ``sensor``, ``fetch`` or ``modality`` (rs-embed's per-model
    channel). ``model_config``: model-specific settings (``ExportModelRequest.configure(name, **kwargs)``)."""

    name: str
    sensor: SensorSpec | None = None
    fetch: FetchSpec | None = None
    modality: str | None = None
    model_config: dict[str, Any] | None = None

    @classmethod
    def configure(cls, name: str, *, sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                  modality: str | None = None, **model_kwargs: Any) -> ExportModelRequest:
        return cls(name=name, sensor=sensor, fetch=fetch, modality=modality, model_config=model_kwargs or None)


@dataclass(frozen=True)
class ModelConfig:
    """A resolved model of an export: name, backend, sensor, settings and kind (``precomputed`` or not)."""

    name: str
    backend: str
    sensor: SensorSpec | None = None
    model_config: dict[str, Any] | None = None
    model_type: str = ""

    @property
    def is_precomputed(self) -> bool:
        return "precomputed" in self.model_type.lower()


@dataclass(frozen=True)
class UserData:
    """Imagery the caller already has: ``data`` (``[C,H,W]`` or ``[T,C,H,W]``, raw units of ``collection``:
    e.g. Sentinel-2 L2A reflectance 0..10000), ``collection`` (``"s2"`` or a collection id), ``bands`` (one
    name per channel; None: the collection's canonical order), where (``spatial``, or ``crs`` + ``transform``
    of the array's pixel grid) and when (``temporal``). ``scale_m``: the pixel size, as provenance."""

    data: np.ndarray
    collection: str
    spatial: SpatialSpec | None = None
    bands: tuple[str, ...] | None = None
    temporal: TemporalSpec | None = None
    scale_m: int | None = None
    crs: str | None = None
    transform: Any | None = None

    @classmethod
    def from_raster(cls, path: str, *, collection: str, bands: tuple[str, ...] | None = None,
                    temporal: TemporalSpec | None = None) -> UserData:
        """A GeoTIFF (or any raster GDAL reads) with its CRS and transform; band names default to the file's
        band descriptions."""
        import rasterio

        with rasterio.open(path) as src:
            pixels = src.read()
            crs = src.crs.to_string() if src.crs is not None else None
            transform = src.transform if src.crs is not None else None
            names = tuple(src.descriptions) if all(src.descriptions) else None
            scale = round(src.res[0]) if src.crs is not None and src.crs.is_projected else None
        return cls(data=pixels, collection=collection, bands=bands or names, temporal=temporal, scale_m=scale,
                   crs=crs, transform=transform)

    def validate(self) -> None:
        if not str(self.collection or "").strip():
            raise SpecError("UserData.collection must be a non-empty collection id or alias", param="collection")
        if self.bands is not None and (len(self.bands) == 0 or any(not str(b or "").strip() for b in self.bands)):
            raise SpecError("UserData.bands must be a non-empty tuple of band names, or None for the collection's "
                            "canonical band order", param="bands")
        arr = np.asarray(self.data)
        if arr.ndim not in (3, 4):
            raise SpecError(f"UserData.data must be [C,H,W] or [T,C,H,W], got shape={arr.shape}", param="data")
        if self.bands is not None and arr.shape[-3] != len(self.bands):
            raise SpecError(f"UserData.data has {arr.shape[-3]} channels but declares {len(self.bands)} bands; one "
                            "band name per channel is required", param="bands")
        if self.scale_m is not None and self.scale_m <= 0:
            raise SpecError("UserData.scale_m must be positive when given", param="scale_m")
        if (self.crs is None) != (self.transform is None):
            raise SpecError("UserData.crs and UserData.transform must be given together", param="crs")
        if self.spatial is not None:
            self.spatial.validate()
        if self.temporal is not None:
            self.temporal.validate()
