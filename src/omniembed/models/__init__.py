"""Model families (how to build each network) and the built-in catalogue.

One module per model family; each defines ``SPECS`` (its ``ModelSpec`` entries) and may handle model folders
given directly (``FOLDER_MODEL_TYPES`` and ``spec_for_folder``). This package finds them: ``default_registry``
is every built-in spec plus the installed plugins', ``spec_for_folder`` picks the family for a folder. Model
modules keep their ML imports inside functions, so finding and listing them imports no ML library.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import threading
from pathlib import Path
from typing import Any

from omniembed.errors import ParameterInvalid
from omniembed.registry import ModelSpec, Registry

__all__ = ["builtin_specs", "default_registry", "spec_for_folder"]


def _builtin_modules() -> list[Any]:
    """The model modules shipped in ``omniembed.models`` (each may define ``SPECS`` and folder handling).

    Model modules keep ML imports inside functions, so importing them stays cheap.
    """
    infos = sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
    return [importlib.import_module(f"{__name__}.{m.name}") for m in infos if not m.name.startswith("_")]


def builtin_specs() -> list[ModelSpec]:
    """Specs of the model modules shipped in ``omniembed.models``: every module that defines ``SPECS``."""
    return [spec for module in _builtin_modules() for spec in getattr(module, "SPECS", ())]


def spec_for_folder(folder: Path, name: str | None = None) -> ModelSpec:
    """A spec for a model folder given directly (a path, or a hub snapshot), chosen by the ``model_type`` in
    its config.json: the model module whose ``FOLDER_MODEL_TYPES`` names it builds the spec (reading only
    the folder's configuration); a module naming ``"*"`` takes every other folder (text encoders)."""
    config = folder / "config.json"
    model_type = ""
    if config.is_file():
        try:
            model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
        except (ValueError, AttributeError) as exc:
            raise ParameterInvalid(f"{config} is not valid JSON: {exc}", param="model") from None
    handlers = {t: m for m in _builtin_modules() for t in getattr(m, "FOLDER_MODEL_TYPES", ())}
    module = handlers.get(model_type) or handlers["*"]
    spec: ModelSpec = module.spec_for_folder(folder, name)
    return spec


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry: built-in models plus installed plugins, built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry(builtin_specs(), load_plugins=True)
        return _default
