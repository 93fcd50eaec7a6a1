"""``omniembed serve``: the HTTP server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from omniembed.api import Engine
from omniembed.cli.common import (
    err,
    listen_socket,
)
from omniembed.cli.common import fail as _fail
from omniembed.errors import OmniEmbedError, WeightsNotFound
from omniembed.settings import DEFAULT_SERVE_MODELS, Settings
from omniembed.weights import locate_weights


def _cannot_serve(engine: Engine, name: str) -> OmniEmbedError | None:
    """Why start-up model ``name`` cannot be loaded, where that is cheap to know before the server starts (an
    unknown name; weights that are not on this machine and will not be downloaded); else None. Reads the
    disk, never the network: what needs the hub (a hub id, a registered model's download) is left to the
    start-up, which fails the same way when it cannot."""
    settings = engine.settings
    spec = engine.registry.get(name)
    try:
        if spec is None:
            hub_id = "/" in name and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()
            if hub_id and not settings.hub_offline:
                return None
            engine.spec(name)  # a folder is read, an offline hub id looked up in the cache, a typo refused
        elif not engine.weights_available(spec) and (settings.hub_offline or not spec.weights.hub_id):
            locate_weights(spec, settings.model_copy(update={"hub_offline": True}))  # raises, with the fix
    except OmniEmbedError as exc:
        return exc
    return None


def _why(exc: OmniEmbedError) -> str:
    """One line: the error's message, or for missing weights the command that gets them."""
    if isinstance(exc, WeightsNotFound) and exc.hint:
        return f"its weights are not on this machine; get them with `{exc.hint}`"
    return " ".join(exc.message.split())


def _start_up_models(settings: Settings, explicit: bool) -> Settings:
    """The settings with the start-up models checked: each one named (``--models``/OMNIEMBED_SERVE_MODELS)
    that cannot be loaded ends the command with one line each (exit 1), unless ``allow_missing_models``
    (then a warning: /ready names it); with none named, the offline defaults whose weights are here."""
    engine = Engine(settings)
    if not explicit:
        names = []
        for name in DEFAULT_SERVE_MODELS:
            problem = _cannot_serve(engine, name)
            if problem is None:
                names.append(name)
            else:
                err.print(escape(f"warning: not serving default model {name} [{problem.code}]: {_why(problem)}"),
                          highlight=False)
        return settings.model_copy(update={"serve_models": names})
    problems = [(name, p) for name in settings.serve_models if (p := _cannot_serve(engine, name)) is not None]
    for name, problem in problems:
        if settings.allow_missing_models:
            err.print(escape(f"warning: not serving {name} [{problem.code}]: {_why(problem)}"), highlight=False)
        else:
            why = _why(problem).rstrip(".")
            err.print(f"[bold red]error[/] {escape(f'[{problem.code}] cannot serve {name}: {why}.')} To serve "
                      "the other models without it: --allow-missing-models.", highlight=False)
    if problems and not settings.allow_missing_models:
        raise typer.Exit(1)
    return settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1, OMNIEMBED_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000, OMNIEMBED_PORT).")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models to load at start (OMNIEMBED_SERVE_MODELS); each "
                                 "must load, or serve exits. Default: minilm, efficientnet-lite0, sfx-cnn, "
                                 "speaker-ge2e (those installed). '': none (each loads at its first request).")
    ] = None,
    allow_missing_models: Annotated[
        bool, typer.Option("--allow-missing-models", help="Serve the other models when one of --models cannot "
                           "be loaded; /ready names it (OMNIEMBED_ALLOW_MISSING_MODELS).")
    ] = False,
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
    if allow_missing_models:
        overrides["allow_missing_models"] = True
    settings = Settings().model_copy(update=overrides)
    settings = _start_up_models(settings, explicit=models is not None or "serve_models" in settings.model_fields_set)
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
    app = create_app(settings)
    state = app.state.omniembed
    with sock:  # served as bound above: nothing can take the port in between
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=int(settings.shutdown_grace_sec) or None,
        )
        server = uvicorn.Server(config)
        state.on_fatal = lambda: setattr(server, "should_exit", True)  # a start-up model failed: the log says why
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it after its graceful stop
            server.run(sockets=[sock])
    if not server.started or (state.failed and not settings.allow_missing_models):  # the log says why
        raise typer.Exit(3)
