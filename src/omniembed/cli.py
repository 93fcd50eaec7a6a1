"""The command line: ``omniembed models | embed`` (thin: all work is done by the engine).

Results go to stdout (JSON) or to the ``--out`` file; progress, tables and errors go to stderr, so the
output can be piped. Settings come from ``OMNIEMBED_*`` variables, read when a command starts.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from omniembed.api import Engine
from omniembed.cli_common import (
    check_out,
    embedding_column,
    err,
    listen_socket,
    report_skipped,
    show_progress,
    write_parquet,
)
from omniembed.cli_common import fail as _fail
from omniembed.cli_common import new_engine as _engine
from omniembed.embedding import Embedding
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.registry import ModelSpec
from omniembed.settings import Settings

app = typer.Typer(
    help="omniembed: text (and more) to embedding vectors, offline, from one engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="List registered models, show one, or prepare their caches.", invoke_without_command=True)
app.add_typer(models_app, name="models")


def _mount_geo() -> None:
    """The Earth-observation commands (``omniembed geo ...``); their heavy imports happen when they run."""
    from omniembed.geo.cli import app as geo_app

    app.add_typer(geo_app, name="geo", help="Earth-observation embeddings: embed, export, preview (docs/geo.md).")


_mount_geo()

out = Console(soft_wrap=True)


# -- models ---------------------------------------------------------------------------------------
@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model with its modalities, dimension, aliases and weights source."""
    if ctx.invoked_subcommand is not None:
        return
    specs = list(_engine().registry)
    if as_json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    table = Table(title="omniembed models", show_lines=False)
    for column in ("name", "modalities", "dim", "max input", "aliases", "weights"):
        table.add_column(column, overflow="fold")
    for s in specs:
        modalities = ", ".join(map(str, s.modalities))
        table.add_row(s.name, modalities, str(s.dim), _limits(s), "\n".join(s.aliases), s.weights.describe())
    out.print(table)


def _limits(spec: ModelSpec) -> str:
    parts = []
    if spec.max_tokens:
        parts.append(f"{spec.max_tokens} tokens")
    if spec.max_pixels:
        parts.append(f"{spec.max_pixels} px")
    if spec.max_seconds:
        parts.append(f"{spec.max_seconds:g} s")
    return ", ".join(parts) or "-"


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name or alias (case-insensitive).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything omniembed knows about one model."""
    try:
        spec = _engine().registry.resolve(name)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    data = spec.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title=spec.name)
    for key, value in data.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    out.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str], typer.Argument(help="Model names or aliases (case-insensitive).")],
    runtime: Annotated[str | None, typer.Option(help="auto | torch | onnx (default: the settings').")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | int8 (default: the settings').")] = None,
) -> None:
    """Load models once so that their caches are filled (ONNX export, bf16 compile, int8 graph).

    Run it where the cache will be used (same machine type, OMNIEMBED_CACHE_DIR), e.g. in an image build,
    so that `omniembed serve` starts in seconds instead of spending the one-off export and compile time.
    """
    import time

    show_progress()
    engine = _engine()
    for name in names:
        started = time.perf_counter()
        try:
            loaded = engine.load(name, runtime=runtime, precision=precision)
        except OmniEmbedError as exc:
            raise _fail(exc) from None
        kinds = ", ".join(sorted({type(e).__name__ for e in loaded.encoders.values()}))
        err.print(f"{loaded.spec.name}: ready in {time.perf_counter() - started:.1f} s (runtime {loaded.runtime}, "
                  f"precision {loaded.precision}; {kinds}); cache {engine.settings.cache_dir}", highlight=False)


# -- embed ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One input of a text file: its line number, its id (the line number unless a JSONL object gives one)
    and its text, or the error that makes the line unusable."""

    line: int
    id: str
    value: Any

    def where(self) -> str:
        """The record's position in the CLI's terms: ``line 12``, plus the id where it is not the line."""
        return f"line {self.line}" if self.id == str(self.line) else f"line {self.line} (id={self.id})"


def _read_inputs(path: Path) -> list[Record]:
    """The records of a .txt (one text a line) or .jsonl (strings or {"text", "id"}) file.

    Blank lines are skipped; a JSONL line that does not parse is kept as an error in its place.
    """
    if not path.is_file():
        raise ParameterInvalid(f"input file {path} does not exist", param="input")
    jsonl = path.suffix.lower() in {".jsonl", ".ndjson"}
    records: list[Record] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not jsonl:
                records.append(Record(number, str(number), line))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = ParameterInvalid(f"not JSON ({exc.msg})", param="input", index=len(records))
                records.append(Record(number, str(number), problem))
                continue
            if isinstance(obj, dict):
                records.append(Record(number, str(obj.get("id", number)), obj.get("text")))
            else:
                records.append(Record(number, str(number), obj))
    return records


def _write_texts(path: Path, rows: list[tuple[str, str, Embedding]]) -> None:
    """One row per text: ``id``, ``text``, ``n_tokens``, ``truncated``, ``embedding``."""
    import pyarrow as pa

    columns = {
        "id": pa.array([r[0] for r in rows], pa.string()),
        "text": pa.array([r[1] for r in rows], pa.string()),
        "n_tokens": pa.array([r[2].meta.input.length for r in rows], pa.int32()),
        "truncated": pa.array([r[2].meta.input.truncated for r in rows], pa.bool_()),
        "embedding": embedding_column([r[2] for r in rows]),
    }
    write_parquet(path, columns, rows[0][2])


def _write_audio(path: Path, source: str, result: Embedding) -> None:
    """One row per segment: ``path``, ``start_sec``, ``end_sec``, ``embedding``; the pooled vector of the
    clip is in the schema metadata (``omniembed`` → ``pooled``)."""
    import pyarrow as pa

    segments = result.meta.segments
    columns = {
        "path": pa.array([source] * len(segments), pa.string()),
        "start_sec": pa.array([s.start_sec for s in segments], pa.float64()),
        "end_sec": pa.array([s.end_sec for s in segments], pa.float64()),
        "embedding": embedding_column([result]),
    }
    write_parquet(path, columns, result, pooled=[float(x) for x in result.vector])


def _embed_file(engine: Engine, model: str, input_path: Path, out_path: Path, options: dict[str, Any]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    check_out(out_path)
    records = _read_inputs(input_path)
    if not records:
        raise ParameterInvalid(f"input file {input_path} holds no texts", param="input")
    texts = [None if isinstance(r.value, OmniEmbedError) else r.value for r in records]
    engine.load(model, runtime=options.get("runtime"), device=options.get("device"))
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("embed", total=len(texts))
        results = engine.embed_batch(
            model, texts, errors="return", progress=lambda n: bar.advance(task, n), **options
        )
    good: list[tuple[str, str, Embedding]] = []
    failed: list[tuple[str, OmniEmbedError]] = []
    for i, (record, result) in enumerate(zip(records, results, strict=True)):
        if isinstance(record.value, OmniEmbedError):
            result = record.value
        if isinstance(result, OmniEmbedError):
            # the error's index is its position among the records: shown as the file's line
            failed.append((records[result.index if result.index is not None else i].where(), result))
        else:
            good.append((record.id, record.value, result))
    report_skipped(failed, len(records), bool(good), "inputs")
    _write_texts(out_path, good)
    err.print(f"wrote {len(good)} embeddings to {out_path}; {len(failed)} skipped", highlight=False)


@app.command()
def embed(
    model: Annotated[str, typer.Argument(help="Model name or alias, a local model folder, or a hub id.")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="One text to embed; JSON to stdout.")] = None,
    image: Annotated[str | None, typer.Option("--image", help="One image (path or URL); JSON to stdout.")] = None,
    audio: Annotated[
        str | None, typer.Option("--audio", help="One audio file (path or URL): segments + pooled, JSON to stdout.")
    ] = None,
    start_offset_sec: Annotated[float, typer.Option(help="Audio: start here, in seconds.")] = 0.0,
    segment_sec: Annotated[float | None, typer.Option(help="Audio: segment length (default: the model's).")] = None,
    overlap_sec: Annotated[float, typer.Option(help="Audio: overlap between segments, in seconds.")] = 0.0,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A .txt (one text a line) or .jsonl file, or a folder of images."),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write a .parquet file (folders are created) instead of JSON to stdout."),
    ] = None,
    truncate: Annotated[str, typer.Option(help="Too-long text: end | start | none (none: error).")] = "end",
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalise (default: as the model).")
    ] = None,
    pooling: Annotated[str | None, typer.Option(help="mean | cls | max | mean_patch (default: as the model).")] = None,
    runtime: Annotated[str | None, typer.Option(help="auto | torch | onnx")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Items per encoder call.")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="A short human-readable summary, not the vector.")] = False,
) -> None:
    """Embed one text (--text), image (--image) or audio file (--audio), or a text file or image folder
    (--input ... --out out.parquet). With --out, one input is written to Parquet in the same format."""
    options: dict[str, Any] = {
        "truncate": truncate, "normalize": normalize, "pooling": pooling, "runtime": runtime, "device": device
    }
    show_progress()
    engine = _engine()
    try:
        if sum(x is not None for x in (text, image, audio, input_path)) != 1:
            raise ParameterInvalid("give exactly one of --text, --image, --audio or --input", param="text")
        if out_path is not None:
            check_out(out_path)
        if input_path is not None:
            if out_path is None:
                raise ParameterInvalid("--input needs --out FILE.parquet", param="out")
            if input_path.is_dir():
                from omniembed.cli_images import embed_folder

                embed_folder(engine, model, input_path, out_path, {**options, "batch_size": batch_size}, err)
                return
            _embed_file(engine, model, input_path, out_path, {**options, "batch_size": batch_size})
            return
        if audio is not None:
            options.pop("truncate")
            segments = {"start_offset_sec": start_offset_sec, "segment_sec": segment_sec, "overlap_sec": overlap_sec}
            result = engine.embed(model, audio=audio, **options, **segments)
        elif image is not None:
            options.pop("truncate")
            result = engine.embed(model, image=image, **options)
        else:
            result = engine.embed(model, text=text, **options)
        if out_path is not None:
            _write_one(out_path, result, text=text, image=image, audio=audio)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    if summary:
        _print_summary(result)
    elif out_path is None:
        json.dump({"model": result.meta.model, "dim": result.meta.dim, **result.to_dict()}, sys.stdout)
        sys.stdout.write("\n")


def _write_one(out_path: Path, result: Embedding, *, text: str | None, image: str | None, audio: str | None) -> None:
    """``--out`` for one input: the format ``--input`` writes for its kind (audio: one row per segment)."""
    if audio is not None:
        _write_audio(out_path, audio, result)
        rows = len(result.meta.segments)
    elif image is not None:
        from omniembed.cli_images import write_images

        write_images(out_path, [(image, result)])
        rows = 1
    else:
        _write_texts(out_path, [("1", text or "", result)])
        rows = 1
    err.print(f"wrote {rows} embedding{'s' if rows != 1 else ''} to {out_path}", highlight=False)


def _print_summary(result: Embedding) -> None:
    import numpy as np

    m = result.meta
    vector = result.vector
    out.print(
        f"model={m.model} modality={m.modality} dim={m.dim} norm={float(np.linalg.norm(vector)):.4f} "
        f"length={m.input.length} truncated={m.input.truncated} padded={m.input.padded} "
        f"runtime={m.runtime}/{m.device} encode={m.timings.encode_ms:.1f} ms",
        highlight=False,
    )
    for segment, row in zip(m.segments, result.data if m.segments else [], strict=False):
        out.print(f"  {segment.start_sec:8.2f}-{segment.end_sec:8.2f} s  {np.array2string(row[:4], precision=4)}",
                  highlight=False)
    label = "pooled" if m.segments else "first values"
    out.print(f"{label}: {np.array2string(vector[:6], precision=4)}", highlight=False)


# -- serve ----------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1, OMNIEMBED_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000, OMNIEMBED_PORT).")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models to load at start (OMNIEMBED_SERVE_MODELS).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Run the HTTP server: OpenAI /v1/embeddings, TwelveLabs /v1.3/embed, feature-extraction-server /api/tasks."""
    import logging

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if models is not None:
        overrides["serve_models"] = [m.strip() for m in models.split(",") if m.strip()]
    settings = Settings().model_copy(update=overrides)
    try:
        sock = listen_socket(settings.host, settings.port)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    import uvicorn

    from omniembed.service import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = f"http://{settings.host}:{settings.port}"
    err.print(
        f"omniembed serving on {base}  (OpenAI {base}/v1/embeddings · TwelveLabs {base}/v1.3/embed · "
        f"feature-extraction-server {base}/api/tasks/... · docs {base}/docs)",
        highlight=False,
    )
    with sock:  # served as bound above: nothing can take the port in between
        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            timeout_graceful_shutdown=int(settings.shutdown_grace_sec) or None,
        )
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it after its graceful stop
            server.run(sockets=[sock])
    if not server.started:  # e.g. a model in --models failed to load (the log says why)
        raise typer.Exit(3)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
