"""Finding a model's weights: explicit path, model_dir, a shipping package, the HF cache, the hub.

Every place looked at is recorded, so that when none has the weights the error lists them all and
says how to supply the files: never a stack trace from deep inside a library.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from omniembed.errors import WeightsNotFound
from omniembed.registry import ModelSpec
from omniembed.settings import Settings

__all__ = ["fingerprint", "locate_weights"]

_MARKERS = ("config.json", "modules.json")


def _has_weights(path: Path, marker: str | None = None) -> bool:
    if not path.is_dir():
        return False
    if marker is not None:
        return any(p.is_file() for p in path.glob(marker))
    return any((path / m).is_file() for m in _MARKERS)


def _package_dir(package: str, subdir: str) -> Path | None:
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / subdir


def _hf_cache_dir(hub_id: str, marker: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in (marker,) if marker and "*" not in marker else _MARKERS:
        hit = try_to_load_from_cache(hub_id, name)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _hub_download(hub_id: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(hub_id))


def locate_weights(spec: ModelSpec, settings: Settings, path: str | Path | None = None) -> Path:
    """The folder holding ``spec``'s weights, or WeightsNotFound naming every place tried."""
    src = spec.weights
    tried: list[str] = []
    install: str | None = None  # the package to install, when the weights ship in one that is missing
    candidates: list[tuple[str, Path | None]] = []
    if path is not None:
        candidates.append(("the path given", Path(path).expanduser()))
    if src.local_path is not None:
        candidates.append(("the model's folder", src.local_path))
    if settings.model_dir is not None:
        candidates.append(("OMNIEMBED_MODEL_DIR", settings.model_dir / spec.name))
    if src.package:
        pkg_dir = _package_dir(src.package, src.package_subdir)
        pip_name = src.package.replace("_", "-")
        if pkg_dir is None:
            install = src.install or f"pip install {pip_name}"
            tried.append(f"Python package {pip_name}: not installed ({install})")
        else:
            candidates.append((f"Python package {pip_name}", pkg_dir))
    for label, candidate in candidates:
        if candidate is not None and _has_weights(candidate, src.marker):
            return candidate
        tried.append(f"{label}: {candidate} (no {src.marker or 'config.json or modules.json'})")
    if src.hub_id:
        cached = _hf_cache_dir(src.hub_id, src.marker)
        if cached is not None:
            return cached
        tried.append(f"Hugging Face cache: no copy of {src.hub_id}")
        if settings.hub_offline:
            tried.append("Hugging Face hub: not contacted (offline: OMNIEMBED_HUB_OFFLINE/HF_HUB_OFFLINE)")
        else:
            try:
                return _hub_download(src.hub_id)
            except Exception as exc:  # network, auth, missing repo: all end in the same advice
                first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                tried.append(f"Hugging Face hub {src.hub_id}: {type(exc).__name__}: {first[:500]}")
    where = "\n  - ".join(tried) or "nowhere (the model names no source)"
    prepare = f"omniembed models prepare {spec.name}"
    how = (
        f"Put the model's files (config.json, weights, tokenizer) in a folder and pass it as the "
        f"model name, or set OMNIEMBED_MODEL_DIR so that OMNIEMBED_MODEL_DIR/{spec.name}/ holds them"
    )
    if install is not None:
        how += f", or install the package that ships them (`{install}`)"
    if src.hub_id:
        how += (f", or download {src.hub_id} into the Hugging Face cache (`{prepare}` on a machine with network "
                "and the same OMNIEMBED_CACHE_DIR/HF_HOME)")
    raise WeightsNotFound(
        f"weights for model {spec.name!r} were not found. {how}.",
        param="model", model=spec.name, hint=prepare if install is None else f"{install} && {prepare}",
        detail=f"Looked in:\n  - {where}",
    )


def fingerprint(folder: Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.json")) -> str:
    """A short content hash of a weights folder: names the exact weights (model version, ONNX cache key)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in folder.rglob(pattern) if p.is_file()})
    for file in files:
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()[:16]
