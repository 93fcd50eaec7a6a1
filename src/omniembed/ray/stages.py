"""The two ``Dataset.map_batches`` stages: ``decode_batch`` (CPU tasks: fetch and decode images/audio) and
``Embedder`` (actors: the model loaded once, ``Engine.run(errors="return")`` per batch).

Both take Arrow, pandas or numpy batches and return an Arrow table: the input's other columns, plus
``embedding`` (fixed-size list of float32, null for a bad row), ``error`` (struct of ``code``, ``message``
and the error's fields ``param``, ``index``, ``model``, ``hint``, ``detail``, ``incident``; null for a good
row; ``error_from_row`` rebuilds its class) and, with ``segments=True``, ``segments`` (per-segment vectors
and times of segmented inputs such as audio). A bad row never raises: it becomes an error row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from omniembed.api import Engine
from omniembed.contract import Options
from omniembed.embedding import Modality
from omniembed.errors import FIELDS, InternalError, OmniEmbedError, class_for_code
from omniembed.inputs.audio import load_audio
from omniembed.inputs.image import load_image
from omniembed.models import default_registry
from omniembed.registry import ModelSpec, Registry
from omniembed.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DECODED", "Embedder", "build_engine", "decode_batch", "error_column", "error_from_row", "error_row",
           "error_type", "existing_errors", "to_table"]

DECODED, SHAPE, RATE = "_omniembed_decoded", "_omniembed_shape", "_omniembed_rate"
"""Columns the decode stage adds for the encoder stage (raw samples/pixels, their shape, the sample rate)."""


def error_type() -> pa.DataType:
    """The ``error`` column's struct: the code, the message and every field of the error (``FIELDS``)."""
    import pyarrow as pa

    return pa.struct([("code", pa.string()), ("message", pa.string()),
                      *((name, pa.int64() if name == "index" else pa.string()) for name in FIELDS)])


def error_row(error: OmniEmbedError) -> dict[str, Any]:
    """An error as a row of the ``error`` column (``error_type``)."""
    return {"code": error.code, "message": error.message, **error.fields()}


def error_from_row(row: dict[str, Any]) -> OmniEmbedError:
    """An ``error`` row back as an error: the class its code names (``class_for_code``) with its fields. Rows
    written before the fields were added have only the code and the message."""
    fields = {name: row.get(name) for name in FIELDS}
    return class_for_code(row["code"])(row["message"], **fields)



def build_engine(settings: dict[str, Any] | None, specs: Sequence[ModelSpec] = ()) -> Engine:
    """An engine on a worker, from the caller's settings (as plain data) and extra model specs. Compute
    threads default to the CPUs Ray assigned to this task or actor, not the whole node."""
    values = dict(settings or {})
    if not values.get("num_threads"):
        values["num_threads"] = _assigned_cpus()
    registry = Registry([*default_registry(), *specs]) if specs else None
    return Engine(Settings(**values), registry)


def _assigned_cpus() -> int:
    import sys

    if "ray" not in sys.modules:
        return 0
    try:
        import ray

        if not ray.is_initialized():
            return 0
        cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    except Exception:  # not in a Ray worker
        return 0
    return max(1, math.ceil(cpus)) if cpus else 0


def to_table(batch: Any) -> pa.Table:
    """An Arrow table from a Ray batch: a ``pyarrow.Table``, a ``pandas.DataFrame`` or a dict of numpy arrays."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        return pa.table({name: _arrow_column(np.asarray(v) if not isinstance(v, np.ndarray) else v)
                         for name, v in batch.items()})
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas
        return pa.table({str(name): _arrow_column(batch[name].to_numpy()) for name in batch.columns})
    raise TypeError(f"a batch must be a pyarrow Table, a pandas DataFrame or a dict of arrays, not {type(batch)}")


def _arrow_column(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    if values.ndim > 1 or (values.dtype == object and any(isinstance(v, np.ndarray) for v in values)):
        import importlib

        # Ray's tensor column type (images as arrays); its module moved between Ray releases
        module = importlib.import_module("ray.data._internal.tensor_extensions.arrow")
        tensors: pa.Array = module.ArrowTensorArray.from_numpy(values if values.ndim > 1 else list(values))
        return tensors
    return pa.array(values.tolist() if values.dtype == object else values)


def _values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column as Python values; tensor columns (Ray's image arrays) as numpy arrays."""
    import pyarrow as pa

    if isinstance(column.type, pa.ExtensionType) and hasattr(column, "to_numpy"):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        out: list[Any] = []
        for chunk in chunks:
            out.extend(list(chunk.to_numpy()))
        return out
    return column.to_pylist()


def error_column(errors: Sequence[OmniEmbedError | None]) -> pa.Array:
    import pyarrow as pa

    rows = [None if e is None else error_row(e) for e in errors]
    return pa.array(rows, error_type())


def existing_errors(table: pa.Table) -> list[OmniEmbedError | None]:
    """Errors set by an earlier stage (the decode stage), as error objects; None where the row is fine."""
    if "error" not in table.column_names:
        return [None] * table.num_rows
    return [None if row is None else error_from_row(row) for row in table.column("error").to_pylist()]


def decode_batch(batch: Any, *, column: str, modality: str, settings: dict[str, Any] | None = None,
                 allow_paths: bool = True) -> pa.Table:
    """The CPU stage: fetch (through the guarded fetcher) and decode each image or audio input of ``column``
    into raw pixels / samples, so the encoder stage does no I/O. A row that cannot be read gets its error."""
    import pyarrow as pa

    table = to_table(batch)
    conf = Settings(**(settings or {}))
    errors = existing_errors(table)
    raw: list[bytes | None] = []
    shapes: list[list[int] | None] = []
    rates: list[int | None] = []
    for i, item in enumerate(_values(table.column(column))):
        data: bytes | None = None
        shape: list[int] | None = None
        rate: int | None = None
        if errors[i] is None:
            try:
                if modality == "image":
                    pixels = np.asarray(load_image(item, conf, allow_paths=allow_paths).image, np.uint8)
                    data, shape = pixels.tobytes(), list(pixels.shape)
                else:
                    clip = load_audio(item, conf, allow_paths=allow_paths)
                    data, shape, rate = clip.samples.astype(np.float32).tobytes(), [len(clip.samples)], clip.sample_rate
            except OmniEmbedError as exc:
                errors[i] = exc
            except Exception as exc:  # a decoder bug must not fail the job: one error row
                errors[i] = InternalError.from_exception(exc, "decoding the input")
        raw.append(data)
        shapes.append(shape)
        rates.append(rate)
    keep = [n for n in table.column_names if n != "error" and not (n == column and pa.types.is_binary(
        table.schema.field(n).type))]
    out = table.select(keep)
    out = out.append_column(DECODED, pa.array(raw, pa.binary()))
    out = out.append_column(SHAPE, pa.array(shapes, pa.list_(pa.int64())))
    out = out.append_column(RATE, pa.array(rates, pa.int64()))
    return out.append_column("error", error_column(errors))


def _decoded_items(table: pa.Table, modality: str) -> list[Any]:
    raw = table.column(DECODED).to_pylist()
    shapes = table.column(SHAPE).to_pylist()
    rates = table.column(RATE).to_pylist()
    items: list[Any] = []
    for data, shape, rate in zip(raw, shapes, rates, strict=True):
        if data is None:
            items.append(None)
        elif modality == "image":
            items.append(np.frombuffer(data, np.uint8).reshape(shape))
        else:
            items.append((np.frombuffer(data, np.float32), int(rate)))
    return items


class Embedder:
    """A callable class for ``Dataset.map_batches``: the model is loaded once per actor in ``__init__``.

    ``model``: a name, alias or folder; ``column``: the input column; ``modality``: text, image or audio;
    ``settings``: the engine's settings as a dict (``Settings.model_dump(mode="json")``), shipped to the actor;
    ``options``: ``embed_batch`` keywords (truncate, normalize, pooling, runtime, device, precision,
    batch_size, segment_sec...); ``specs``: extra model specs to register; ``segments``: add a ``segments``
    column (per-segment vectors of audio). With ``num_gpus`` on the stage, pass ``options={"device": "cuda"}``
    (``embed_dataset`` does).
    """

    def __init__(self, model: str, column: str = "text", modality: str = "text", *,
                 settings: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 specs: Sequence[ModelSpec] = (), segments: bool = False) -> None:
        self.model, self.column, self.modality, self.segments = model, column, modality, segments
        self.options = Options.of(**(options or {}))
        self.engine = build_engine(settings, specs)
        self.engine.load(model, runtime=self.options.runtime, device=self.options.device,
                         precision=self.options.precision)  # once per actor, before the first batch
        self.dim: int = self.engine.spec(model).dim

    def __call__(self, batch: Any) -> pa.Table:
        import pyarrow as pa

        table = to_table(batch)
        errors = existing_errors(table)
        decoded = DECODED in table.column_names
        items = _decoded_items(table, self.modality) if decoded else _values(table.column(self.column))
        todo = [i for i, e in enumerate(errors) if e is None]
        results: list[Any] = [None] * table.num_rows
        if todo:
            try:
                out = self.engine.run(self.model, Modality(self.modality), [items[i] for i in todo], self.options,
                                      errors="return")
            except OmniEmbedError as exc:  # a call-level problem (bad option): every row gets it
                out = [exc] * len(todo)
            for i, result in zip(todo, out, strict=True):
                if isinstance(result, OmniEmbedError):
                    errors[i] = result.at_index(None)
                else:
                    results[i] = result
        if any(r is not None for r in results):
            self.dim = next(r for r in results if r is not None).vector.shape[-1]
        drop = {DECODED, SHAPE, RATE, "error", "embedding", "segments"}
        out_table = table.select([n for n in table.column_names if n not in drop])
        out_table = out_table.append_column("embedding", self._vectors(results))
        out_table = out_table.append_column("error", error_column(errors))
        if self.segments:
            out_table = out_table.append_column("segments", self._segments(results))
        assert isinstance(out_table, pa.Table)
        return out_table

    def _vectors(self, results: list[Any]) -> pa.Array:
        import pyarrow as pa

        flat = np.zeros((len(results), self.dim), np.float32)
        mask = np.ones(len(results), bool)
        for i, r in enumerate(results):
            if r is not None:
                flat[i], mask[i] = r.vector, False
        values = pa.array(flat.reshape(-1), pa.float32())
        return pa.FixedSizeListArray.from_arrays(values, self.dim, mask=pa.array(mask))

    def _segments(self, results: list[Any]) -> pa.Array:
        import pyarrow as pa

        kind = pa.struct([("start_sec", pa.float64()), ("end_sec", pa.float64()),
                          ("embedding", pa.list_(pa.float32(), self.dim))])
        rows: list[Any] = []
        for r in results:
            if r is None:
                rows.append(None)
                continue
            data = r.data if r.data.ndim == 2 else r.data[None, :]
            spans = r.meta.segments or [None] * len(data)
            rows.append([{"start_sec": s.start_sec if s else None, "end_sec": s.end_sec if s else None,
                          "embedding": [float(x) for x in row]} for s, row in zip(spans, data, strict=False)])
        return pa.array(rows, pa.list_(kind))
