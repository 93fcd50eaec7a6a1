"""Reduced precision: where it is used by default, and that its outputs stay within the stated bounds of fp32.

Stated bounds (docs/benchmarks.md): bf16 (default on CPUs with AVX512-BF16/AMX for models that declare it)
min cosine >= 0.9995 to fp32; int8 (offered, never a default) min cosine >= 0.95.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import omniembed
from conftest import cosines
from corpus import SENTENCES
from omniembed import ParameterInvalid
from omniembed.runtime import compiled
from omniembed.runtime.compiled import CompiledEncoder
from omniembed.runtime.precision import cpu_supports_bf16, resolve_precision
from omniembed.runtime.torch import TorchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from text_throughput import build_corpus

CORPUS = SENTENCES + build_corpus(128)
HAS_CXX = bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++"))
"""Ahead-of-time compilation needs a C++ compiler; without one, bf16 falls back to eager autocast."""


@pytest.fixture(scope="module")
def fp32(engine: omniembed.Engine) -> np.ndarray:
    return np.stack([e.data for e in engine.embed_batch("minilm", CORPUS, runtime="onnx", precision="fp32")])


def test_resolution_rules() -> None:
    minilm = omniembed.describe_model("minilm")
    assert minilm.auto_precision == "bf16"
    expected = ("bf16", "torch") if cpu_supports_bf16() else ("fp32", "auto")
    assert resolve_precision("auto", minilm, "auto", "cpu") == expected
    assert resolve_precision("auto", minilm, "onnx", "cpu") == ("fp32", "onnx")  # an explicit runtime wins
    assert resolve_precision("fp32", minilm, "auto", "cpu") == ("fp32", "auto")
    assert resolve_precision("int8", minilm, "auto", "cpu") == ("int8", "onnx")
    for precision, runtime in (("bf16", "onnx"), ("int8", "torch"), ("fp16", "auto")):
        with pytest.raises(ParameterInvalid):
            resolve_precision(precision, minilm, runtime, "cpu")


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
def test_auto_uses_bf16_here_and_stays_within_bound(tmp_path: Path, fp32: np.ndarray, cache_dir: Path) -> None:
    engine = omniembed.Engine(omniembed.Settings(cache_dir=cache_dir, precision="auto"))
    results = engine.embed_batch("minilm", CORPUS)
    assert {(r.meta.precision, r.meta.runtime) for r in results} == {("bf16", "torch")}
    # bf16 on CPU is compiled ahead of time (AOTInductor), cached beside the ONNX graphs.
    expected = CompiledEncoder if HAS_CXX else TorchEncoder
    assert isinstance(engine.load("minilm").encoders[omniembed.Modality.TEXT], expected)
    assert len(list(cache_dir.glob("aoti/minilm-*-bf16-*/model.pt2"))) == int(HAS_CXX)
    ours = np.stack([r.data for r in results])
    cos = cosines(ours, fp32)
    assert cos.min() >= 0.9995, (CORPUS[int(cos.argmin())], cos.min())
    assert not np.array_equal(ours, fp32)  # it really ran in reduced precision


@pytest.mark.skipif(not (cpu_supports_bf16() and HAS_CXX), reason="needs native bf16 and a C++ compiler")
def test_compiled_package_is_reused_by_a_fresh_engine(
    fp32: np.ndarray, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = omniembed.Settings(cache_dir=cache_dir, precision="bf16")
    first = np.stack([r.data for r in omniembed.Engine(settings).embed_batch("minilm", CORPUS[:40])])

    def no_compile(*args: object) -> None:
        raise AssertionError("the cached package should have been re-used")

    def no_build(self: TorchEncoder) -> None:
        raise AssertionError("a cache hit must not build the torch module")

    monkeypatch.setattr(compiled, "compile_graph", no_compile)
    monkeypatch.setattr(TorchEncoder, "module", property(no_build))
    engine = omniembed.Engine(settings)  # as after a restart
    again = np.stack([r.data for r in engine.embed_batch("minilm", CORPUS[:40])])
    assert isinstance(engine.load("minilm").encoders[omniembed.Modality.TEXT], CompiledEncoder)
    np.testing.assert_array_equal(first, again)
    assert cosines(again, fp32[:40]).min() >= 0.9995


def test_bf16_falls_back_to_eager_autocast_when_compiling_fails(
    tmp_path: Path, fp32: np.ndarray, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled, "compile_graph", broken)
    engine = omniembed.Engine(omniembed.Settings(cache_dir=tmp_path, precision="bf16"))
    with caplog.at_level(logging.WARNING):
        results = engine.embed_batch("minilm", CORPUS[:40])
    assert "no C++ compiler found" in caplog.text and "eager bf16 autocast" in caplog.text
    encoder = engine.load("minilm").encoders[omniembed.Modality.TEXT]
    assert isinstance(encoder, TorchEncoder) and encoder.bf16
    assert not list(tmp_path.glob("aoti/*/model.pt2")) and not list(tmp_path.glob("aoti/.*"))  # nothing half-made
    ours = np.stack([r.data for r in results])
    assert 0.9995 <= cosines(ours, fp32[:40]).min() < 1 - 1e-7  # within the bound, and really bf16
    # The failure is remembered: a restart does not spend the compile time again, and says how to retry.
    calls: list[object] = []
    monkeypatch.setattr(compiled, "compile_graph", lambda *args: calls.append(args))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        omniembed.Engine(omniembed.Settings(cache_dir=tmp_path, precision="bf16")).embed("minilm", text="again")
    assert not calls
    assert "failed before: RuntimeError: no C++ compiler found" in caplog.text and "to retry" in caplog.text


def test_int8_stays_within_its_stated_bound(engine: omniembed.Engine, fp32: np.ndarray, cache_dir: Path) -> None:
    results = engine.embed_batch("minilm", CORPUS, precision="int8")
    assert {(r.meta.precision, r.meta.runtime) for r in results} == {("int8", "onnx")}
    cos = cosines(np.stack([r.data for r in results]), fp32)
    assert 0.95 <= cos.min() < 0.9999, cos.min()  # within the bound, and really quantised
    assert list(cache_dir.glob("onnx/minilm-*-int8/model.onnx"))  # the quantised graph is cached


def test_torch_and_onnx_fp32_agree(engine: omniembed.Engine, fp32: np.ndarray) -> None:
    torch32 = np.stack([e.data for e in engine.embed_batch("minilm", CORPUS, runtime="torch", precision="fp32")])
    assert cosines(torch32, fp32).min() >= 0.9999
