"""``omniembed models``: list, show, prepare."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from omniembed.cli.common import (
    err,
    resolve_model,
    show_progress,
)
from omniembed.cli.common import fail as _fail
from omniembed.cli.common import new_engine as _engine
from omniembed.errors import OmniEmbedError
from omniembed.registry import ModelSpec, how_to_get_weights

models_app = typer.Typer(help="List registered models, show one, or prepare their caches.", invoke_without_command=True)
out = Console(soft_wrap=True)


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model with its modalities, dimension, limits, whether its weights are on this
    machine (and how to get them when not) and its aliases; a wide terminal also shows where weights come from."""
    if ctx.invoked_subcommand is not None:
        return
    engine = _engine()
    specs = list(engine.registry)
    ready = {s.name: engine.weights_available(s) for s in specs}
    if as_json:
        print(json.dumps([{**s.to_dict(), "weights_here": ready[s.name]} for s in specs], indent=2))
        return
    console = Console(soft_wrap=True)  # made now: its width is the terminal's (or COLUMNS) when the command runs
    columns = {"aliases": console.width >= 110, "weights from": console.width >= 150}  # what fits beside the rest
    table = Table(title="omniembed models", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("name", no_wrap=True)  # a name is what people copy: never broken across lines
    table.add_column("modalities", min_width=5)
    table.add_column("dim", justify="right", no_wrap=True)
    table.add_column("max input", min_width=6)
    table.add_column("weights", no_wrap=True)
    for column, shown in columns.items():
        if shown:
            table.add_column(column, overflow="fold")
    for s in specs:
        here = "[green]ready[/]" if ready[s.name] else "[yellow]missing[/]"
        extra = {"aliases": "\n".join(s.aliases), "weights from": s.weights.describe()}
        table.add_row(s.name, ", ".join(map(str, s.modalities)), str(s.dim), _limits(s), here,
                      *(escape(extra[c]) for c, shown in columns.items() if shown))
    console.print(table)
    missing = [s for s in specs if not ready[s.name]]
    if missing:
        console.print("Weights missing here:", highlight=False)
        for s in missing:
            console.print(f"  {s.name}: {escape(how_to_get_weights(s))}", highlight=False)
    if not all(columns.values()):
        console.print("Aliases and weight sources: `omniembed models show NAME` (or a wider terminal).",
                      highlight=False)


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
    name: Annotated[str, typer.Argument(help="Model name or alias (case-insensitive), or a local model folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything omniembed knows about one model."""
    try:
        spec = resolve_model(_engine(), name)
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
