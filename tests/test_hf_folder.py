"""Any sentence-transformers / Hugging Face folder works, loaded through the real code path.

A tiny randomly initialised BERT is saved with ``save_pretrained`` (plus sentence-transformers' module
files) and embedded through omniembed; transformers computes the reference directly from the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

import omniembed
from conftest import cosines
from omniembed import ParameterInvalid, WeightsNotFound

TEXTS = ["a tiny model", "another input that is a little longer than the first one", "x"]


def _save_tiny(folder: Path, minilm_dir: Path, pooling: str, normalize: bool, max_seq: int = 64) -> Path:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
    }))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq}))
    return folder


def _reference(folder: Path, texts: list[str], pooling: str) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    if pooling == "cls":
        out = hidden[:, 0]
    elif pooling == "mean":
        out = (hidden * mask).sum(1) / mask.sum(1)
    else:
        out = hidden.masked_fill(mask == 0, -1e9).max(1).values
    return out.numpy()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_local_folder_equals_transformers(tmp_path: Path, minilm_dir: Path, engine: omniembed.Engine,
                                          pooling: str, runtime: str) -> None:
    folder = _save_tiny(tmp_path / "tiny", minilm_dir, pooling, normalize=False)
    results = engine.embed_batch(str(folder), TEXTS, runtime=runtime)
    ours = np.stack([r.data for r in results])
    ref = _reference(folder, TEXTS, pooling)
    assert ours.shape == (3, 32)
    assert cosines(ours, ref).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-3)  # not normalised
    assert results[0].meta.pooling == pooling and not results[0].meta.normalized


def test_folder_settings_are_read(tmp_path: Path, minilm_dir: Path, engine: omniembed.Engine) -> None:
    folder = _save_tiny(tmp_path / "tiny", minilm_dir, "mean", normalize=True, max_seq=16)
    spec = engine.spec(str(folder))
    assert (spec.dim, spec.pooling, spec.normalize, spec.max_tokens) == (32, "mean", True, 16)
    e = engine.embed(str(folder), text="one two three " * 10, runtime="torch")
    assert e.meta.input.truncated and e.meta.input.length == 16
    assert abs(float(np.linalg.norm(e.data)) - 1.0) < 1e-5
    with pytest.raises(ParameterInvalid, match="16 tokens"):
        engine.embed(str(folder), text="one two three " * 10, truncate="none")


def test_unsupported_modules_are_named(tmp_path: Path, minilm_dir: Path, engine: omniembed.Engine) -> None:
    folder = _save_tiny(tmp_path / "tiny", minilm_dir, "mean", normalize=False)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ParameterInvalid, match="Dense"):
        engine.embed(str(folder), text="x")


def test_folder_without_model_files(tmp_path: Path, engine: omniembed.Engine) -> None:
    with pytest.raises(ParameterInvalid, match="not a model folder"):
        engine.embed(str(tmp_path), text="x")


def test_hub_id_offline_says_where_it_looked(engine: omniembed.Engine) -> None:
    with pytest.raises(WeightsNotFound) as info:
        engine.embed("someone/not-a-cached-model", text="x")
    msg = str(info.value)  # the message, and the places looked at (its log-only detail)
    assert info.value.code == "weights_not_found"
    assert "Hugging Face cache" in msg and "offline" in msg and "OMNIEMBED_MODEL_DIR" in msg
    assert "Hugging Face cache" in (info.value.detail or "") and info.value.model == "someone/not-a-cached-model"


def test_registered_model_found_in_model_dir(tmp_path: Path, minilm_dir: Path) -> None:
    """OMNIEMBED_MODEL_DIR/<name>/ is looked at before the package that ships the weights."""
    folder = _save_tiny(tmp_path / "models" / "minilm", minilm_dir, "mean", normalize=True)
    settings = omniembed.Settings(cache_dir=tmp_path / "cache", model_dir=tmp_path / "models", hub_offline=True)
    e = omniembed.Engine(settings).embed("minilm", text="x", runtime="torch")
    assert e.data.shape == (32,)  # the tiny model, not the shipped 384-d one
    assert e.meta.model_version == omniembed.weights_fingerprint(folder)


def test_missing_package_names_its_install_command(tmp_path: Path) -> None:
    """A package that must be installed in a special way says how (aisfx pins old libraries: --no-deps)."""
    from omniembed.registry import ModelSpec, WeightsSource
    from omniembed.weights import locate_weights

    spec = ModelSpec("x", "m:f", (omniembed.Modality.AUDIO,), 1, "mean", False,
                     WeightsSource(package="no_such_pkg_xyz", install="pip install --no-deps no-such-pkg-xyz"), "MIT")
    with pytest.raises(WeightsNotFound, match="pip install --no-deps no-such-pkg-xyz"):
        locate_weights(spec, omniembed.Settings(cache_dir=tmp_path, hub_offline=True))
    plain = ModelSpec("y", "m:f", (omniembed.Modality.AUDIO,), 1, "mean", False,
                      WeightsSource(package="no_such_pkg_xyz"), "MIT")
    with pytest.raises(WeightsNotFound, match=r"\(pip install no-such-pkg-xyz\)"):
        locate_weights(plain, omniembed.Settings(cache_dir=tmp_path, hub_offline=True))
