"""``omniembed embed MODEL --input DIR --out out.parquet`` for a folder of videos, and ``--video X --out``.

Videos are embedded a few at a time (each is decoded lazily, so memory stays bounded) with a progress bar
on stderr; files that cannot be read are reported by name and skipped, never fatal. The Parquet file has
one row per clip (``scope`` = ``clip``) and one per video (``scope`` = ``video``, its pooled vector):
columns ``path``, ``scope``, ``start_sec``, ``end_sec``, ``embedding``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from omniembed.api import Engine
from omniembed.cli.common import check_out, report_skipped, write_parquet
from omniembed.cli.images import embed_files, image_files
from omniembed.embedding import Embedding, Modality
from omniembed.errors import ParameterInvalid
from omniembed.inputs.video import VIDEO_SUFFIXES

__all__ = ["embed_video_folder", "video_files", "write_videos"]

CHUNK = 8


def video_files(folder: Path) -> list[Path]:
    """Video files under ``folder`` (by suffix, sorted, hidden entries skipped)."""
    return image_files(folder, VIDEO_SUFFIXES)[0]


def write_videos(path: Path, rows: list[tuple[str, Embedding]], scopes: tuple[str, str] = ("clip", "video")) -> None:
    """One row per clip, then one ``video`` row with the pooled vector, per video (``scopes``: the names of
    the two kinds of row; a folder of audio files has ``segment`` and ``audio`` rows)."""
    import pyarrow as pa

    names: list[str] = []
    kinds: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    vectors: list[np.ndarray] = []
    for name, result in rows:
        segments = result.meta.segments
        for segment, row in zip(segments, result.data, strict=True):
            names.append(name)
            kinds.append(scopes[0])
            starts.append(segment.start_sec)
            ends.append(segment.end_sec)
            vectors.append(row)
        names.append(name)
        kinds.append(scopes[1])
        starts.append(segments[0].start_sec)
        ends.append(segments[-1].end_sec)
        vectors.append(result.vector)
    flat = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in vectors])
    columns = {
        "path": pa.array(names, pa.string()),
        "scope": pa.array(kinds, pa.string()),
        "start_sec": pa.array(starts, pa.float64()),
        "end_sec": pa.array(ends, pa.float64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), len(vectors[0])),
    }
    write_parquet(path, columns, rows[0][1])


def embed_video_folder(
    engine: Engine, model: str, folder: Path, out_path: Path, options: dict[str, Any], err: Console
) -> None:
    """Embed every video under ``folder`` into ``out_path`` (.parquet); report and skip unreadable files."""
    check_out(out_path)
    files = video_files(folder)
    if not files:
        raise ParameterInvalid(f"{folder} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})",
                               param="input")
    options = {k: v for k, v in options.items() if k not in ("truncate", "overlap_sec")}
    good, failed = embed_files(engine, model, folder, files, Modality.VIDEO, options, err, CHUNK, noun="videos")
    report_skipped(failed, len(files), bool(good), "video files")
    write_videos(out_path, good)
    clips = sum(len(r.meta.segments) for _, r in good)
    err.print(
        f"wrote {clips} clip and {len(good)} video embeddings to {out_path}; {len(failed)} unreadable files skipped",
        highlight=False,
    )
