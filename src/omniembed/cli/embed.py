"""``omniembed embed``: one input to stdout or a file; a text file, JSONL or an image folder to Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from omniembed.api import Engine
from omniembed.cli.audio import AUDIO_SUFFIXES, audio_files, embed_audio_folder
from omniembed.cli.common import (
    check_out,
    check_source,
    embedding_column,
    err,
    report_skipped,
    resolve_model,
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
from omniembed.inputs.image import IMAGE_SUFFIXES
from omniembed.inputs.video import VIDEO_SUFFIXES
from omniembed.registry import ModelSpec

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
    _check_text_file(input_path)
    records = read_records(input_path)
    if not records:
        blank = f" (only {records.blank} blank lines)" if records.blank else ""
        raise ParameterInvalid(f"--input {input_path} holds no texts{blank}", param="input")
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
    skipped = len(failed) + records.blank
    blank = f" ({records.blank} blank line{'s' if records.blank != 1 else ''})" if records.blank else ""
    err.print(f"wrote {len(good)} embeddings to {out_path}; {skipped} skipped{blank}", highlight=False)


def _check_text_file(path: Path) -> None:
    """``--input`` names a text file (.txt, .jsonl): an image, audio or video file is a mistake the flag for
    one such input fixes, not lines of text."""
    suffix = path.suffix.lower()
    for flag, suffixes in (("--image", IMAGE_SUFFIXES), ("--audio", AUDIO_SUFFIXES), ("--video", VIDEO_SUFFIXES)):
        if suffix in suffixes:
            raise ParameterInvalid(f"--input {path} is not a text file: embed one {flag[2:]} file with {flag} "
                                   f"{path}, or a folder of them with --input FOLDER", param="input")


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
    embedding_option: Annotated[
        str | None,
        typer.Option("--embedding-option", metavar="visual|audio",
                     help="--video or a folder of videos: visual (the frames, under an image model) or audio (the "
                          "sound track, under an audio model). Default: visual, or audio for a model that embeds "
                          "sound and no images."),
    ] = None,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="A .txt (one text a line) or .jsonl file, or a folder of images, audio "
                     "files or videos (taken by what the model embeds)."),
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
    """Embed one --text, --image, --audio or --video, or many with --input FILE-or-FOLDER --out out.parquet.

    --input takes a .txt (one text a line) or .jsonl file, or a folder of images, audio files or videos (by
    what the model embeds). With --out, one input is written to Parquet in the same format. Errors exit 2 for
    a bad parameter (a file that does not exist, an unknown option value), else 1.
    """
    options: dict[str, Any] = {
        "truncate": truncate, "normalize": normalize, "pooling": pooling, "runtime": runtime, "device": device
    }
    show_progress()
    engine = _engine()
    try:
        if sum(x is not None for x in (text, image, audio, video, input_path)) != 1:
            raise ParameterInvalid("give exactly one of --text, --image, --audio, --video or --input", param="text")
        option = _embedding_option(embedding_option, video is not None or bool(input_path and input_path.is_dir()))
        spec = resolve_model(engine, model, _modality(text, image, audio, video, input_path, option))
        sharded = out_path is not None and (engine_kind != "local" or not out_path.suffix or out_path.is_dir())
        if input_path is not None and out_path is not None and (sharded or input_path.suffix == ".parquet"):
            # a corpus to shards under a manifest (--out DIR/), in-process or on a Ray cluster (cli/scale.py)
            kind = _folder_kind(spec, input_path, option) if input_path.is_dir() else Modality.TEXT
            if kind is Modality.VIDEO:
                raise ParameterInvalid("a folder of videos is written to one file (--out FILE.parquet), not to "
                                       "shards (--out DIR/, --engine ray)", param="out")
            embed_sharded(engine, model, input_path, out_path, {**options, "batch_size": batch_size}, err,
                          column=column, engine_kind=engine_kind, address=address, concurrency=concurrency,
                          shard_rows=shard_rows, folder_modality=str(kind))
            return
        if out_path is not None:
            check_out(out_path)
        segments = {"start_offset_sec": start_offset_sec, "segment_sec": segment_sec, "overlap_sec": overlap_sec}
        clips = {"start_offset_sec": start_offset_sec, "end_offset_sec": end_offset_sec, "segment_sec": segment_sec}
        if input_path is not None:
            if out_path is None:
                raise ParameterInvalid("--input needs --out FILE.parquet", param="out")
            if input_path.is_dir():
                kind = _folder_kind(spec, input_path, option)
                folder_options = {**options, "batch_size": batch_size}
                if kind is Modality.VIDEO:
                    chosen = _check_video_model(spec, option)
                    embed_video_folder(engine, model, input_path, out_path,
                                       {**folder_options, **clips, "embedding_option": chosen}, err)
                elif kind is Modality.AUDIO:
                    embed_audio_folder(engine, model, input_path, out_path, {**folder_options, **segments}, err)
                else:
                    embed_folder(engine, model, input_path, out_path, folder_options, err)
                return
            _embed_file(engine, model, input_path, out_path, {**options, "batch_size": batch_size})
            return
        if audio is not None:
            options.pop("truncate")
            result = engine.embed(model, audio=check_source("--audio", audio), **options, **segments)
        elif video is not None:
            options.pop("truncate")
            chosen = _check_video_model(spec, option)
            result = engine.embed(model, video=check_source("--video", video), **options, **clips,
                                  embedding_option=chosen)
        elif image is not None:
            options.pop("truncate")
            result = engine.embed(model, image=check_source("--image", image), **options)
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


def _embedding_option(value: str | None, applies: bool) -> str | None:
    """``--embedding-option``, checked: visual or audio, and only with --video or a folder of videos."""
    if value is None:
        return None
    if value.strip().lower() not in ("visual", "audio"):
        raise ParameterInvalid(f"--embedding-option must be visual or audio, not {value!r}", param="embedding_option")
    if not applies:
        raise ParameterInvalid("--embedding-option applies to --video (or --input with a folder of videos)",
                               param="embedding_option")
    return value.strip().lower()


def _modality(text: str | None, image: str | None, audio: str | None, video: str | None, input_path: Path | None,
              option: str | None) -> Modality | None:
    """What kind of model the inputs need (an unknown model name's hint suggests models of that kind)."""
    if text is not None or (input_path is not None and input_path.suffix.lower() in (".txt", ".jsonl", ".ndjson")):
        return Modality.TEXT
    if image is not None:
        return Modality.IMAGE
    if audio is not None or (video is not None and option == "audio"):
        return Modality.AUDIO
    return Modality.IMAGE if video is not None and option == "visual" else None


def _option_for(spec: ModelSpec, option: str | None) -> str:
    """A video's embedding option: as given, else by the model: the frames under a model that embeds images,
    the sound track under one that embeds audio and no images."""
    if option is not None:
        return option
    return "audio" if Modality.AUDIO in spec.modalities and Modality.IMAGE not in spec.modalities else "visual"


def _takes(spec: ModelSpec) -> str:
    return ", ".join(str(m) for m in spec.modalities)


def _check_video_model(spec: ModelSpec, option: str | None) -> str:
    """The embedding option for a video under ``spec`` (``_option_for``); a model that cannot embed the frames
    or the sound as asked is a parameter error that names the flag that fixes it."""
    mods = spec.modalities
    chosen = _option_for(spec, option)
    if Modality.IMAGE not in mods and Modality.AUDIO not in mods:
        raise ParameterInvalid(f"model {spec.name!r} embeds {_takes(spec)}, not video: choose a model that embeds "
                               "images (the frames) or audio (the sound)", param="model")
    if chosen == "visual" and Modality.IMAGE not in mods:
        raise ParameterInvalid(
            f"model {spec.name!r} does not embed images, which --embedding-option visual needs; it embeds "
            f"{_takes(spec)}: use --embedding-option audio (or leave the option out) to embed the video's sound",
            param="embedding_option")
    if chosen == "audio" and Modality.AUDIO not in mods:
        raise ParameterInvalid(
            f"model {spec.name!r} does not embed audio, which --embedding-option audio needs; it embeds "
            f"{_takes(spec)}: use --embedding-option visual (or leave the option out) to embed the video's frames",
            param="embedding_option")
    return chosen


def _folder_kind(spec: ModelSpec, folder: Path, option: str | None) -> Modality:
    """What a folder given as --input is embedded as, by what the model embeds: its images (an image model),
    its audio files (an audio model), else its videos (frames or sound, by the model or --embedding-option)."""
    mods = spec.modalities
    if option is None and Modality.IMAGE in mods and image_files(folder)[0]:
        return Modality.IMAGE
    if option is None and Modality.AUDIO in mods and audio_files(folder):
        return Modality.AUDIO
    if video_files(folder) and (Modality.IMAGE in mods or Modality.AUDIO in mods):
        _check_video_model(spec, option)
        return Modality.VIDEO
    if Modality.IMAGE not in mods and Modality.AUDIO not in mods:
        raise ParameterInvalid(f"model {spec.name!r} embeds {_takes(spec)}: a folder as --input holds images, audio "
                               "files or videos for a model that embeds them; give texts as a .txt or .jsonl file",
                               param="input")
    kind, suffixes = ("image", IMAGE_SUFFIXES) if Modality.IMAGE in mods else ("audio", AUDIO_SUFFIXES)
    raise ParameterInvalid(f"{folder} holds no {kind} files ({', '.join(sorted(suffixes))}) or videos, which "
                           f"{spec.name!r} embeds", param="input")


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
