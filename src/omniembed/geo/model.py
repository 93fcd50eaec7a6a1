"""``Model``: rs-embed's class form of ``get_embedding``: settings once, then ``.get_embedding(spatial)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omniembed.geo.api import (
    _configured,
    _engine,
    _spec,
    describe_model,
    get_embedding,
    get_embeddings_batch,
    list_models,
)
from omniembed.geo.preparer import GeoEmbedding
from omniembed.geo.specs import FetchSpec, InputPrepSpec, OutputSpec, SensorSpec, SpatialSpec, TemporalSpec

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["Model"]


class Model:
    """A model with its call settings (``backend``, ``device``, ``sensor`` or ``fetch``, ``modality``, ``output``,
    ``input_prep``; omniembed's ``runtime``, ``precision``, ``engine``) and its model settings (``variant=...``,
    checked on construction); loaded on first use, then kept."""

    def __init__(self, name: str, *, backend: Any = "auto", device: str = "auto", sensor: SensorSpec | None = None,
                 fetch: FetchSpec | None = None, modality: str | None = None, output: OutputSpec | None = None,
                 input_prep: InputPrepSpec | str | None = None, runtime: str | None = None,
                 precision: str | None = None, engine: Engine | None = None, **model_kwargs: Any) -> None:
        self.engine = _engine(engine)
        self.name = _spec(self.engine, name).name
        _configured(self.engine, self.name, model_kwargs)  # model settings (variant=...) checked here, once
        self.settings: dict[str, Any] = {
            "backend": backend, "device": device, "sensor": sensor, "fetch": fetch, "modality": modality,
            "output": output, "input_prep": input_prep, "runtime": runtime, "precision": precision,
            "engine": self.engine, **model_kwargs}

    def get_embedding(self, spatial: SpatialSpec, *, temporal: TemporalSpec | None = None) -> GeoEmbedding:
        return get_embedding(self.name, spatial=spatial, temporal=temporal, **self.settings)

    def get_embeddings_batch(self, spatials: list[SpatialSpec], *,
                             temporal: TemporalSpec | None = None) -> list[GeoEmbedding]:
        return get_embeddings_batch(self.name, spatials=spatials, temporal=temporal, **self.settings)

    def describe(self) -> dict[str, Any]:
        return describe_model(self.name, engine=self.engine)

    @staticmethod
    def list_models(*, include_aliases: bool = False) -> list[str]:
        return list_models(include_aliases=include_aliases)

    def __repr__(self) -> str:
        return f"Model({self.name!r})"
