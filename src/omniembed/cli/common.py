"""What every CLI module shares: the stderr console, the error exit, an engine from the settings, the
``--out`` Parquet file (its checks, the skipped-items report, the atomic write), and serve's socket.

Kept apart from ``cli.py`` because ``cli.py`` mounts the geo commands while it is still being imported.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from omniembed.api import Engine
from omniembed.atomic import atomic_path
from omniembed.errors import ModelNotFound, OmniEmbedError, ParameterInvalid, class_for_code
from omniembed.registry import ModelSpec
from omniembed.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

    from omniembed.embedding import Embedding, Modality

__all__ = ["check_out", "check_source", "embedding_column", "err", "fail", "listen_socket", "new_engine",
           "report_skipped", "resolve_model", "show_progress", "write_parquet"]

err = Console(stderr=True, soft_wrap=True)


def new_engine() -> Engine:
    """An engine with the settings read now (``OMNIEMBED_*``)."""
    return Engine(Settings())


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on the stderr console (resolved when written, as the tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(self.format(record), markup=False, highlight=False)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def show_progress() -> None:
    """Show the ``omniembed.runtime`` INFO lines (``preparing minilm: exporting to ONNX...``, ``done in
    12.3 s``) on stderr, so that a first use which spends a minute exporting says why."""
    logger = logging.getLogger("omniembed.runtime")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def fail(exc: OmniEmbedError) -> typer.Exit:
    """Print an error as ``error [code] message`` on stderr (and its ``detail``, e.g. the places looked at,
    below it); exit 2 for bad parameters, else 1."""
    err.print(f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}", highlight=False)
    if exc.detail:
        err.print(escape(exc.detail), highlight=False)
    return typer.Exit(2 if exc.code.startswith("parameter") else 1)


def check_out(path: Path) -> Path:
    """The ``--out`` file, checked before any work: a ``.parquet`` name whose folder exists (it is created,
    with its parents, when missing)."""
    if path.suffix.lower() != ".parquet":
        raise ParameterInvalid(f"--out must end in .parquet, not {path.name!r}", param="out")
    if path.is_dir():
        raise ParameterInvalid(f"--out {path} is a folder; give a file name ending in .parquet", param="out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ParameterInvalid(f"cannot create the folder {path.parent} for --out: {reason}", param="out") from None
    return path


def report_skipped(failed: Sequence[tuple[str, OmniEmbedError]], total: int, any_good: bool, noun: str) -> None:
    """Print the skipped items (the first 20) as ``skipped WHERE: [code] message`` on stderr; when nothing at
    all was embedded, end with ``error [code] none of the N NOUN could be embedded`` (the code the most items
    failed with) and exit as ``fail`` does for that code. ``WHERE`` is the item's position in the CLI's terms
    (``line 12``, a file name), made by the caller from the error's ``index``; messages never carry positions."""
    for where, problem in failed[:20]:
        err.print(f"[yellow]skipped[/] {escape(f'{where}: [{problem.code}] {problem.message}')}", highlight=False)
    if len(failed) > 20:
        err.print(f"... and {len(failed) - 20} more", highlight=False)
    if not any_good:
        codes = Counter(problem.code for _, problem in failed)
        code = codes.most_common(1)[0][0] if codes else ParameterInvalid.code
        raise fail(class_for_code(code)(f"none of the {total} {noun} could be embedded (the reasons are above)"))


def resolve_model(engine: Engine, model: str, modality: Modality | None = None) -> ModelSpec:
    """The spec of ``model`` (a name, alias, folder or hub id); an unknown name's hint suggests the close
    names of the models that embed ``modality`` (the kind of input given on the command line), those whose
    weights are on this machine first."""
    try:
        return engine.spec(model)
    except ModelNotFound:
        message = engine.registry.not_found_message(model, modality, runnable=engine.weights_available)
        raise ModelNotFound(message, param="model", model=model) from None


_REMOTE = ("http://", "https://", "data:")


def check_source(flag: str, value: str) -> str:
    """A ``--image``/``--audio``/``--video`` value: a URL, a data URL or base64 data pass as they are; a
    local file that does not exist is a bad parameter (exit 2, as a missing ``--input`` is), named by its
    flag, before any model loads."""
    text = value.strip()
    base64ish = len(text) >= 90 and all(c.isalnum() or c in "+/=-_\n\r" for c in text)
    if text.lower().startswith(_REMOTE) or base64ish:
        return value
    path = Path(value).expanduser()
    if path.is_dir():
        raise ParameterInvalid(f"{flag} {value} is a folder; give one file, or the folder as --input with --out",
                               param=flag.lstrip("-"))
    if not path.is_file():
        raise ParameterInvalid(f"{flag} {value} does not exist (give a file, an http(s) URL or a data: URL)",
                               param=flag.lstrip("-"))
    return value


def embedding_column(results: Sequence[Embedding]) -> pa.Array:
    """One fixed-size float32 list per row: the rows of each result's ``data``, in order."""
    import numpy as np
    import pyarrow as pa

    dim = results[0].data.shape[-1]
    flat = np.concatenate([r.data.reshape(-1) for r in results])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)


def write_parquet(path: Path, columns: dict[str, pa.Array], first: Embedding, **extra: Any) -> None:
    """Write ``columns`` to ``path`` atomically, with the model's facts (and ``extra``) as JSON in the schema
    metadata under ``omniembed``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = first.meta
    info = {"model": meta.model, "model_version": meta.model_version, "dim": first.data.shape[-1],
            "pooling": meta.pooling, "normalized": meta.normalized, "preprocessing": meta.preprocessing, **extra}
    table = pa.table(columns).replace_schema_metadata({b"omniembed": json.dumps(info).encode()})
    try:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ParameterInvalid(f"cannot write --out {path}: {reason}", param="out") from None


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds: SO_REUSEADDR, IPv6 when the host has a colon), so
    that a busy port is a clear error before the banner and before any model loads."""
    if not 0 <= port < 65536:
        raise ParameterInvalid(f"port must be between 0 (any free port) and 65535, not {port}", param="port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: answers go out at once, not after the client's delayed ACK (~40 ms per
    # request when a response is written in two parts, as uvicorn does on a socket handed to it).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ParameterInvalid(f"port {port} on {host} is in use; pick another with --port", param="port") from None
        reason = exc.strerror or str(exc)
        raise ParameterInvalid(
            f"cannot listen on {host}:{port} ({reason}); check --host (OMNIEMBED_HOST) and --port", param="host"
        ) from None
    sock.set_inheritable(True)
    return sock
