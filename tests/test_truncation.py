"""Truncation as TwelveLabs defines it: end (default) keeps the start, start keeps the end, none errors."""

from __future__ import annotations

import numpy as np
import pytest

import omniembed
from omniembed import InputTooLarge, ParameterInvalid

FILLER = " ".join(["the river kept rising through the valley all night"] * 40)  # ~400 tokens


def _vec(engine: omniembed.Engine, text: str, truncate: str) -> np.ndarray:
    return engine.embed("minilm", text=text, truncate=truncate, runtime="torch").data


def test_end_keeps_the_beginning(engine: omniembed.Engine) -> None:
    a = _vec(engine, FILLER + " cats are wonderful pets", "end")
    b = _vec(engine, FILLER + " the stock market crashed", "end")
    np.testing.assert_allclose(a, b, atol=1e-6)  # the differing endings were cut
    c = _vec(engine, "cats are wonderful pets " + FILLER, "end")
    assert float(a @ c) < 0.9999


def test_start_keeps_the_end(engine: omniembed.Engine) -> None:
    a = _vec(engine, "cats are wonderful pets " + FILLER, "start")
    b = _vec(engine, "the stock market crashed " + FILLER, "start")
    np.testing.assert_allclose(a, b, atol=1e-6)  # the differing beginnings were cut
    c = _vec(engine, FILLER + " cats are wonderful pets", "start")
    assert float(a @ c) < 0.9999


def test_default_is_end_and_marks_truncation(engine: omniembed.Engine) -> None:
    e = engine.embed("minilm", text=FILLER, runtime="torch")
    assert e.meta.input.truncated and e.meta.input.length == 256
    np.testing.assert_allclose(e.data, _vec(engine, FILLER, "end"), atol=1e-6)
    short = engine.embed("minilm", text="short text", truncate="none", runtime="torch")
    assert not short.meta.input.truncated


def test_none_rejects_too_long_text_naming_the_limit(engine: omniembed.Engine) -> None:
    with pytest.raises(ParameterInvalid) as info:
        engine.embed("minilm", text=FILLER, truncate="none")
    assert info.value.code == "parameter_invalid"
    assert "256" in info.value.message and "truncate" in info.value.message


def test_none_accepts_text_exactly_at_the_limit(engine: omniembed.Engine) -> None:
    text = " ".join(["cat"] * 254)  # 254 words + [CLS] + [SEP] = 256 tokens
    e = engine.embed("minilm", text=text, truncate="none", runtime="torch")
    assert e.meta.input.length == 256
    with pytest.raises(ParameterInvalid):
        engine.embed("minilm", text=text + " cat", truncate="none")


@pytest.mark.parametrize("bad", ["middle", "END ", "", 3, True])
def test_invalid_truncate_values(engine: omniembed.Engine, bad: object) -> None:
    with pytest.raises(ParameterInvalid) as info:
        engine.embed("minilm", text="hello", truncate=bad)  # type: ignore[arg-type]
    assert "none, start, end" in info.value.message and info.value.param == "truncate"


def test_truncate_is_case_insensitive(engine: omniembed.Engine) -> None:
    e = engine.embed("minilm", text="hello", truncate="END", runtime="torch")
    assert "truncate=end" in e.meta.preprocessing


def test_in_a_batch_only_the_too_long_item_fails(engine: omniembed.Engine) -> None:
    results = engine.embed_batch("minilm", ["ok", FILLER, "fine"], truncate="none", errors="return")
    assert isinstance(results[0], omniembed.Embedding) and isinstance(results[2], omniembed.Embedding)
    assert isinstance(results[1], ParameterInvalid) and results[1].index == 1
    assert not isinstance(results[1], InputTooLarge)
