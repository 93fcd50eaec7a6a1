"""What every CLI module shares: the stderr console, the error exit, and an engine from the settings.

Kept apart from ``cli.py`` because ``cli.py`` mounts the geo commands while it is still being imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from omniembed.errors import OmniEmbedError

if TYPE_CHECKING:
    from omniembed.api import Engine

__all__ = ["err", "fail", "new_engine"]

err = Console(stderr=True, soft_wrap=True)


def new_engine() -> Engine:
    """An engine with the settings read now (``OMNIEMBED_*``)."""
    from omniembed.api import Engine
    from omniembed.settings import Settings

    return Engine(Settings())


def fail(exc: OmniEmbedError) -> typer.Exit:
    """Print an error as ``error [code] message`` on stderr; exit 2 for bad parameters, else 1."""
    err.print(f"[bold red]error[/] {escape(f'[{exc.code}] {exc.message}')}", highlight=False)
    return typer.Exit(2 if exc.code.startswith("parameter") else 1)
