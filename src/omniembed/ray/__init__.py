"""omniembed on a Ray cluster (``pip install 'omniembed[ray]'``): Ray Data's batch-inference pattern with the
omniembed engine in charge of every vector.

::

    import ray, omniembed.ray as oray
    ds = ray.data.read_parquet("corpus.parquet")            # columns: id, text
    out = oray.embed_dataset(ds, "minilm", column="text", concurrency=4)
    out.write_parquet("out/")                                # id, text, embedding, error

``embed_dataset`` adds up to two stages to the dataset: a CPU stage of tasks that fetch (through the guarded
fetcher) and decode images or audio (``decode_batch``), then the encoder stage, a pool of ``Embedder``
actors that each load the model once and call ``Engine.run(errors="return")`` per batch, so the
vectors are those of an in-process ``embed_batch``. A bad row becomes an error row (``error.code``,
``error.message`` and the error's fields, ``error.param`` ...; ``stages.error_from_row`` makes it an error
again); it never fails the job. Rows keep their other columns (give them an ``id`` column: the
output's order is not the input's).

The ONNX graphs and compiled models are cached in ``Settings.cache_dir`` (``OMNIEMBED_CACHE_DIR``); actors
on one node share that folder, and concurrent writers are safe (each artifact is built in a temporary
folder and moved into place in one rename). ``RayEngine`` carries settings and extra model specs to the
workers for the geo export (``export_batch(..., engine=RayEngine(...))`` or ``engine="ray"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omniembed.api import Engine
from omniembed.errors import ParameterInvalid, RuntimeUnavailable
from omniembed.models import default_registry
from omniembed.ray.stages import Embedder, build_engine, decode_batch
from omniembed.registry import ModelSpec
from omniembed.settings import Settings

if TYPE_CHECKING:
    import ray.data

__all__ = ["Embedder", "RayEngine", "connect", "decode_batch", "embed_dataset", "require_ray", "settings_dict"]

MODALITIES = ("text", "image", "audio")


def require_ray() -> Any:
    """The ``ray`` module, or RuntimeUnavailable saying which extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RuntimeUnavailable("Ray is not installed: pip install 'omniembed[ray]' (ray[data] >= 2.60)",
                                 param="engine", hint="pip install 'omniembed[ray]'") from exc
    return ray


def connect(address: str | None = None, **init_args: Any) -> Any:
    """Connect to a Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``) unless connected already;
    ``None`` starts a local one. Returns the ``ray`` module."""
    ray = require_ray()
    if not ray.is_initialized():
        init_args.setdefault("include_dashboard", False)
        init_args.setdefault("log_to_driver", False)
        ray.init(address=address, **init_args)
    return ray


def settings_dict(settings: Settings | dict[str, Any] | None) -> dict[str, Any]:
    """Settings as plain data for the workers (``None``: this process's ``Settings()``)."""
    if isinstance(settings, dict):
        return dict(settings)
    return (settings if settings is not None else Settings()).model_dump(mode="json")


@dataclass(frozen=True)
class RayEngine:
    """What the workers need to build their own engine: settings, extra model specs, and how many parallel
    tasks to run (``parallelism``; default: the cluster's CPUs) with ``num_cpus`` / ``num_gpus`` each."""

    settings: dict[str, Any] = field(default_factory=dict)
    specs: tuple[ModelSpec, ...] = ()
    address: str | None = None
    parallelism: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @classmethod
    def from_engine(cls, engine: Engine | None = None, **kwargs: Any) -> RayEngine:
        """The settings and the non-default model specs of a local engine (``None``: from ``Settings()``)."""
        if engine is None:
            return cls(settings=settings_dict(None), **kwargs)
        builtin = {s.name for s in default_registry()}
        extra = tuple(s for s in engine.registry if s.name not in builtin)
        return cls(settings=settings_dict(engine.settings), specs=extra, **kwargs)


def _modality(model: str, column: str, modality: str | None, settings: dict[str, Any],
              specs: Sequence[ModelSpec]) -> str:
    if modality is not None:
        if modality not in MODALITIES:
            raise ParameterInvalid(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}",
                                   param="modality")
        return modality
    spec = build_engine(settings, specs).spec(model)
    kinds = [str(m) for m in spec.modalities if str(m) in MODALITIES]
    if len(kinds) == 1:
        return kinds[0]
    guess = next((m for m in kinds if column.lower().startswith(m)), None)
    if guess is None:
        raise ParameterInvalid(f"model {spec.name!r} embeds {', '.join(kinds) or 'no text, image or audio'}; "
                               f"say which with modality=", param="modality")
    return guess


def embed_dataset(
    ds: ray.data.Dataset,
    model: str,
    *,
    column: str = "text",
    modality: str | None = None,
    settings: Settings | dict[str, Any] | None = None,
    specs: Sequence[ModelSpec] = (),
    batch_size: int = 64,
    concurrency: int | tuple[int, int] = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    decode: bool = True,
    decode_num_cpus: float = 1.0,
    decode_concurrency: int | None = None,
    segments: bool = False,
    ray_remote_args: dict[str, Any] | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """``ds`` with ``embedding`` and ``error`` columns added (and ``segments`` with ``segments=True``).

    ``column`` holds the inputs: texts; images as paths, http(s) URLs, bytes or arrays; audio as paths,
    URLs or bytes. ``modality``: text, image or audio (default: the model's only one, or the column's name).
    ``concurrency``: encoder actors (or a ``(min, max)`` autoscaling range), each with ``num_cpus`` and
    ``num_gpus``; with ``num_gpus`` the engine runs on ``device="cuda"``. ``decode``: fetch and decode images
    and audio in a separate CPU stage (``decode_num_cpus`` per task), so the encoder never waits on I/O.
    ``settings``: the engine settings shipped to the workers (default: ``Settings()`` here). Other keywords
    are ``embed_batch`` options (truncate, normalize, pooling, runtime, precision, segment_sec...).
    """
    require_ray()
    conf = settings_dict(settings)
    kind = _modality(model, column, modality, conf, specs)
    if num_gpus and "device" not in options:
        options["device"] = "cuda"
    if "allow_paths" not in options:
        options["allow_paths"] = True
    import ray.data

    if kind != "text" and decode:
        tasks = None if decode_concurrency is None else ray.data.TaskPoolStrategy(size=decode_concurrency)
        fn_kwargs = {"column": column, "modality": kind, "settings": conf, "allow_paths": options["allow_paths"]}
        ds = ds.map_batches(decode_batch, batch_format="pyarrow",  # type: ignore[arg-type]
                            batch_size=batch_size, num_cpus=decode_num_cpus, compute=tasks, fn_kwargs=fn_kwargs)
    low, high = concurrency if isinstance(concurrency, tuple) else (concurrency, concurrency)
    actors = ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    return ds.map_batches(
        Embedder, batch_format="pyarrow", batch_size=batch_size, compute=actors, num_cpus=num_cpus,
        num_gpus=num_gpus or None,
        fn_constructor_kwargs={"model": model, "column": column, "modality": kind, "settings": conf,
                               "options": options, "specs": tuple(specs), "segments": segments},
        **(ray_remote_args or {}),
    )
