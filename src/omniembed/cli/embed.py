"""``omniembed embed``: one input to stdout or a file; a text file, JSONL or an image folder to Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from omniembed.api import Engine
from omniembed.cli.common import (
    check_out,
    embedding_column,
    err,
    report_skipped,
    show_progress,
    write_parquet,
)
from omniembed.cli.common import fail as _fail
from omniembed.cli.common import new_engine as _engine
from omniembed.cli.images import embed_folder, image_files, write_images
from omniembed.cli.records import read_records
from omniembed.cli.scale import embed_sharded
from omniembed.cli.videos import embed_video_folder, video_files, write_videos
from omniembed.contract import Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid

out = Console(soft_wrap=True)


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
    records = read_records(input_path)
    if not records:
        raise ParameterInvalid(f"input file {input_path} holds no texts", param="input")
    texts = [None if isinstance(r.value, OmniEmbedError) else r.value for r in records]
    engine.load(model, runtime=options.get("runtime"), device=options.get("device"))
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("embed", total=len(texts))
        results = engine.run(model, Modality.TEXT, texts, Options.of(**options), errors="return",
                             progress=lambda n: bar.advance(task, n))
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


def embed(
    model: Annotated[str, typer.Argument(help="Model name or alias, a local model folder, or a hub id.")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="One text to embed; JSON to stdout.")] = None,
    image: Annotated[str | None, typer.Option("--image", help="One image (path or URL); JSON to stdout.")] = None,
    audio: Annotated[
        str | None, typer.Option("--audio", help="One audio file (path or URL): segments + pooled, JSON to stdout.")
    ] = None,
    video: Annotated[
        str | None, typer.Option("--video", help="One video (path or URL): clips + pooled, JSON to stdout.")
    ] = None,
    start_offset_sec: Annotated[float, typer.Option(help="Audio/video: start here, in seconds.")] = 0.0,
    end_offset_sec: Annotated[float | None, typer.Option(help="Video: stop here, in seconds (default: end).")] = None,
    segment_sec: Annotated[
        float | None, typer.Option(help="Audio: segment length (default: the model's); video: clip length (6).")
    ] = None,
    overlap_sec: Annotated[float, typer.Option(help="Audio: overlap between segments, in seconds.")] = 0.0,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A .txt (one text a line) or .jsonl file, or a folder of images or videos."),
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
    column: Annotated[str, typer.Option(help="--input .parquet/.jsonl: the column holding the inputs.")] = "text",
    engine_kind: Annotated[
        str, typer.Option("--engine", help="local | ray: --out DIR/ gets Parquet shards + manifest (resumable).")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: auto | ray://host:10001 (default: local).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="--engine ray: encoder actors (default CPUs).")] = None,
    shard_rows: Annotated[int, typer.Option(min=1, help="--out DIR/: rows per Parquet shard.")] = 10_000,
) -> None:
    """Embed one text (--text), image (--image) or audio file (--audio), or a text file or image folder
    (--input ... --out out.parquet). With --out, one input is written to Parquet in the same format."""
    options: dict[str, Any] = {
        "truncate": truncate, "normalize": normalize, "pooling": pooling, "runtime": runtime, "device": device
    }
    show_progress()
    engine = _engine()
    try:
        if sum(x is not None for x in (text, image, audio, video, input_path)) != 1:
            raise ParameterInvalid("give exactly one of --text, --image, --audio or --input (or --video)", param="text")
        sharded = out_path is not None and (engine_kind != "local" or not out_path.suffix or out_path.is_dir())
        if input_path is not None and out_path is not None and (sharded or input_path.suffix == ".parquet"):
            # a corpus to shards under a manifest (--out DIR/), in-process or on a Ray cluster (cli/scale.py)
            embed_sharded(engine, model, input_path, out_path, {**options, "batch_size": batch_size}, err,
                          column=column, engine_kind=engine_kind, address=address, concurrency=concurrency,
                          shard_rows=shard_rows)
            return
        if out_path is not None:
            check_out(out_path)
        if input_path is not None:
            if out_path is None:
                raise ParameterInvalid("--input needs --out FILE.parquet", param="out")
            if input_path.is_dir() and _holds_videos(input_path):
                clips = {"start_offset_sec": start_offset_sec, "end_offset_sec": end_offset_sec,
                         "segment_sec": segment_sec}
                embed_video_folder(engine, model, input_path, out_path, {**options, **clips, "batch_size": batch_size},
                                   err)
                return
            if input_path.is_dir():
                embed_folder(engine, model, input_path, out_path, {**options, "batch_size": batch_size}, err)
                return
            _embed_file(engine, model, input_path, out_path, {**options, "batch_size": batch_size})
            return
        if audio is not None:
            options.pop("truncate")
            segments = {"start_offset_sec": start_offset_sec, "segment_sec": segment_sec, "overlap_sec": overlap_sec}
            result = engine.embed(model, audio=audio, **options, **segments)
        elif video is not None:
            options.pop("truncate")
            clips = {"start_offset_sec": start_offset_sec, "end_offset_sec": end_offset_sec, "segment_sec": segment_sec}
            result = engine.embed(model, video=video, **options, **clips)
        elif image is not None:
            options.pop("truncate")
            result = engine.embed(model, image=image, **options)
        else:
            result = engine.embed(model, text=text, **options)
        if out_path is not None:
            _write_one(out_path, result, text=text, image=image, audio=audio, video=video)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    if summary:
        _print_summary(result)
    elif out_path is None:
        json.dump({"model": result.meta.model, "dim": result.meta.dim, **result.to_dict()}, sys.stdout)
        sys.stdout.write("\n")


def _holds_videos(folder: Path) -> bool:
    """A folder of videos (and no images) is embedded as videos; any other folder as images."""
    return bool(video_files(folder)) and not image_files(folder)[0]


def _write_one(
    out_path: Path, result: Embedding, *, text: str | None, image: str | None, audio: str | None,
    video: str | None = None,
) -> None:
    """``--out`` for one input: the format ``--input`` writes for its kind (audio: one row per segment)."""
    if video is not None:
        write_videos(out_path, [(video, result)])
        rows = len(result.meta.segments) + 1
    elif audio is not None:
        _write_audio(out_path, audio, result)
        rows = len(result.meta.segments)
    elif image is not None:
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
