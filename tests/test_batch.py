"""embed_batch: one result per input, input order kept, bad items named by index."""

from __future__ import annotations

import random

import numpy as np
import pytest

import omniembed
from corpus import SENTENCES
from omniembed import InputTooLarge, ParameterInvalid, ParameterNotProvided


def test_batch_keeps_order_and_equals_single_calls(engine: omniembed.Engine) -> None:
    texts = SENTENCES[:24]
    random.Random(7).shuffle(texts)  # lengths out of order, so sorting by length really reorders
    batch = engine.embed_batch("minilm", texts, batch_size=5, runtime="torch")
    assert len(batch) == len(texts)
    for text, result in zip(texts, batch, strict=True):
        single = engine.embed("minilm", text=text, runtime="torch")
        np.testing.assert_allclose(result.data, single.data, atol=2e-5)
        assert result.meta.input.description == text[:80] + ("..." if len(text) > 80 else "")


def test_batch_size_does_not_change_results(engine: omniembed.Engine) -> None:
    texts = SENTENCES[:16]
    a = np.stack([e.data for e in engine.embed_batch("minilm", texts, batch_size=1, runtime="torch")])
    b = np.stack([e.data for e in engine.embed_batch("minilm", texts, batch_size=16, runtime="torch")])
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_token_budget_caps_encoder_calls_without_changing_results(settings: omniembed.Settings) -> None:
    texts = SENTENCES  # 3 to >256 tokens
    plain = omniembed.Engine(settings.model_copy(update={"max_batch_tokens": 100_000}))
    capped = omniembed.Engine(settings.model_copy(update={"max_batch_tokens": 64}))
    shapes: list[tuple[int, int]] = []
    loaded = capped.load("minilm", runtime="torch")
    inner = loaded.encoders[omniembed.Modality.TEXT]

    def recording(feeds):  # type: ignore[no-untyped-def]
        shapes.append(feeds["input_ids"].shape)
        return inner(feeds)

    loaded.encoders[omniembed.Modality.TEXT] = recording  # type: ignore[assignment]
    a = np.stack([e.data for e in plain.embed_batch("minilm", texts, batch_size=32, runtime="torch")])
    b = np.stack([e.data for e in capped.embed_batch("minilm", texts, batch_size=32, runtime="torch")])
    np.testing.assert_allclose(a, b, atol=2e-5)
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert all(rows * seq <= 64 or rows == 1 for rows, seq in shapes), shapes
    assert any(seq > 64 for _, seq in shapes) and max(rows for rows, _ in shapes) > 2  # both limits were exercised


def test_unset_token_budget_is_the_encoders_own(settings: omniembed.Settings) -> None:
    engine = omniembed.Engine(settings.model_copy(update={"max_batch_tokens": None}))
    loaded = engine.load("minilm", runtime="torch")
    inner = loaded.encoders[omniembed.Modality.TEXT]
    shapes: list[tuple[int, int]] = []

    class Recording:
        runtime, device, batch_tokens = "torch", "cpu", 48

        def __call__(self, feeds):  # type: ignore[no-untyped-def]
            shapes.append(feeds["input_ids"].shape)
            return inner(feeds)

    loaded.encoders[omniembed.Modality.TEXT] = Recording()
    engine.embed_batch("minilm", SENTENCES, batch_size=32, runtime="torch")
    assert all(rows * seq <= 48 or rows == 1 for rows, seq in shapes) and max(r for r, _ in shapes) > 2, shapes
    del Recording.batch_tokens  # no preference: the pipeline's default of 512
    shapes.clear()
    engine.embed_batch("minilm", SENTENCES, batch_size=32, runtime="torch")
    assert max(rows * seq for rows, seq in shapes) > 48 and all(r * s <= 512 or r == 1 for r, s in shapes), shapes


def test_empty_batch_gives_empty_list(engine: omniembed.Engine) -> None:
    assert engine.embed_batch("minilm", []) == []


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        ("", ParameterInvalid, "empty"),
        ("   \n\t", ParameterInvalid, "empty"),
        (None, ParameterInvalid, "None"),
        (42, ParameterInvalid, "int"),
        (b"bytes", ParameterInvalid, "bytes"),
        (["nested"], ParameterInvalid, "list"),
        ("x" * 10_000_000, InputTooLarge, "10,000,000 characters"),
    ],
)
def test_bad_item_names_its_index(engine: omniembed.Engine, bad: object, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        engine.embed_batch("minilm", ["fine", "also fine", bad])
    exc = info.value
    # the position is a field (and in str(exc)), never in the message, which each face words for its users
    assert exc.index == 2 and "2" not in exc.message.replace("10,000,000", "") and words in exc.message
    assert str(exc).startswith(f"[{exc.code}] (item 2) ")
    assert exc.code == ("input_too_large" if error is InputTooLarge else "parameter_invalid")


def test_bad_items_returned_in_place_when_asked(engine: omniembed.Engine) -> None:
    results = engine.embed_batch("minilm", ["a dog", "", "a cat", None], errors="return", runtime="torch")
    assert [type(r).__name__ for r in results] == ["Embedding", "ParameterInvalid", "Embedding", "ParameterInvalid"]
    assert [getattr(r, "index", None) for r in results] == [None, 1, None, 3]
    np.testing.assert_allclose(results[2].data, engine.embed("minilm", text="a cat", runtime="torch").data, atol=2e-5)


def test_single_embed_errors_do_not_mention_an_index(engine: omniembed.Engine) -> None:
    with pytest.raises(ParameterInvalid) as info:
        engine.embed("minilm", text="")
    assert info.value.index is None and info.value.message.startswith("the text is empty")
    assert "item" not in str(info.value)
    with pytest.raises(ParameterNotProvided):
        engine.embed("minilm")
    with pytest.raises(ParameterInvalid) as info:
        engine.embed("minilm", text=3.5)
    assert "float" in info.value.message


@pytest.mark.parametrize("texts", ["a plain string", 17, {"text": "x"}])
def test_texts_must_be_a_list(engine: omniembed.Engine, texts: object) -> None:
    with pytest.raises(ParameterInvalid) as info:
        engine.embed_batch("minilm", texts)  # type: ignore[arg-type]
    assert info.value.param == "texts"


def test_other_options_are_validated(engine: omniembed.Engine) -> None:
    for kwargs in ({"batch_size": 0}, {"normalize": "yes"}, {"pooling": "median"}, {"errors": "ignore"},
                   {"runtime": "tensorflow"}, {"device": "tpu"}):
        with pytest.raises(ParameterInvalid):
            engine.embed_batch("minilm", ["x"], **kwargs)  # type: ignore[arg-type]


def test_pooling_and_normalize_overrides(engine: omniembed.Engine) -> None:
    raw = engine.embed("minilm", text="a cat sits on the mat", normalize=False, runtime="torch")
    unit = engine.embed("minilm", text="a cat sits on the mat", runtime="torch")
    assert not raw.meta.normalized and abs(float(np.linalg.norm(raw.data)) - 1.0) > 0.01
    np.testing.assert_allclose(raw.data / np.linalg.norm(raw.data), unit.data, atol=1e-5)
    cls = engine.embed("minilm", text="a cat sits on the mat", pooling="cls", runtime="torch")
    assert cls.meta.pooling == "cls" and float(cls.data @ unit.data) < 0.99


def test_progress_is_reported_for_every_item(engine: omniembed.Engine) -> None:
    seen: list[int] = []
    engine.embed_batch("minilm", ["a", "", "b", "c"], errors="return", batch_size=2, progress=seen.append)
    assert sum(seen) == 4
