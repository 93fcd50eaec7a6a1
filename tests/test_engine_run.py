"""``Engine.run(model, modality, items, options)``: the one typed entry every face calls, ``Options`` checked
where they are made, and the typed view of what the engine has loaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import omniembed
from omniembed.api import Loaded
from omniembed.contract import Options
from omniembed.embedding import Modality
from omniembed.errors import OmniEmbedError, ParameterInvalid

TEXTS = ["a cat sits on the mat", "", "the stock market fell sharply today"]


@pytest.fixture(scope="module")
def engine() -> omniembed.Engine:
    return omniembed.Engine(omniembed.Settings(runtime="torch", precision="fp32", batch_size=2))


def test_run_gives_what_embed_batch_gives_item_by_item(engine: omniembed.Engine) -> None:
    typed = engine.run("minilm", Modality.TEXT, TEXTS, Options(truncate="start"), errors="return")
    keyword = engine.embed_batch("minilm", TEXTS, truncate="start", errors="return")
    assert [type(r) for r in typed] == [type(r) for r in keyword]
    assert isinstance(typed[1], ParameterInvalid) and typed[1].index == 1
    for a, b in ((typed[0], keyword[0]), (typed[2], keyword[2])):
        assert not isinstance(a, OmniEmbedError) and not isinstance(b, OmniEmbedError)
        assert np.array_equal(a.data, b.data)
    alone = engine.embed("minilm", text=TEXTS[2]).data
    assert float(np.dot(alone, typed[2].data)) > 0.99999  # type: ignore[union-attr]


@pytest.mark.parametrize(("options", "param"), [
    ({"truncate": "middle"}, "truncate"),
    ({"normalize": "yes"}, "normalize"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"start_offset_sec": -1.0}, "start_offset_sec"),
    ({"start_offset_sec": float("nan")}, "start_offset_sec"),
    ({"segment_sec": 0}, "segment_sec"),
    ({"segment_sec": 2.0, "overlap_sec": 2.0}, "overlap_sec"),
    ({"start_offset_sec": 5.0, "end_offset_sec": 4.0}, "end_offset_sec"),
    ({"truncat": "none"}, "truncat"),
    ({"pooling": "median"}, "pooling"),
    ({"pooling": ["mean"]}, "pooling"),  # was accepted, then an unhashable batcher queue key (a 500)
])
def test_options_are_checked_where_they_are_made(options: dict[str, Any], param: str) -> None:
    with pytest.raises(ParameterInvalid) as raised:
        Options.of(**options)
    assert raised.value.param == param
    assert param in raised.value.message


def test_options_normalise_what_they_accept() -> None:
    options = Options(truncate="START", start_offset_sec=1, segment_sec=3)
    assert (options.truncate, options.start_offset_sec, options.segment_sec) == ("start", 1.0, 3.0)
    assert Options(truncate=None).truncate == "end"  # type: ignore[arg-type]
    assert hash(Options(truncate="end")) == hash(Options())  # a queue key in the server's batcher


@pytest.mark.parametrize(("modality", "options", "param"), [
    (Modality.TEXT, Options(end_offset_sec=3.0), "end_offset_sec"),
    (Modality.AUDIO, Options(embedding_option="audio"), "embedding_option"),
    (Modality.VIDEO, Options(segment_sec=2.0, overlap_sec=1.0), "overlap_sec"),
])
def test_options_for_another_modality_are_refused_before_any_model_loads(
    modality: Modality, options: Options, param: str
) -> None:
    engine = omniembed.Engine(omniembed.Settings())
    with pytest.raises(ParameterInvalid) as raised:
        engine.run("no-such-model", modality, ["x"], options)
    assert raised.value.param == param
    assert engine.loaded() == {}


def test_run_refuses_a_string_for_a_list_and_an_unknown_modality(engine: omniembed.Engine) -> None:
    with pytest.raises(ParameterInvalid) as raised:
        engine.run("minilm", Modality.TEXT, "a cat")
    assert raised.value.param == "texts"
    with pytest.raises(ParameterInvalid) as raised:
        engine.run("minilm", "text", ["a cat"])  # type: ignore[arg-type]
    assert raised.value.param == "modality"


def test_the_loaded_view_names_what_plan_said_and_what_it_runs_as() -> None:
    engine = omniembed.Engine(omniembed.Settings(runtime="torch", precision="fp32"))
    planned = engine.plan("MiniLM")  # an alias: the canonical name
    assert planned == Loaded("minilm", "torch", "cpu", "fp32")
    assert engine.loaded() == {}  # planning loads nothing
    engine.run("minilm", Modality.TEXT, ["a cat"])
    (key, model), = engine.loaded().items()
    assert key == planned and (model.runtime, model.device, model.precision) == ("torch", "cpu", "fp32")
    assert engine.unload() == 1 and engine.loaded() == {}
