"""The public surface: ``__all__`` complete and sorted, settings read from the environment."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import omniembed


def test_all_is_sorted_and_complete() -> None:
    assert omniembed.__all__ == sorted(omniembed.__all__)
    public = {n for n, v in vars(omniembed).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public == set(omniembed.__all__) - {"__version__"}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMNIEMBED_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("OMNIEMBED_BATCH_SIZE", "7")
    monkeypatch.setenv("OMNIEMBED_DEVICE", "cpu")
    s = omniembed.Settings()
    assert (s.cache_dir, s.batch_size, s.device) == (tmp_path, 7, "cpu")
    assert s.onnx_cache_dir == tmp_path / "onnx"
    monkeypatch.setenv("OMNIEMBED_DEVICE", "gpu")
    with pytest.raises(ValueError):
        omniembed.Settings()


def test_module_functions_use_the_configured_engine(tmp_path: Path) -> None:
    engine = omniembed.configure(omniembed.Settings(cache_dir=tmp_path), batch_size=3)
    assert omniembed.get_engine() is engine and engine.settings.batch_size == 3
    e = omniembed.embed("minilm", text="hello", runtime="torch")
    batch = omniembed.embed_batch("minilm", ["hello", "world"], runtime="torch")
    assert [b.data.shape for b in batch] == [(384,), (384,)]
    assert float(e.data @ batch[0].data) > 0.9999
    assert repr(e).startswith("Embedding(model='minilm'")
