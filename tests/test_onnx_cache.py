"""The ONNX graph is exported once, cached on disk, and re-used by later engines without re-export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import omniembed
from omniembed.api import Loaded
from omniembed.errors import RuntimeUnavailable
from omniembed.runtime import onnx as onnx_runtime


def test_export_once_then_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = omniembed.Settings(cache_dir=tmp_path, hub_offline=True)
    exports: list[str] = []
    real_export = onnx_runtime.export_graph

    def counting_export(graph, folder):  # type: ignore[no-untyped-def]
        exports.append(graph.cache_key)
        real_export(graph, folder)

    monkeypatch.setattr(onnx_runtime, "export_graph", counting_export)
    first = omniembed.Engine(settings).embed("minilm", text="cached graphs", runtime="onnx")
    assert len(exports) == 1
    graphs = list((tmp_path / "onnx").glob("*/model.onnx"))
    assert len(graphs) == 1 and graphs[0].parent.name == exports[0]
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith(".")]  # no temp dirs left

    def no_export(graph, folder):  # type: ignore[no-untyped-def]
        raise AssertionError("the cached graph should have been re-used")

    monkeypatch.setattr(onnx_runtime, "export_graph", no_export)
    # A fresh engine (as after a restart) must load the cached graph and never build the torch module.
    engine = omniembed.Engine(settings)
    second = engine.embed("minilm", text="cached graphs", runtime="onnx")
    np.testing.assert_array_equal(first.data, second.data)
    encoder = engine.load("minilm", runtime="onnx").encoders[omniembed.Modality.TEXT]
    assert Path(encoder.path) == graphs[0]  # type: ignore[attr-defined]


def test_loaded_models_are_cached_and_bounded(tmp_path: Path) -> None:
    engine = omniembed.Engine(omniembed.Settings(cache_dir=tmp_path, max_loaded_models=1))
    a = engine.load("minilm", runtime="torch")
    assert engine.load("MiniLM", runtime="torch") is a  # alias, same loaded model
    engine.load("minilm", runtime="onnx")
    assert list(engine.loaded()) == [Loaded("minilm", "onnx", "cpu", "fp32")]  # LRU bound of 1 evicted the torch one
    assert engine.load("minilm", runtime="torch") is not a


def test_failed_export_falls_back_to_torch_only_on_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[str] = []

    def broken_export(graph, folder):  # type: ignore[no-untyped-def]
        tries.append(graph.cache_key)
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_runtime, "export_graph", broken_export)
    engine = omniembed.Engine(omniembed.Settings(cache_dir=tmp_path))
    with pytest.raises(RuntimeUnavailable) as info:
        engine.embed("minilm", text="x", runtime="onnx")
    assert "runtime='torch'" in info.value.message and "unsupported operator" in info.value.message
    e = engine.embed("minilm", text="x", runtime="auto", device="cpu")
    assert e.meta.runtime == "torch"
    assert not list((tmp_path / "onnx").iterdir())  # the failed export left nothing behind
    # the failure is remembered: later calls go straight to torch instead of exporting again each time
    assert len(tries) == 2
    again = engine.embed("minilm", text="x", runtime="auto", device="cpu")
    assert again.meta.runtime == "torch" and len(tries) == 2
    engine.unload()  # reset_runtime: the export is tried afresh
    assert engine.embed("minilm", text="x", runtime="auto", device="cpu").meta.runtime == "torch" and len(tries) == 3


def test_cuda_request_without_cuda_is_a_clear_error(engine: omniembed.Engine) -> None:
    with pytest.raises(RuntimeUnavailable) as info:
        engine.embed("minilm", text="x", device="cuda")
    assert info.value.code == "runtime_unavailable" and "cpu" in info.value.message
