"""``omniembed embed MODEL --input DIR --out out.parquet``: every image file under a folder, recursively.

Files are embedded in chunks (memory stays bounded for large folders) with a progress bar on stderr;
files that cannot be read are reported and skipped with their count, never fatal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from omniembed.api import Engine
from omniembed.embedding import Embedding
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.inputs.image import IMAGE_SUFFIXES

__all__ = ["embed_folder", "image_files"]

CHUNK = 256


def image_files(folder: Path) -> tuple[list[Path], int]:
    """Image files under ``folder`` (by suffix, sorted, hidden entries skipped) and how many others there are."""
    images: list[Path] = []
    others = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            others += 1
    return images, others


def _write(path: Path, rows: list[tuple[str, Embedding]]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = rows[0][1].data.shape[0]
    meta = rows[0][1].meta
    table = pa.table(
        {
            "path": pa.array([r[0] for r in rows], pa.string()),
            "pixels": pa.array([r[1].meta.input.length for r in rows], pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([r[1].data for r in rows]), pa.float32()), dim
            ),
        }
    )
    info = {"model": meta.model, "model_version": meta.model_version, "dim": dim, "pooling": meta.pooling,
            "normalized": meta.normalized, "preprocessing": meta.preprocessing}
    table = table.replace_schema_metadata({b"omniembed": json.dumps(info).encode()})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def embed_folder(
    engine: Engine, model: str, folder: Path, out_path: Path, options: dict[str, Any], err: Console
) -> None:
    """Embed every image under ``folder`` into ``out_path`` (.parquet); report and skip unreadable files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if out_path.suffix.lower() != ".parquet":
        raise ParameterInvalid(f"--out must end in .parquet, not {out_path.name!r}", param="out")
    files, others = image_files(folder)
    if not files:
        raise ParameterInvalid(
            f"{folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})", param="input"
        )
    options = {k: v for k, v in options.items() if k != "truncate"}
    engine.load(model, runtime=options.get("runtime"), device=options.get("device"))
    good: list[tuple[str, Embedding]] = []
    failed: list[tuple[str, OmniEmbedError]] = []
    columns = (TextColumn("embedding images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("embed", total=len(files))
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            results = engine.embed_batch(
                model, images=chunk, errors="return", progress=lambda n: bar.advance(task, n), **options
            )
            for path, result in zip(chunk, results, strict=True):
                name = str(path.relative_to(folder))
                if isinstance(result, OmniEmbedError):
                    failed.append((name, result))
                else:
                    good.append((name, result))
    from omniembed.cli import report_skipped

    report_skipped(failed, len(files), bool(good), "image files")
    _write(out_path, good)
    ignored = f"; {others} non-image files ignored" if others else ""
    err.print(
        f"wrote {len(good)} embeddings to {out_path}; {len(failed)} unreadable files skipped{ignored}",
        highlight=False,
    )
