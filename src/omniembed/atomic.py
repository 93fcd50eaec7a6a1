"""Writing a file or a folder so that readers see the old one or the whole new one, never half of it.

``atomic_path(target)`` yields a temporary path beside ``target`` (a file named after this process, so the
umask applies as to any file; or, with ``directory=True``, a fresh folder) and moves it into place in one
rename when the block succeeds; on an exception the temporary is removed and ``target`` is untouched.
Every writer of the package goes through it: the ONNX and compiled caches, the CLI's Parquet files, shards
and manifests, and the geo export's items, GIS files and manifests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(target: Path, *, directory: bool = False, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it in one rename when the block succeeds.

    ``replace=False`` (folders built by several processes at once, such as a cache entry): when ``target``
    exists by then, another writer finished first; its copy is kept and this one discarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) if directory else \
        target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if not directory:
            os.replace(tmp, target)
        elif not target.exists():
            try:
                os.rename(tmp, target)
            except OSError:  # another writer put its copy there in the meantime
                if not replace or not target.exists():
                    raise
                _swap(tmp, target)
        elif replace:
            _swap(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _swap(tmp: Path, target: Path) -> None:
    """Put folder ``tmp`` where folder ``target`` is (two renames: a folder cannot be replaced in one)."""
    old = target.with_name(f".{target.name}.old.{os.getpid()}")
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
