"""Model settings as data: the keyword settings a model takes (rs-embed's ``model_config``, e.g. prithvi's
``variant``), each with its allowed values, the other spellings rs-embed accepts for them and its default.

A model declares them in its spec, ``ModelSpec.options`` key ``"model_config"``: a tuple of ``ModelSetting``.
A value may select another registered model (``selects``): a variant with other weights is its own model
spec (its weights source names its repository and checkpoint file), so loading, caching and the
``weights_not_found`` answer work as for any model. Pure data: importing this imports no ML library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omniembed.errors import ParameterInvalid
from omniembed.registry import ModelSpec

__all__ = ["ModelSetting", "describe_settings", "resolve_settings", "selected_model", "settings_of"]


@dataclass(frozen=True)
class ModelSetting:
    """One keyword setting of a model. ``choices``: the canonical values; ``aliases``: other spellings as
    ``(spelling, canonical)`` pairs, matched case-insensitively; ``selects``: ``(canonical, model name)``
    pairs for values that run another registered model."""

    name: str
    default: str
    choices: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()
    selects: tuple[tuple[str, str], ...] = ()
    description: str = ""

    def resolve(self, value: Any, model: str) -> str:
        """The canonical value ``value`` names, or ``ParameterInvalid`` naming the allowed values."""
        key = str(value).strip().lower() if isinstance(value, str) else None
        lookup = {c.lower(): c for c in self.choices} | {a.lower(): c for a, c in self.aliases}
        if key is None or key not in lookup:
            raise ParameterInvalid(f"model {model!r} has no {self.name}={value!r}; {self.name} must be one of "
                                   f"{', '.join(self.choices)} (default {self.default})", param=self.name,
                                   model=model)
        return lookup[key]

    def describe(self) -> dict[str, Any]:
        """rs-embed's ``describe_model()["model_config"][name]`` entry, with omniembed's ``aliases``."""
        return {"type": "string", "default": self.default, "choices": list(self.choices),
                "aliases": {a: c for a, c in self.aliases}, "description": self.description}


def settings_of(spec: ModelSpec) -> tuple[ModelSetting, ...]:
    """The settings ``spec`` declares (none for most models)."""
    found: tuple[ModelSetting, ...] = tuple(spec.option("model_config", ()))
    return found


def describe_settings(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    """``describe_model()["model_config"]``: each setting's type, default, choices and description."""
    return {s.name: s.describe() for s in settings_of(spec)}


def resolve_settings(spec: ModelSpec, given: dict[str, Any]) -> dict[str, str]:
    """``given`` checked against ``spec``'s settings: each value canonical, the unset ones at their default.
    An unknown setting or value raises ``ParameterInvalid`` naming the allowed ones."""
    settings = {s.name: s for s in settings_of(spec)}
    unknown = sorted(k for k in given if k not in settings)
    if unknown:
        if not settings:
            raise ParameterInvalid(f"model {spec.name!r} does not accept model-specific keyword arguments "
                                   f"({', '.join(unknown)})", param=unknown[0], model=spec.name)
        raise ParameterInvalid(f"model {spec.name!r} takes only the settings {', '.join(sorted(settings))}, not "
                               f"{', '.join(unknown)}; describe_model() lists them", param=unknown[0], model=spec.name)
    return {name: s.resolve(given[name], spec.name) if name in given else s.default
            for name, s in settings.items()}


def selected_model(spec: ModelSpec, resolved: dict[str, str]) -> str:
    """The registered model the resolved settings run: another model where a value ``selects`` one, else
    ``spec``'s own."""
    for s in settings_of(spec):
        target = dict(s.selects).get(resolved.get(s.name, s.default))
        if target is not None:
            return target
    return spec.name
