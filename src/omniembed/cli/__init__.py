"""The command line: ``omniembed models | embed | geo | serve`` (thin: all work is done by the engine).

Results go to stdout (JSON) or to the ``--out`` file; progress, tables and errors go to stderr, so the
output can be piped. Settings come from ``OMNIEMBED_*`` variables, read when a command starts.

One module per command (``models``, ``embed`` with ``images`` and ``videos`` for folders and ``scale`` for
sharded output, ``serve``, and the ``geo`` sub-app), their shared helpers in ``common``, and the Typer
application that puts them together in ``application``. ``app`` and ``main`` are imported on first use,
so a command module's helpers (e.g. ``common``) can be imported without building the whole application.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("omniembed.cli.application"), name)
    raise AttributeError(f"module 'omniembed.cli' has no attribute {name!r}")
