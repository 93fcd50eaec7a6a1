"""``omniembed serve``: the HTTP server."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer

from omniembed.cli.common import (
    err,
    listen_socket,
)
from omniembed.cli.common import fail as _fail
from omniembed.errors import OmniEmbedError
from omniembed.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1, OMNIEMBED_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000, OMNIEMBED_PORT).")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models to load at start (OMNIEMBED_SERVE_MODELS).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Run the HTTP server: OpenAI /v1/embeddings, TwelveLabs /v1.3/embed, feature-extraction-server /api/tasks."""
    import logging

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if models is not None:
        overrides["serve_models"] = [m.strip() for m in models.split(",") if m.strip()]
    settings = Settings().model_copy(update=overrides)
    try:
        sock = listen_socket(settings.host, settings.port)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    import uvicorn

    from omniembed.service import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = sock.getsockname()[1]  # the port bound (--port 0: a free one)
    base = f"http://{settings.host}:{port}"
    err.print(
        f"omniembed serving on {base}  (OpenAI {base}/v1/embeddings · TwelveLabs {base}/v1.3/embed · "
        f"feature-extraction-server {base}/api/tasks/... · docs {base}/docs)",
        highlight=False,
    )
    with sock:  # served as bound above: nothing can take the port in between
        config = uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=int(settings.shutdown_grace_sec) or None,
        )
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it after its graceful stop
            server.run(sockets=[sock])
    if not server.started:  # e.g. a model in --models failed to load (the log says why)
        raise typer.Exit(3)
