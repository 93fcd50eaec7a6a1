"""``omniembed geo embed | export | preview | models``: the Earth-observation commands (a Typer sub-app,
mounted into the main CLI with ``app.add_typer(geo_app, name="geo")``). The files they read and write
(GeoJSON regions, grid files, PCA previews) are ``omniembed.geo.files``, which the playground shares.

Results go to stdout (JSON) or files; progress and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from omniembed.cli.common import err
from omniembed.cli.common import fail as _fail
from omniembed.cli.common import new_engine as _engine
from omniembed.errors import OmniEmbedError, ParameterInvalid, ParameterNotProvided
from omniembed.geo.api import describe_model, get_embedding, list_models
from omniembed.geo.export import export_batch
from omniembed.geo.files import pca_rgb, read_grid, read_rois, write_grid
from omniembed.geo.specs import (
    DEFAULT_WINDOW,
    BBox,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
)
from omniembed.geo.types import ExportConfig, ExportTarget
from omniembed.ray import RayEngine
from omniembed.version import __version__

app = typer.Typer(help="Earth-observation embeddings: regions and time windows to vectors or grids.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
geo_app = app

Start = Annotated[str | None, typer.Option("--start", help="Start date YYYY-MM-DD (inclusive).")]
End = Annotated[str | None, typer.Option("--end", help="End date YYYY-MM-DD (exclusive).")]
Backend = Annotated[str, typer.Option("--backend", help="auto | local | stac | gee.")]
Source = Annotated[str | None, typer.Option("--source", help="Folder/file (local), catalog URL (stac), or "
                                            "collection id (gee).")]
Bands = Annotated[list[str] | None, typer.Option("--band", help="Band name (repeat); default: the model's.")]
Scale = Annotated[float | None, typer.Option("--scale", help="Read resolution in metres (default: native).")]
Grid = Annotated[bool, typer.Option("--grid", help="Output a grid (band, y, x) instead of a pooled vector.")]
Prep = Annotated[str, typer.Option("--input-prep", help="tile (as rs-embed: a region of one model input is "
                                   "resized, a larger one tiled) | resize | auto.")]


def _temporal(start: str | None, end: str | None) -> TemporalSpec:
    """The time window of --start/--end; neither: rs-embed's default window, said in one plain line on stderr
    (the Python API's warning names its own parameter and the caller's source line, not these flags)."""
    if start is None and end is None:
        first, last = DEFAULT_WINDOW.start.isoformat(), DEFAULT_WINDOW.end.isoformat()
        err.print(f"note: no --start/--end: using the default window {first}..{last} (as rs-embed); give --start "
                  "YYYY-MM-DD --end YYYY-MM-DD to choose", highlight=False)
        return TemporalSpec.range(first, last)
    if start is None or end is None:
        raise ParameterNotProvided("give both --start and --end (or neither)",
                                   param="start" if start is None else "end")
    return TemporalSpec.range(start, end)


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """The engine's warnings (a region that needs many tiles) as one plain ``warning: ...`` line each on
    stderr, as every CLI message is: not Python's ``file:line: UserWarning:`` form."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                err.print(f"warning: {message}", markup=False, highlight=False)


def _sensor(source: str | None, bands: list[str] | None, scale: float | None) -> SensorSpec | None:
    if source is None:
        if bands or scale:
            raise ParameterNotProvided("--band/--scale need --source", param="source")
        return None
    return SensorSpec(source, tuple(bands or ()), scale)


def _spatial(bbox: list[float] | None, point: list[float] | None, buffer: float | None) -> BBox | PointBuffer:
    if bbox and point:
        raise ParameterInvalid("give --bbox or --point, not both", param="bbox")
    if bbox:
        return BBox(bbox[0], bbox[1], bbox[2], bbox[3])
    if point:
        if buffer is None:
            raise ParameterNotProvided("--point needs --buffer METRES", param="buffer")
        return PointBuffer(point[0], point[1], buffer)
    raise ParameterNotProvided("give a region: --bbox MINLON MINLAT MAXLON MAXLAT or --point LON LAT --buffer M",
                               param="spatial")


@app.command()
def embed(
    model: Annotated[str, typer.Argument(help="Model name (see `omniembed geo models`).")],
    bbox: Annotated[tuple[float, float, float, float] | None,
                    typer.Option("--bbox", help="MINLON MINLAT MAXLON MAXLAT")] = None,
    point: Annotated[tuple[float, float] | None, typer.Option("--point", help="LON LAT")] = None,
    buffer: Annotated[float | None, typer.Option("--buffer", help="Half-side of the square, metres.")] = None,
    start: Start = None,
    end: End = None,
    backend: Backend = "auto",
    source: Source = None,
    band: Bands = None,
    scale: Scale = None,
    grid: Grid = False,
    input_prep: Prep = "tile",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here: .npy/.json (vector); "
                                             ".tif/.nc/.zarr/.npz (grid).")] = None,
) -> None:
    """Embed one region."""
    try:
        with _plain_warnings():
            spatial = _spatial(_given(bbox), _given(point), buffer)
            emb = get_embedding(model, spatial=spatial, temporal=_temporal(start, end),
                                sensor=_sensor(source, band, scale), output=OutputSpec.grid() if grid else None,
                                backend=backend, input_prep=InputPrepSpec.coerce(input_prep))
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    data: Any = emb.data
    summary: dict[str, Any] = {"model": emb.meta.model, "shape": list(emb.data.shape),
                               "input": emb.meta.input.description, "preprocessing": emb.meta.preprocessing}
    if grid:
        summary |= {"crs": data.attrs["crs"], "transform": list(data.attrs["transform"])}
        if out is not None:
            write_grid(emb.data, out, {"model": emb.meta.model, "model_version": emb.meta.model_version,
                                       "omniembed_version": __version__, "start_date": start, "end_date": end})
    elif out is not None:
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(emb.to_dict()))
        else:
            np.save(out, emb.data)
    else:
        summary["embedding"] = emb.data.tolist()
    if out is not None:
        summary["out"] = str(out)
    print(json.dumps(summary))


def _given(values: tuple[float | None, ...] | None) -> list[float] | None:
    return None if values is None or all(v is None for v in values) else [float(v) for v in values if v is not None]


@app.command("export")
def export_cmd(
    rois: Annotated[Path, typer.Argument(help="GeoJSON: polygons (their bbox) or points with buffer_m.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model (repeat for several).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumes if it exists).")],
    fmt: Annotated[str, typer.Option("--format", help="npz | netcdf | zarr | geotiff | geoparquet")] = "npz",
    start: Start = None,
    end: End = None,
    backend: Backend = "auto",
    source: Source = None,
    band: Bands = None,
    scale: Scale = None,
    grid: Grid = False,
    input_prep: Prep = "tile",
    engine_kind: Annotated[str, typer.Option("--engine", help="local | ray: regions run on a Ray cluster.")] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: auto | ray://host:10001 (default: local).")] = None,
) -> None:
    """Embed many regions with one or more models into files, with a manifest; re-run to resume."""
    from rich.progress import Progress

    try:
        with _plain_warnings():
            spatials, ids = read_rois(rois)
            if engine_kind not in ("local", "ray"):
                raise ParameterInvalid(f"--engine must be local or ray, not {engine_kind!r}", param="engine")
            engine: Any = _engine()
            if engine_kind == "ray":  # the same files as a local export (omniembed.geo.export.ray)
                engine = RayEngine.from_engine(engine, address=address)
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task("embedding", total=len(spatials) * len(model))
                manifest = export_batch(spatials=spatials, temporal=_temporal(start, end), models=list(model),
                                        target=ExportTarget.folder(str(out), names=ids),
                                        config=ExportConfig(format=fmt, resume=True, continue_on_error=True,
                                                            chunk_size=8, input_prep=input_prep),
                                        output=OutputSpec.grid() if grid else None, sensor=_sensor(source, band, scale),
                                        backend=backend, engine=engine, progress=lambda n: bar.advance(task, n))
                assert isinstance(manifest, dict)
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    print(json.dumps({"out": str(out), "files": manifest["files"], "counts": manifest["counts"]}))


@app.command()
def preview(
    grid_file: Annotated[Path, typer.Argument(help="A grid: .tif, .nc, .zarr or an export .npz item.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("grid.png"),
    scale: Annotated[int, typer.Option("--scale", help="Pixels per grid cell in the PNG.")] = 8,
) -> None:
    """Render a grid as a PCA false-colour PNG (first three components as RGB)."""
    from PIL import Image

    try:
        if not grid_file.exists():
            raise ParameterInvalid(f"{grid_file} does not exist", param="grid")
        grid = read_grid(grid_file)
        if grid.ndim != 3:
            raise ParameterInvalid(f"{grid_file} holds a {grid.ndim}-d array, not a (band, y, x) grid", param="grid")
    except OmniEmbedError as exc:
        raise _fail(exc) from None
    img = Image.fromarray(pca_rgb(grid), "RGB")
    img = img.resize((img.width * max(1, scale), img.height * max(1, scale)), Image.Resampling.NEAREST)
    img.save(out)
    print(json.dumps({"out": str(out), "cells": [grid.shape[1], grid.shape[2]], "dim": grid.shape[0]}))


@app.command("models")
def models_cmd() -> None:
    """Models usable on regions, with bands, resolution, dimension and output kinds (JSON)."""
    eng = _engine()
    print(json.dumps([describe_model(name, engine=eng) for name in list_models(engine=eng)], indent=2))
