"""``omniembed embed MODEL --input X --out DIR/ [--engine ray]``: a corpus to Parquet shards under a manifest.

The inputs (a ``.parquet`` file's ``--column``, a ``.txt`` / ``.jsonl`` file or a glob of them, or a folder of
images or, for an audio model, audio files: one row per file, its pooled vector) are numbered once and cut
into shards of ``--shard-rows`` rows: ``DIR/part-00000.parquet`` ... with the columns ``id`` (string),
``embedding`` (fixed-size list of float32; null for a bad row) and ``error`` (struct of ``code`` and
``message``; null for a good row), in input order. A shard is written to a temporary file and renamed into
place, then listed in ``DIR/_manifest.json`` (also replaced atomically): the manifest is what "done" means. A
re-run with the same inputs and options embeds only the shards the manifest does not list, so a run killed
half way resumes and no row is written twice.

``--engine local`` (the default) embeds in this process; ``--engine ray`` sends the rows to a Ray cluster
(``--address``; ``omniembed.ray.embed_dataset`` with ``--concurrency`` encoder actors) and writes each shard
here as its rows come back. Both write the same files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console

from omniembed.api import Engine
from omniembed.atomic import atomic_path
from omniembed.cli.audio import AUDIO_SUFFIXES
from omniembed.cli.images import image_files
from omniembed.cli.records import read_records
from omniembed.contract import Options
from omniembed.embedding import Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.inputs.image import IMAGE_SUFFIXES
from omniembed.ray import _modality, connect, embed_dataset
from omniembed.ray.stages import error_column, existing_errors

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MANIFEST", "Corpus", "embed_sharded", "read_corpus"]

MANIFEST = "_manifest.json"  # "_": pyarrow and Ray skip it when reading the folder as a dataset
VERSION = "omniembed-shards/1"


@dataclass
class Corpus:
    """Numbered inputs: ``ids[i]`` and ``values[i]``; ``failed[i]`` when row ``i`` could not be read."""

    ids: list[str]
    values: list[Any]
    modality: str
    sources: list[str]
    failed: dict[int, OmniEmbedError] = field(default_factory=dict)
    blank: int = 0
    """Blank lines of the text files (skipped; the summary counts them)."""


def _files(pattern: Path) -> list[Path]:
    text = str(pattern)
    if any(c in text for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)))
        if not found:
            raise ParameterInvalid(f"no file matches --input {text}", param="input")
        return found
    if not pattern.exists():
        raise ParameterInvalid(f"--input {pattern} does not exist", param="input")
    return [pattern]


def read_corpus(pattern: Path, column: str, modality: str) -> Corpus:
    """The rows of a folder of images, a .parquet file (``column``; ids from an ``id`` column, else the row
    number), or .txt / .jsonl files (JSONL: strings or objects with ``column`` and an optional ``id``)."""
    if pattern.is_dir():  # a folder of images or of audio files (``modality``), one row per file
        files, _ = image_files(pattern, AUDIO_SUFFIXES if modality == "audio" else IMAGE_SUFFIXES)
        if not files:
            raise ParameterInvalid(f"--input {pattern} holds no {'audio' if modality == 'audio' else 'image'} files",
                                   param="input")
        return Corpus([str(p.relative_to(pattern)) for p in files], [str(p.resolve()) for p in files], modality,
                      [str(pattern)])
    paths = _files(pattern)
    corpus = Corpus([], [], modality, [str(p) for p in paths])
    for path in paths:
        prefix = f"{path.name}:" if len(paths) > 1 else ""
        if path.suffix.lower() == ".parquet":
            _read_parquet(path, column, prefix, corpus)
        else:
            _read_lines(path, column, prefix, corpus)
    if not corpus.ids:
        raise ParameterInvalid(f"--input {pattern} holds no inputs", param="input")
    if len(set(corpus.ids)) != len(corpus.ids):
        raise ParameterInvalid("the input ids are not unique; give each row its own id (the output is matched "
                               "by id)", param="input")
    return corpus


def _read_parquet(path: Path, column: str, prefix: str, corpus: Corpus) -> None:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    if column not in names:
        raise ParameterInvalid(f"{path.name} has no column {column!r} (it has {', '.join(names)}); pick one with "
                               "--column", param="column")
    table = pq.read_table(path, columns=[column, *(["id"] if "id" in names and column != "id" else [])])
    ids = [str(x) for x in table.column("id").to_pylist()] if "id" in table.column_names else \
        [str(i) for i in range(table.num_rows)]
    corpus.ids += [prefix + i for i in ids]
    corpus.values += table.column(column).to_pylist()


def _read_lines(path: Path, column: str, prefix: str, corpus: Corpus) -> None:
    records = read_records(path, column)
    corpus.blank += records.blank
    for record in records:
        if isinstance(record.value, OmniEmbedError):  # a JSONL line that does not parse: an error row
            corpus.failed[len(corpus.ids)] = record.value.at_index(None)
        corpus.ids.append(prefix + record.id)
        corpus.values.append(None if isinstance(record.value, OmniEmbedError) else record.value)


# -- shards and the manifest ------------------------------------------------------------------------
def _shard_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def write_shard(path: Path, ids: list[str], vectors: list[Any], errors: list[OmniEmbedError | None], dim: int,
                info: dict[str, Any]) -> None:
    """One shard: ``id``, ``embedding`` (null where the row failed), ``error``; written atomically."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = np.zeros((len(ids), dim), np.float32)
    for i, v in enumerate(vectors):
        if v is not None:
            flat[i] = v
    mask = pa.array([v is None for v in vectors])
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), dim, mask=mask),
        "error": error_column(errors),
    }).replace_schema_metadata({b"omniembed": json.dumps(info).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class Manifest:
    """``manifest.json``: what the run is (model, inputs, options) and which shards are finished."""

    def __init__(self, out: Path, identity: dict[str, Any]) -> None:
        self.path = out / MANIFEST
        self.identity = identity
        self.shards: dict[str, dict[str, int]] = {}
        if self.path.is_file():
            old = json.loads(self.path.read_text())
            theirs = {k: old.get(k) for k in identity}
            if theirs != identity:
                changed = sorted(k for k in identity if theirs[k] != identity[k])
                raise ParameterInvalid(f"{out} holds another run (different {', '.join(changed)}); give a new --out "
                                       "or delete that folder", param="out")
            self.shards = {k: v for k, v in old.get("shards", {}).items() if (out / k).is_file()}

    def done(self, name: str) -> bool:
        return name in self.shards

    def add(self, name: str, rows: int, errors: int) -> None:
        self.shards[name] = {"rows": rows, "errors": errors}
        self.save()

    def save(self, complete: bool = False) -> None:
        rows = sum(s["rows"] for s in self.shards.values())
        bad = sum(s["errors"] for s in self.shards.values())
        counts = {"rows": rows, "embedded": rows - bad, "errors": bad}
        body = {**self.identity, "complete": complete, "counts": counts, "shards": dict(sorted(self.shards.items()))}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(body, indent=1))


# -- the run ----------------------------------------------------------------------------------------
def _pending(corpus: Corpus, manifest: Manifest, shard_rows: int) -> list[int]:
    count = -(-len(corpus.ids) // shard_rows)
    return [k for k in range(count) if not manifest.done(_shard_name(k))]


def embed_sharded(engine: Engine, model: str, input_path: Path, out: Path, options: dict[str, Any], err: Console,
                  *, column: str = "text", engine_kind: str = "local", address: str | None = None,
                  concurrency: int | None = None, shard_rows: int = 10_000,
                  folder_modality: str = "image") -> dict[str, Any]:
    """Embed ``input_path`` into shards under ``out`` (see the module docstring); returns the manifest.
    ``folder_modality``: what a folder as ``input_path`` holds (``image`` or ``audio``, by the model)."""
    if engine_kind not in ("local", "ray"):
        raise ParameterInvalid(f"--engine must be local or ray, not {engine_kind!r}", param="engine")
    if out.suffix.lower() == ".parquet" or (out.exists() and not out.is_dir()):
        raise ParameterInvalid(f"--out {out} must be a folder for sharded output", param="out")
    settings = engine.settings.model_dump(mode="json")
    modality = folder_modality if input_path.is_dir() else _modality(model, column, None, settings, ())
    corpus = read_corpus(input_path, column, modality)
    text = corpus.modality == "text"
    options = {k: v for k, v in options.items() if v is not None and (text or k != "truncate")}
    spec = engine.spec(model)
    identity = {"format": VERSION, "model": spec.name, "modality": corpus.modality, "column": column,
                "inputs": corpus.sources, "rows": len(corpus.ids), "shard_rows": shard_rows,
                "ids_sha256": hashlib.sha256("\n".join(corpus.ids).encode()).hexdigest(),
                "options": {k: v for k, v in sorted(options.items()) if k != "batch_size"}}
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out, identity)
    pending = _pending(corpus, manifest, shard_rows)
    info = {"model": spec.name, "dim": spec.dim, "modality": corpus.modality}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    todo = sum(min(shard_rows, len(corpus.ids) - k * shard_rows) for k in pending)
    skipped = len(corpus.ids) - todo
    if skipped:
        err.print(f"resuming: {len(manifest.shards)} finished shards ({skipped} rows) skipped", highlight=False)
    bar_columns = (TextColumn(f"embedding ({engine_kind})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*bar_columns, console=err, transient=False) as bar:
        task = bar.add_task("embed", total=todo)
        shards = _run_ray if engine_kind == "ray" else _run_local
        for k, vectors, errors, dim in shards(engine, model, corpus, pending, shard_rows, options,
                                              lambda n: bar.advance(task, n), address=address,
                                              concurrency=concurrency):
            lo = k * shard_rows
            write_shard(out / _shard_name(k), corpus.ids[lo:lo + len(vectors)], vectors, errors, dim,
                        {**info, "dim": dim, "shard": k, "first_row": lo})
            manifest.add(_shard_name(k), len(vectors), sum(e is not None for e in errors))
    manifest.save(complete=True)
    body = json.loads(manifest.path.read_text())
    counts = body["counts"]
    blank = f"; {corpus.blank} blank line{'s' if corpus.blank != 1 else ''} skipped" if corpus.blank else ""
    err.print(f"wrote {len(manifest.shards)} shards to {out}: {counts['embedded']} embeddings, {counts['errors']} "
              f"error rows{blank}", highlight=False)
    return dict(body)


ShardResult = tuple[int, list[Any], list[OmniEmbedError | None], int]


def _run_local(engine: Engine, model: str, corpus: Corpus, pending: list[int], shard_rows: int,
               options: dict[str, Any], advance: Callable[[int], None], **_: Any) -> Iterator[ShardResult]:
    dim = engine.spec(model).dim
    for k in pending:
        rows = range(k * shard_rows, min((k + 1) * shard_rows, len(corpus.ids)))
        errors: list[OmniEmbedError | None] = [corpus.failed.get(i) for i in rows]
        vectors: list[Any] = [None] * len(rows)
        todo = [j for j, e in enumerate(errors) if e is None]
        if todo:
            items = [corpus.values[rows[j]] for j in todo]
            results = engine.run(model, Modality(corpus.modality), items, Options.of(**options), errors="return",
                                 progress=advance)
            for j, r in zip(todo, results, strict=True):
                if isinstance(r, OmniEmbedError):
                    errors[j] = r
                else:
                    vectors[j] = r.vector
                    dim = r.vector.shape[-1]
        advance(len(rows) - len(todo))
        yield k, vectors, errors, dim


def _run_ray(engine: Engine, model: str, corpus: Corpus, pending: list[int], shard_rows: int,
             options: dict[str, Any], advance: Callable[[int], None], *, address: str | None,
             concurrency: int | None) -> Iterator[ShardResult]:
    import pyarrow as pa

    ray = connect(address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI's own bar shows progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not Ray Data's per-dataset INFO lines
    dim = engine.spec(model).dim
    buffers: dict[int, dict[int, tuple[Any, OmniEmbedError | None]]] = {k: {} for k in pending}
    sizes = {k: min(shard_rows, len(corpus.ids) - k * shard_rows) for k in pending}
    rows: list[int] = []
    for k in pending:
        for i in range(k * shard_rows, k * shard_rows + sizes[k]):
            if i in corpus.failed:
                buffers[k][i] = (None, corpus.failed[i])
            else:
                rows.append(i)
    advance(sum(len(b) for b in buffers.values()))
    for k in pending:  # shards whose rows all failed to read
        if len(buffers[k]) == sizes[k]:
            yield _finish(k, buffers.pop(k), dim)
    if not rows:
        return
    actors = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    values = pa.array([corpus.values[i] for i in rows])
    table = pa.table({"_row": pa.array(rows, pa.int64()), corpus.modality: values})
    block = max(16, min(256, -(-len(rows) // (actors * 4))))
    ds = ray.data.from_arrow([table.slice(s, block) for s in range(0, table.num_rows, block)])
    batch = int(options.pop("batch_size", None) or engine.settings.batch_size)
    settings = engine.settings.model_copy(update={"batch_size": batch})  # the encoder's calls, on the workers
    rows_per_call = max(batch, 64 if corpus.modality == "text" else 16)  # texts: more rows to sort by length
    result = embed_dataset(ds, model, column=corpus.modality, modality=corpus.modality, settings=settings,
                           batch_size=rows_per_call, concurrency=actors, **options)
    for batch_out in result.iter_batches(batch_format="pyarrow", batch_size=None):
        out = cast("pa.Table", batch_out)
        vectors = out.column("embedding").to_numpy(zero_copy_only=False)  # one array per row, None where bad
        for i, vec, error in zip(out.column("_row").to_pylist(), vectors, existing_errors(out), strict=True):
            k = i // shard_rows
            buffers[k][i] = (vec, error)
            if len(buffers[k]) == sizes[k]:
                yield _finish(k, buffers.pop(k), dim)
        advance(out.num_rows)
    if buffers:  # pragma: no cover - Ray returns every row or raises
        raise OmniEmbedError(f"the cluster returned no result for {sum(sizes[k] - len(b) for k, b in buffers.items())} "
                             "rows; run the command again to resume")


def _finish(k: int, rows: dict[int, tuple[Any, OmniEmbedError | None]], dim: int) -> ShardResult:
    order = sorted(rows)
    vectors = [rows[i][0] for i in order]
    if any(v is not None for v in vectors):
        dim = len(next(v for v in vectors if v is not None))
    return k, vectors, [rows[i][1] for i in order], dim

