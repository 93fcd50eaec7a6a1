"""The Python face: ``embed``, ``embed_batch``, ``list_models``, ``describe_model`` over one ``Engine``.

The module-level functions use a process-wide engine built on first use from ``Settings()`` (the
environment at that moment); ``configure(settings)`` replaces it. An ``Engine`` can also be made and
used directly, e.g. one per test or per server.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from omniembed.contract import LoadedModel, Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import (
    ModelLoadFailed,
    ModelNotFound,
    OmniEmbedError,
    ParameterInvalid,
    ParameterNotProvided,
    RuntimeUnavailable,
    WeightsNotFound,
)
from omniembed.inputs.video_clips import video_preparer
from omniembed.models import default_registry, spec_for_folder
from omniembed.pipeline import run
from omniembed.registry import ModelSpec, Registry, WeightsSource
from omniembed.runtime import ModelCache, resolve_runtime
from omniembed.runtime.precision import apply_precision, resolve_precision
from omniembed.settings import Settings
from omniembed.weights import locate_weights

__all__ = ["Engine", "Loaded", "configure", "describe_model", "embed", "embed_batch", "get_engine", "list_models"]

ErrorMode = Literal["raise", "return"]
log = logging.getLogger(__name__)
TEXT, IMAGE, AUDIO, VIDEO = Modality.TEXT, Modality.IMAGE, Modality.AUDIO, Modality.VIDEO


@dataclass(frozen=True)
class Loaded:
    """A model as the engine runs it: its canonical name and the concrete runtime, device and precision (the
    key of the engine's model cache, and what ``Engine.loaded``/``Engine.plan`` tell the faces)."""

    model: str
    runtime: str
    device: str
    precision: str
    fallback: bool = field(default=False, compare=False)
    """Whether the runtime was chosen by ``auto``, so a missing ONNX Runtime may fall back to torch."""


def _check_name(model: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ParameterNotProvided("model is required: a name from `omniembed models`", param="model")


class Engine:
    """Resolves models, keeps loaded ones in an LRU, and runs the pipeline."""

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.registry = registry if registry is not None else default_registry()
        self.models: ModelCache[LoadedModel] = ModelCache(self.settings.max_loaded_models)
        self._adhoc: dict[str, ModelSpec] = {}
        self._fell_back: dict[Loaded, Loaded] = {}
        """A key whose ONNX export failed -> the torch key it fell back to: the export is not tried again on
        every call (``unload`` forgets, so ``reset_runtime`` retries it)."""
        self._served: dict[str, ModelSpec] = {}
        self._available: tuple[float, list[ModelSpec]] | None = None
        self._lock = threading.Lock()
        # The model cache loads each key once (a lock per key). Loads of different models are serialised
        # too: preparing one (torch's exporter and compiler keep process-wide state, and the preparation
        # step redirects the process's stdout) is not safe beside another's. Loaded models run at once.
        self._preparing = threading.RLock()

    # -- models -----------------------------------------------------------------------------
    def spec(self, model: str) -> ModelSpec:
        """The spec for a registered name or alias, a local model folder, or a hub id.

        For the Python API and the CLI: it may read the disk or download from the hub, so it never runs on
        an event loop, and never for a name a network client sent (that is ``served_spec``).
        """
        _check_name(model)
        found = self.registry.get(model)
        if found is not None:
            return found
        with self._lock:
            known = self._adhoc.get(model)
        if known is not None:
            return known
        try:
            path = Path(model).expanduser()
            is_dir = path.is_dir()
        except (RuntimeError, OSError, ValueError):  # "~nobody": no such user; a name too long for a path
            raise self._not_found(model) from None
        if is_dir:
            spec = spec_for_folder(path)
        elif "/" in model and not model.startswith((".", "/", "~")) and model.count("/") == 1:
            probe = ModelSpec(model, "", (Modality.TEXT,), 0, "mean", False, WeightsSource(hub_id=model), "")
            spec = spec_for_folder(locate_weights(probe, self.settings), name=model)
        else:
            raise self._not_found(model)
        with self._lock:
            self._adhoc[model] = spec
            self._adhoc.setdefault(spec.name, spec)  # load(spec.name) finds it without the disk
        return spec

    def serve(self, model: str) -> ModelSpec:
        """Resolve ``model`` as ``spec`` does (a folder or a hub id too; reads the disk or downloads, so
        call it off the event loop) and let ``served_spec`` answer it: an operator's ``serve --models``."""
        spec = self.spec(model)
        if self.registry.get(spec.name) is None:  # registered models are served anyway
            with self._lock:
                for key in (model, spec.name):
                    self._served[key.strip().lower()] = spec
                self._available = None
        return spec

    def served_spec(self, model: str, modality: Modality | None = None) -> ModelSpec:
        """The spec for a model name a network client sent: a registered name or alias, or a model the
        operator added with ``serve``. Never a path or a hub id, and pure in-memory work (no disk, no
        network), so it is safe on the event loop. ``modality`` only focuses the not-found hint.
        """
        _check_name(model)
        found = self.registry.get(model)
        if found is not None:
            return found
        with self._lock:
            served = self._served.get(model.strip().lower())
            extra = list({s.name: s for s in self._served.values()}.values())
            cached = self._available
        if served is not None:
            return served
        advice = (
            "GET /v1/models lists the models this server runs. Requests cannot name local folders or hub ids: "
            "the operator adds those with `omniembed serve --models`."
        )
        # Which models can run here, from the last scan (never a disk read for a client's name).
        ready = None if cached is None else {s.name for s in cached[1]}
        message = self.registry.not_found_message(
            model, modality, extra=extra, advice=advice, runnable=None if ready is None else lambda s: s.name in ready
        )
        raise ModelNotFound(message, param="model", model=model)

    def served_specs(self) -> list[ModelSpec]:
        """Every registered model and every model the operator added with ``serve``, sorted by name."""
        with self._lock:
            extra = {s.name: s for s in self._served.values()}
        return sorted([*self.registry, *extra.values()], key=lambda s: s.name)

    def weights_available(self, spec: ModelSpec) -> bool:
        """Whether ``spec``'s weights are on this machine (its folder, the model dir, a package or the
        Hugging Face cache). Reads the disk, never the network, and loads nothing."""
        source = spec.weights
        if not (source.hub_id or source.package or source.local_path):
            return True  # nothing to find: the model needs no weights files
        try:
            locate_weights(spec, self.settings.model_copy(update={"hub_offline": True}))
        except WeightsNotFound:
            return False
        return True

    def available_specs(self, max_age_sec: float = 30.0) -> list[ModelSpec]:
        """``served_specs`` whose weights are on this machine (reads the disk: call it off the event
        loop). Cached for ``max_age_sec``, so listing models many times costs one scan."""
        now = time.monotonic()
        with self._lock:
            cached = self._available
        if cached is not None and now - cached[0] < max_age_sec:
            return cached[1]
        found = [s for s in self.served_specs() if self.weights_available(s)]
        with self._lock:
            self._available = (now, found)
        return found

    def _not_found(self, model: str, modality: Modality | None = None) -> OmniEmbedError:
        """ModelNotFound with close names of ``modality``'s models, those whose weights are here first."""
        message = self.registry.not_found_message(model, modality, runnable=self.weights_available)
        return ModelNotFound(message, param="model", model=model)

    # -- what is loaded ------------------------------------------------------------------------
    def plan(self, model: str | ModelSpec, options: Options | None = None) -> Loaded:
        """What ``model`` runs with under ``options`` and the settings (runtime, device, precision), resolved
        from the hardware without loading anything: ``load`` loads exactly this (unless ONNX is missing
        and the engine falls back to torch)."""
        spec = model if isinstance(model, ModelSpec) else self.spec(model)
        opts = options or Options()
        device = opts.device or self.settings.device
        precision, wanted = resolve_precision(opts.precision or self.settings.precision, spec,
                                              opts.runtime or self.settings.runtime, device)
        runtime, device = resolve_runtime(wanted, device)
        return Loaded(spec.name, runtime, device, precision, fallback=wanted == "auto")

    def loaded(self) -> dict[Loaded, LoadedModel]:
        """The models in memory now, by what was asked for (``plan``'s answer), least recently used first;
        each ``LoadedModel`` says what it runs as (a precomputed product: ``precomputed``). Loads nothing and
        leaves the cache's order as it was."""
        return {key: model for key, model in self.models.items() if isinstance(key, Loaded)}

    def unload(self) -> int:
        """Drop every loaded model (the next call loads it again); how many there were."""
        count = len(self.models)
        self.models.clear()
        self._fell_back.clear()
        return count

    def load(
        self, model: str, *, runtime: str | None = None, device: str | None = None, precision: str | None = None
    ) -> LoadedModel:
        """The loaded model (from the LRU, or loaded now) for a concrete runtime, device and precision."""
        spec = self.spec(model)
        key = self.plan(spec, Options(runtime=runtime, device=device, precision=precision))
        key = self._fell_back.get(key, key)
        try:
            return self.models.get_or_load(key, lambda: self._load(spec, key))
        except RuntimeUnavailable as exc:
            if not key.fallback or key.runtime == "torch" or key.precision != "fp32":
                raise
            log.warning("%s; falling back to the torch runtime", exc.message)
            torch = dataclasses.replace(key, runtime="torch")
            self._fell_back[key] = torch
            return self.models.get_or_load(torch, lambda: self._load(spec, torch))

    def _load(self, spec: ModelSpec, key: Loaded) -> LoadedModel:
        with self._preparing:
            return self._load_now(spec, key)

    def _load_now(self, spec: ModelSpec, key: Loaded) -> LoadedModel:
        w, model_dir = spec.weights, self.settings.model_dir
        # A model that names no weights source and has no MODEL_DIR folder (a precomputed product, a test
        # stand-in) loads with none.
        named = w.hub_id or w.package or w.local_path or (model_dir is not None and (model_dir / spec.name).is_dir())
        folder = locate_weights(spec, self.settings) if named else None
        try:
            loaded: LoadedModel = spec.load_function()(spec, folder, key.runtime, key.device, self.settings)
        except OmniEmbedError:
            raise
        except Exception as exc:
            raise ModelLoadFailed(
                f"model {spec.name!r} could not be loaded ({type(exc).__name__}). Check that its weights folder "
                "holds complete, matching weights and tokenizer files, or reinstall them.",
                param="model", model=spec.name, hint=f"omniembed models prepare {spec.name}",
                detail=f"weights folder: {folder}\n{type(exc).__name__}: {exc}",
            ) from exc
        return apply_precision(loaded, key.precision, self.settings)

    # -- embedding --------------------------------------------------------------------------
    def run(
        self,
        model: str,
        modality: Modality,
        items: Sequence[Any],
        options: Options | None = None,
        *,
        errors: ErrorMode = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> list[Embedding | OmniEmbedError]:
        """Embed ``items`` of one ``modality`` with ``model``: the one entry every face calls. One result
        per item, in order; with ``errors="return"`` a bad item's error (naming its index) takes its place.
        ``options`` were checked when made; the ones that do not apply to ``modality`` are refused here, and
        ``batch_size`` and a video's clip length default to the settings'. ``progress`` is called with the
        number of items finished as they finish."""
        if not isinstance(modality, Modality):
            raise ParameterInvalid(f"modality must be one of {', '.join(Modality)}, not {modality!r}",
                                   param="modality")
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise ParameterInvalid(f"{modality}s must be a list, not {type(items).__name__}; for one input use "
                                   "embed()", param=f"{modality}s")
        if errors not in ("raise", "return"):
            raise ParameterInvalid(f"errors must be 'raise' or 'return', not {errors!r}", param="errors")
        options = options if options is not None else Options()
        options.check_for(modality)
        defaults: dict[str, Any] = {}
        if options.batch_size is None:
            defaults["batch_size"] = self.settings.batch_size
        if modality is VIDEO and options.segment_sec is None:
            defaults["segment_sec"] = float(self.settings.video_clip_sec)
        options = dataclasses.replace(options, **defaults) if defaults else options
        loaded = self.load(model, runtime=options.runtime, device=options.device, precision=options.precision)
        # a video is an input of the pipeline: its preparer puts the model's image (or audio) path to work
        preparer, encoder = (None, None) if modality is not VIDEO else video_preparer(loaded, self.settings,
                                                                                      options.embedding_option)
        return run(loaded, modality, list(items), options, errors=errors, progress=progress, preparer=preparer,
                   encoder=encoder)

    def embed_batch(
        self,
        model: str,
        texts: Sequence[Any] | None = None,
        *,
        images: Sequence[Any] | None = None,
        audios: Sequence[Any] | None = None,
        videos: Sequence[Any] | None = None,
        errors: ErrorMode = "raise",
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> list[Any]:
        """Embed a list of inputs of one modality (``texts``, ``images``, ``audios``, ``videos``) with
        ``Options`` given as keywords: ``run`` for callers who name the modality by keyword."""
        given = [(m, v) for m, v in ((TEXT, texts), (IMAGE, images), (AUDIO, audios), (VIDEO, videos)) if v is not None]
        if not given:
            raise ParameterNotProvided("nothing to embed: pass texts=, images=, audios= or videos=", param="texts")
        if len(given) > 1:
            raise ParameterInvalid("pass one of texts=, images=, audios= or videos= per call", param=f"{given[1][0]}s")
        modality, items = given[0]
        return self.run(model, modality, items, Options.of(**options), errors=errors, progress=progress)

    def embed(
        self, model: str, *, text: Any = None, image: Any = None, audio: Any = None, video: Any = None,
        **options: Any,
    ) -> Embedding:
        """Embed one input: exactly one of ``text``, ``image``, ``audio`` or ``video``; see ``embed``."""
        pairs = ((TEXT, text), (IMAGE, image), (AUDIO, audio), (VIDEO, video))
        given = [(m, v) for m, v in pairs if v is not None]
        if not given:
            raise ParameterNotProvided("nothing to embed: pass text=, image=, audio= or video=", param="text")
        if len(given) > 1:
            raise ParameterInvalid("pass one of text=, image=, audio= or video= per call", param=str(given[1][0]))
        modality, value = given[0]
        try:
            result = self.run(model, modality, [value], Options.of(**options))[0]
        except OmniEmbedError as exc:
            if exc.index is None:
                raise
            raise exc.at_index(None) from None  # one input: no position to name
        assert isinstance(result, Embedding)
        return result


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine, built from ``Settings()`` on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine()
        return _engine


def configure(settings: Settings | None = None, **overrides: Any) -> Engine:
    """Replace the process-wide engine with one built from ``settings`` (and keyword overrides)."""
    global _engine
    base = settings if settings is not None else Settings()
    new = Engine(base.model_copy(update=overrides) if overrides else base)
    with _engine_lock:
        _engine = new
    return new


def embed(
    model: str, *, text: Any = None, image: Any = None, audio: Any = None, video: Any = None, **options: Any
) -> Embedding:
    """Embed one input: exactly one of ``text``, ``image``, ``audio`` or ``video``.

    Options: ``truncate`` (text: ``end`` default, ``start``, or ``none``: too long is an error),
    ``normalize`` and ``pooling`` (default: as the model defines), ``runtime`` and ``device``
    (``auto``), ``precision`` (``auto``: the model's verified bf16 on CPUs that have it; ``fp32``, ``bf16``,
    ``int8``), and for audio ``start_offset_sec``, ``segment_sec``, ``overlap_sec``.

    A video (a path, an http(s) URL, bytes or a data URL) gives one row per clip (``segment_sec``, default
    ``settings.video_clip_sec``, from ``start_offset_sec`` to ``end_offset_sec`` or the end), the clips in
    ``meta.segments`` and the whole video's pooled vector in ``.vector``. ``model`` embeds images (frames
    sampled at ``settings.video_fps``), or with ``embedding_option="audio"`` sound (the audio track).
    """
    return get_engine().embed(model, text=text, image=image, audio=audio, video=video, **options)


@overload
def embed_batch(
    model: str, texts: Sequence[Any] | None = ..., *, errors: Literal["raise"] = ..., **kwargs: Any
) -> list[Embedding]: ...
@overload
def embed_batch(
    model: str, texts: Sequence[Any] | None = ..., *, errors: Literal["return"], **kwargs: Any
) -> list[Embedding | OmniEmbedError]: ...
def embed_batch(model: str, texts: Sequence[Any] | None = None, *, errors: ErrorMode = "raise", **kwargs: Any) -> Any:
    """Embed many inputs of one modality (``texts``, ``images=``, ``audios=`` or ``videos=``) in batches.

    One result per input, same order.

    With ``errors="raise"`` (default) the first bad item raises an error naming its index; with
    ``errors="return"`` each bad item's error takes its place in the result and the rest are embedded.
    Keyword options as ``embed``, plus ``batch_size`` and ``progress`` (called with items done).
    """
    return get_engine().embed_batch(model, texts, errors=errors, **kwargs)


def list_models() -> list[ModelSpec]:
    """Every registered model (built in and from plugins), sorted by name. Imports no ML library."""
    return list(get_engine().registry)


def describe_model(name: str) -> ModelSpec:
    """The spec of one model by name or alias (case-insensitive); ModelNotFound otherwise."""
    return get_engine().registry.resolve(name)

