"""The ``omniembed`` Typer application: each command module's commands, and the geo sub-app."""

from __future__ import annotations

import typer

from omniembed.cli.embed import embed
from omniembed.cli.geo import app as geo_app
from omniembed.cli.models import models_app
from omniembed.cli.serve import serve

__all__ = ["app", "main"]

app = typer.Typer(
    help="omniembed: text, images, audio, video and Earth-observation regions to embedding vectors, offline, "
    "from one engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")
app.command()(embed)
app.command()(serve)
app.add_typer(geo_app, name="geo", help="Earth-observation embeddings: embed, export, preview (docs/geo.md).")


def main() -> None:
    app()
