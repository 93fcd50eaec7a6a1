"""MiniLM through omniembed equals sentence-transformers' own encode, on both runtimes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import omniembed
from conftest import cosines
from corpus import SENTENCES
from omniembed.cli import app


def test_corpus_is_varied(st_model) -> None:  # type: ignore[no-untyped-def]
    lengths = [len(st_model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    assert len(SENTENCES) >= 50
    assert min(lengths) <= 4 and max(lengths) > 256  # very short and longer than the model's limit
    assert len(set(SENTENCES)) == len(SENTENCES)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_matches_sentence_transformers(engine: omniembed.Engine, st_model, runtime: str) -> None:  # type: ignore[no-untyped-def]
    reference = st_model.encode(SENTENCES, normalize_embeddings=True, batch_size=16)
    results = engine.embed_batch("minilm", SENTENCES, runtime=runtime, batch_size=8)
    ours = np.stack([r.data for r in results])
    assert ours.shape == (len(SENTENCES), 384)
    assert ours.dtype == np.float32
    cos = cosines(ours, reference)
    assert cos.min() >= 0.9999, (runtime, SENTENCES[int(cos.argmin())], cos.min())
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert {r.meta.runtime for r in results} == {runtime}
    # Different texts give different vectors: the comparison above is not trivially satisfied.
    assert cosines(ours[:1], ours[1:]).max() < 0.99


def test_cli_text_matches_reference(st_model) -> None:  # type: ignore[no-untyped-def]
    text = "a cat sits on the mat"
    result = CliRunner().invoke(app, ["embed", "minilm", "--text", text])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    vector = np.asarray(payload["embedding"], np.float32)
    assert payload["dim"] == 384 and vector.shape == (384,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5
    assert cosines(vector, st_model.encode(text, normalize_embeddings=True)) >= 0.9999
    assert payload["meta"]["normalized"] is True and payload["meta"]["model"] == "minilm"


def test_meta_describes_the_embedding(engine: omniembed.Engine) -> None:
    e = engine.embed("minilm", text="a cat sits on the mat", runtime="torch")
    m = e.meta
    assert (m.model, m.modality, m.dim, m.pooling, m.normalized) == ("minilm", "text", 384, "mean", True)
    assert m.input.length == 8 and not m.input.truncated  # [CLS] a cat sits on the mat [SEP]
    assert "max_tokens=256" in m.preprocessing and "truncate=end" in m.preprocessing
    assert len(m.model_version) == 16 and m.timings.encode_ms > 0
