"""Reduced precision: where it is used by default, and that its outputs stay within the stated bounds of fp32.

Stated bounds (docs/benchmarks.md): bf16 (the default on the hardware classes a model declares it for) min
cosine >= 0.9995 to fp32; int8 (ONNX Runtime, blockwise 8-bit weights, per-row/block 8-bit activations, value
projections fp32) min cosine >= 0.999, over the test corpus and the 1,200 mixed-length docstring sentences.
Which precision ``auto`` picks is data (``ModelSpec.auto_precision``, per hardware class), tested here with fake
CPU flags; the accuracy tests run on the path the current CPU takes.
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
from omniembed.models import default_registry
from omniembed.registry import ModelSpec, WeightsSource
from omniembed.runtime import compiled
from omniembed.runtime import precision as precision_module
from omniembed.runtime.compiled import CompiledEncoder
from omniembed.runtime.precision import (
    INT8_RECIPE,
    cpu_class,
    cpu_supports_bf16,
    hardware_class,
    resolve_precision,
    verified_precisions,
)
from omniembed.runtime.torch import TorchEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from text_throughput import build_corpus, docstring_corpus

CORPUS = SENTENCES + build_corpus(128)
BOUND = {"bf16": 0.9995, "int8": 0.999}
"""The minimum cosine to fp32 each reduced precision is verified at (docs/benchmarks.md)."""
FLAGS = {
    "amx": {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"},
    "avx512_bf16": {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"},
    "avx512_vnni": {"avx2", "avx512f", "avx512_vnni"},
    "avx2": {"avx2", "fma"},
    "other": {"sse4_2"},
}
"""/proc/cpuinfo flags of one CPU of each class (Sapphire Rapids, Zen 4/5, Cascade Lake, Zen 3, an old one)."""
HAS_CXX = bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++"))
"""Ahead-of-time compilation needs a C++ compiler; without one, bf16 falls back to eager autocast."""


@pytest.fixture(scope="module")
def fp32(engine: omniembed.Engine) -> np.ndarray:
    return np.stack([e.data for e in engine.embed_batch("minilm", CORPUS, runtime="onnx", precision="fp32")])


def _spec(auto_precision: object) -> ModelSpec:
    return ModelSpec(name="fake", loader="x:y", modalities=(omniembed.Modality.TEXT,), dim=4, pooling="mean",
                     normalize=True, weights=WeightsSource(), license="-", auto_precision=auto_precision)  # type: ignore[arg-type]


@pytest.mark.parametrize("klass", list(FLAGS))
def test_auto_picks_the_verified_precision_of_each_cpu_class(klass: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(FLAGS[klass]))
    assert cpu_class() == hardware_class("cpu") == hardware_class("auto") == klass
    assert hardware_class("cuda") == "cuda"
    minilm = omniembed.describe_model("minilm")
    bf16_here = klass in ("amx", "avx512_bf16")
    assert resolve_precision("auto", minilm, "auto", "cpu") == (("bf16", "torch") if bf16_here else ("fp32", "auto"))
    assert resolve_precision("auto", minilm, "auto", "cuda") == ("bf16", "torch")
    # A model that declared int8 where it was verified: int8 runs on onnx; an explicit other runtime keeps fp32.
    table = _spec((("avx512_vnni", "int8"), ("avx2", "int8"), ("avx512_bf16", "bf16")))
    wanted = {"avx512_vnni": ("int8", "onnx"), "avx2": ("int8", "onnx"), "avx512_bf16": ("bf16", "torch")}
    assert resolve_precision("auto", table, "auto", "cpu") == wanted.get(klass, ("fp32", "auto"))
    assert resolve_precision("auto", table, "torch", "cpu")[0] == ("bf16" if klass == "avx512_bf16" else "fp32")
    int8_here = klass in ("avx512_vnni", "avx2")
    assert resolve_precision("auto", table, "onnx", "cpu")[0] == ("int8" if int8_here else "fp32")
    assert resolve_precision("auto", table, "auto", "cuda") == ("fp32", "auto")  # nothing declared for cuda
    # The single form keeps its meaning: bf16 wherever the hardware has native bf16.
    assert resolve_precision("auto", _spec("bf16"), "auto", "cpu") == (("bf16", "torch") if bf16_here else
                                                                        ("fp32", "auto"))
    assert resolve_precision("auto", _spec("fp32"), "auto", "cpu") == ("fp32", "auto")


def test_auto_precision_tables_are_checked() -> None:
    assert verified_precisions(_spec("bf16")) == {"cuda": "bf16", "amx": "bf16", "avx512_bf16": "bf16"}
    for bad in ("int8", (("avx3", "int8"),), (("avx2", "fp8"),)):
        with pytest.raises(ValueError):
            verified_precisions(_spec(bad))
    for spec in default_registry():  # every registered model declares a valid table
        verified_precisions(spec)


def test_resolution_rules() -> None:
    minilm = omniembed.describe_model("minilm")
    assert verified_precisions(minilm) == {"cuda": "bf16", "amx": "bf16", "avx512_bf16": "bf16"}
    expected = ("bf16", "torch") if cpu_class() in ("amx", "avx512_bf16") else ("fp32", "auto")
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
    assert BOUND["int8"] <= cos.min() < 0.99999, cos.min()  # within the bound, and really quantised
    # The quantised graph is cached beside the fp32 one, under the recipe's name (a new recipe, a new graph).
    assert list(cache_dir.glob(f"onnx/minilm-*-int8-{INT8_RECIPE}/model.onnx"))
    assert not list(cache_dir.glob("onnx/minilm-*-int8/model.onnx"))


def test_int8_keeps_the_vectors_of_the_mixed_length_corpus(engine: omniembed.Engine) -> None:
    """The bar corpus: 1,200 standard-library docstring sentences of 3 to 120 words (bench/text_throughput.py)."""
    texts = docstring_corpus(1200)
    assert len(texts) == 1200
    ref = np.stack([r.data for r in engine.embed_batch("minilm", texts, runtime="onnx", precision="fp32")])
    ours = np.stack([r.data for r in engine.embed_batch("minilm", texts, precision="int8")])
    cos = cosines(ours, ref)
    assert cos.min() >= BOUND["int8"], (texts[int(cos.argmin())], cos.min())


def test_int8_recipe_keeps_the_value_projections_in_fp32(engine: omniembed.Engine) -> None:
    import onnx

    fp32_path = engine.load("minilm", runtime="onnx", precision="fp32").encoders[omniembed.Modality.TEXT].path
    int8_path = engine.load("minilm", precision="int8").encoders[omniembed.Modality.TEXT].path
    source, quantised = onnx.load(str(fp32_path), load_external_data=False), onnx.load(str(int8_path))
    values = precision_module._value_projections(source)
    assert len(values) == 6  # one per layer
    ops = [n.op_type for n in quantised.graph.node]
    assert ops.count("MatMulNBits") == 30  # the other 30 weight MatMuls
    assert {n.name for n in quantised.graph.node if n.op_type == "MatMul"} >= set(values)


@pytest.mark.parametrize("spec", [s for s in default_registry() if omniembed.Modality.TEXT in s.modalities],
                         ids=lambda s: s.name)
def test_each_text_model_default_stays_within_its_verified_bound(spec: ModelSpec, cache_dir: Path) -> None:
    """Every text model with a reduced-precision default on this hardware class, on the path this CPU takes."""
    chosen = verified_precisions(spec).get(hardware_class("cpu"), "fp32")
    if chosen == "fp32":
        pytest.skip(f"{spec.name} runs fp32 by default on a {hardware_class('cpu')} CPU")
    engine = omniembed.Engine(omniembed.Settings(cache_dir=cache_dir, precision="auto"))
    results = engine.embed_batch(spec.name, CORPUS)
    assert {r.meta.precision for r in results} == {chosen}
    ref = np.stack([r.data for r in engine.embed_batch(spec.name, CORPUS, runtime="onnx", precision="fp32")])
    assert cosines(np.stack([r.data for r in results]), ref).min() >= BOUND[chosen]


def test_torch_and_onnx_fp32_agree(engine: omniembed.Engine, fp32: np.ndarray) -> None:
    torch32 = np.stack([e.data for e in engine.embed_batch("minilm", CORPUS, runtime="torch", precision="fp32")])
    assert cosines(torch32, fp32).min() >= 0.9999
