"""``omniembed models``: list, show, prepare."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from omniembed.cli.common import (
    err,
    show_progress,
)
from omniembed.cli.common import fail as _fail
from omniembed.cli.common import new_engine as _engine
from omniembed.errors import OmniEmbedError
from omniembed.registry import ModelSpec

models_app = typer.Typer(help="List registered models, show one, or prepare their caches.", invoke_without_command=True)
out = Console(soft_wrap=True)


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model with its modalities, dimension, aliases and weights source."""
    if ctx.invoked_subcommand is not None:
        return
    specs = list(_engine().registry)
    if as_json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    table = Table(title="omniembed models", show_lines=False)
    for column in ("name", "modalities", "dim", "max input", "aliases", "weights"):
        table.add_column(column, overflow="fold")
    for s in specs:
        modalities = ", ".join(map(str, s.modalities))
        table.add_row(s.name, modalities, str(s.dim), _limits(s), "\n".join(s.aliases), s.weights.describe())
    out.print(table)


def _limits(spec: ModelSpec) -> str:
    parts = []
    if spec.max_tokens:
        parts.append(f"{spec.max_tokens} tokens")
    if spec.max_pixels:
        parts.append(f"{spec.max_pixels} px")
    if spec.max_seconds:
        parts.append(f"{spec.max_seconds:g} s")
    return ", ".join(parts) or "-"


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name or alias (case-insensitive).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything omniembed knows about one model."""
    try:
        spec = _engine().registry.resolve(name)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    data = spec.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title=spec.name)
    for key, value in data.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    out.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str], typer.Argument(help="Model names or aliases (case-insensitive).")],
    runtime: Annotated[str | None, typer.Option(help="auto | torch | onnx (default: the settings').")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | int8 (default: the settings').")] = None,
) -> None:
    """Load models once so that their caches are filled (ONNX export, bf16 compile, int8 graph).

    Run it where the cache will be used (same machine type, OMNIEMBED_CACHE_DIR), e.g. in an image build,
    so that `omniembed serve` starts in seconds instead of spending the one-off export and compile time.
    """
    import time

    show_progress()
    engine = _engine()
    for name in names:
        started = time.perf_counter()
        try:
            loaded = engine.load(name, runtime=runtime, precision=precision)
        except OmniEmbedError as exc:
            raise _fail(exc) from None
        kinds = ", ".join(sorted({type(e).__name__ for e in loaded.encoders.values()}))
        err.print(f"{loaded.spec.name}: ready in {time.perf_counter() - started:.1f} s (runtime {loaded.runtime}, "
                  f"precision {loaded.precision}; {kinds}); cache {engine.settings.cache_dir}", highlight=False)
