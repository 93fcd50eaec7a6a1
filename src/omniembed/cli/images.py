"""``omniembed embed MODEL --input DIR --out out.parquet``: every image file under a folder, recursively.

Files are embedded in chunks (memory stays bounded for large folders) with a progress bar on stderr;
files that cannot be read are reported by name and skipped with their count, never fatal. One image
(``--image X --out out.parquet``) is written in the same format: columns ``path``, ``pixels``, ``embedding``.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from rich.console import Console

from omniembed.api import Engine
from omniembed.cli.common import check_out, embedding_column, report_skipped, write_parquet
from omniembed.contract import Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid
from omniembed.inputs.image import IMAGE_SUFFIXES

__all__ = ["embed_files", "embed_folder", "image_files", "write_images"]

CHUNK = 256


def image_files(folder: Path, suffixes: Collection[str] = IMAGE_SUFFIXES) -> tuple[list[Path], int]:
    """Image files (or files of other ``suffixes``) under ``folder`` (sorted, hidden entries skipped) and how
    many other files there are."""
    images: list[Path] = []
    others = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() in suffixes:
            images.append(path)
        else:
            others += 1
    return images, others


def write_images(path: Path, rows: list[tuple[str, Embedding]]) -> None:
    """One row per image: its path (as given, or relative to the folder), its pixel count, its vector."""
    import pyarrow as pa

    columns = {
        "path": pa.array([r[0] for r in rows], pa.string()),
        "pixels": pa.array([r[1].meta.input.length for r in rows], pa.int64()),
        "embedding": embedding_column([r[1] for r in rows]),
    }
    write_parquet(path, columns, rows[0][1])


def embed_files(
    engine: Engine, model: str, folder: Path, files: list[Path], kind: Modality, options: dict[str, Any],
    err: Console, chunk_size: int = CHUNK, noun: str = "images",
) -> tuple[list[tuple[str, Embedding]], list[tuple[str, OmniEmbedError]]]:
    """Embed ``files`` (``kind``: images, audio files or videos) in chunks with a progress bar (``embedding
    NOUN``): the embedded ones and the failed ones, each by its path relative to ``folder``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    engine.load(model, runtime=options.get("runtime"), device=options.get("device"))
    good: list[tuple[str, Embedding]] = []
    failed: list[tuple[str, OmniEmbedError]] = []
    columns = (TextColumn(f"embedding {noun}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("embed", total=len(files))
        for start in range(0, len(files), chunk_size):
            chunk = files[start : start + chunk_size]
            results = engine.run(model, kind, chunk, Options.of(**options), errors="return",
                                 progress=lambda n: bar.advance(task, n))
            for i, result in enumerate(results):
                if isinstance(result, OmniEmbedError):
                    # the error's own index (in this chunk's numbering) names the file
                    where = chunk[result.index if result.index is not None else i]
                    failed.append((str(where.relative_to(folder)), result))
                else:
                    good.append((str(chunk[i].relative_to(folder)), result))
    return good, failed


def embed_folder(
    engine: Engine, model: str, folder: Path, out_path: Path, options: dict[str, Any], err: Console
) -> None:
    """Embed every image under ``folder`` into ``out_path`` (.parquet); report and skip unreadable files."""
    check_out(out_path)
    files, others = image_files(folder)
    if not files:
        raise ParameterInvalid(
            f"{folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})", param="input"
        )
    options = {k: v for k, v in options.items() if k != "truncate"}
    good, failed = embed_files(engine, model, folder, files, Modality.IMAGE, options, err)
    report_skipped(failed, len(files), bool(good), "image files")
    write_images(out_path, good)
    ignored = f"; {others} non-image files ignored" if others else ""
    err.print(
        f"wrote {len(good)} embeddings to {out_path}; {len(failed)} unreadable files skipped{ignored}",
        highlight=False,
    )
