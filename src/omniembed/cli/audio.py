"""``omniembed embed MODEL --input DIR --out out.parquet`` for a folder of audio files (an audio model).

Files are embedded a few at a time with a progress bar on stderr; files that cannot be read are reported
by name and skipped, never fatal. The Parquet file has the video folder's shape: one row per segment
(``scope`` = ``segment``) and one per file (``scope`` = ``audio``, its pooled vector), columns ``path``,
``scope``, ``start_sec``, ``end_sec``, ``embedding``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from omniembed.api import Engine
from omniembed.cli.common import check_out, report_skipped
from omniembed.cli.images import embed_files, image_files
from omniembed.cli.videos import write_videos
from omniembed.embedding import Modality
from omniembed.errors import ParameterInvalid

__all__ = ["AUDIO_SUFFIXES", "audio_files", "embed_audio_folder"]

AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3"})
"""The files a folder's audio is taken from: what libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3)."""
CHUNK = 16


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (by suffix, sorted, hidden entries skipped)."""
    return image_files(folder, AUDIO_SUFFIXES)[0]


def embed_audio_folder(
    engine: Engine, model: str, folder: Path, out_path: Path, options: dict[str, Any], err: Console
) -> None:
    """Embed every audio file under ``folder`` into ``out_path`` (.parquet); report and skip unreadable files."""
    check_out(out_path)
    files, others = image_files(folder, AUDIO_SUFFIXES)
    if not files:
        raise ParameterInvalid(f"{folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})",
                               param="input")
    options = {k: v for k, v in options.items() if k not in ("truncate", "end_offset_sec", "embedding_option")}
    good, failed = embed_files(engine, model, folder, files, Modality.AUDIO, options, err, CHUNK,
                               noun="audio files")
    report_skipped(failed, len(files), bool(good), "audio files")
    write_videos(out_path, good, scopes=("segment", "audio"))
    segments = sum(len(r.meta.segments) for _, r in good)
    ignored = f"; {others} other files ignored" if others else ""
    err.print(f"wrote {segments} segment and {len(good)} file embeddings to {out_path}; {len(failed)} unreadable "
              f"files skipped{ignored}", highlight=False)
