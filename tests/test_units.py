"""Small pieces with hand-computed expectations: pooling, normalisation, the model LRU, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from omniembed import errors
from omniembed.pipeline import CALL_TOKENS, _batches, normalize, pool
from omniembed.runtime import ModelCache

H = np.array([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]], np.float32)  # last position is padding
MASK = np.array([[1, 1, 0]])


def test_pooling_modes_ignore_padding() -> None:
    np.testing.assert_allclose(pool(H, MASK, "mean"), [[2.0, 4.0]])
    np.testing.assert_allclose(pool(H, MASK, "max"), [[3.0, 6.0]])
    np.testing.assert_allclose(pool(H, MASK, "cls"), [[1.0, 2.0]])
    np.testing.assert_allclose(pool(H, None, "mean"), [[104 / 3, 108 / 3]], rtol=1e-6)
    np.testing.assert_allclose(pool(np.ones((2, 3), np.float32), MASK, "mean"), np.ones((2, 3)))  # already pooled
    with pytest.raises(errors.ParameterInvalid):
        pool(H, MASK, "median")


def test_normalize_rows_and_zero_rows() -> None:
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_lru_evicts_least_recently_used() -> None:
    cache: ModelCache[str] = ModelCache(2)
    cache.get_or_load("a", lambda: "A")
    cache.get_or_load("b", lambda: "B")
    cache.get_or_load("a", lambda: "not reloaded")
    cache.get_or_load("c", lambda: "C")
    assert cache.keys() == ["a", "c"]
    with pytest.raises(ValueError):
        ModelCache(0)


def test_lru_loads_each_key_once_under_concurrency() -> None:
    cache: ModelCache[int] = ModelCache(4)
    calls: list[int] = []

    def slow_load() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 7

    threads = [threading.Thread(target=cache.get_or_load, args=("k", slow_load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and cache.get_or_load("k", lambda: 0) == 7


def test_error_tree_codes_and_index() -> None:
    assert issubclass(errors.InputTooLarge, errors.InputError)
    assert issubclass(errors.ParameterNotProvided, errors.ParameterError)
    assert all(issubclass(getattr(errors, n), errors.OmniEmbedError) for n in errors.__all__)
    codes = {getattr(errors, n).code for n in errors.__all__ if n not in {"ParameterError", "InputError"}}
    assert {"parameter_invalid", "parameter_not_provided", "model_not_found", "input_unreadable",
            "input_too_large", "weights_not_found", "runtime_unavailable"} <= codes
    original = errors.InputUnreadable("bad bytes", param="image")
    e = original.at_index(3)
    # the position is a field; the message never carries it (each face formats it in its client's terms)
    assert (e.index, e.message, e.to_dict()) == (3, "bad bytes", {"code": "input_unreadable", "message": "bad bytes",
                                                                   "param": "image", "index": 3})
    assert original.index is None and type(e) is errors.InputUnreadable  # a copy
    assert str(e) == "[input_unreadable] (item 3) bad bytes"
    assert e.shifted(10).index == 13 and e.shifted(10).message == "bad bytes" and original.shifted(5) is original
    assert e.at_index(None).to_dict() == {"code": "input_unreadable", "message": "bad bytes", "param": "image"}


def _padded_cost(batches: list[list[int]], lengths: list[int]) -> float:
    return sum(len(b) * max(lengths[r] for r in b) + CALL_TOKENS for b in batches)


def test_batches_respect_rows_and_padded_tokens() -> None:
    lengths = [3, 3, 4, 10, 10, 30, 200]
    order = list(range(len(lengths)))
    # rows only (images, audio): every batch_size rows
    assert _batches(order, lengths, 3, None) == [[0, 1, 2], [3, 4, 5], [6]]
    # at most 20 padded tokens (rows x longest): [3,3,4] = 12, +10 would be 40; [10,10] = 20; a row longer
    # than the budget goes alone
    assert _batches(order, lengths, 32, 20) == [[0, 1, 2], [3, 4], [5], [6]]
    # cheapest cuts, not greedy ones: greedy pairs [2,50][50,60] compute 220 padded tokens in 2 calls;
    # [2][50,50][60] compute 162 in 3 calls (one call is worth CALL_TOKENS = 32)
    assert _batches([0, 1, 2, 3], [2, 50, 50, 60], 2, 1000) == [[0], [1, 2], [3]]
    assert _batches([], [], 8, 64) == []


def test_batches_are_optimal_on_random_mixes() -> None:
    import itertools
    import random

    rng = random.Random(3)
    for _ in range(200):
        lengths = sorted(rng.randint(2, 60) for _ in range(rng.randint(1, 9)))
        order = list(range(len(lengths)))
        batch_size, budget = rng.randint(1, 5), rng.choice([40, 80, 160])
        got = _batches(order, lengths, batch_size, budget)
        assert [r for b in got for r in b] == order  # every row once, in order
        assert all(len(b) <= batch_size and (len(b) == 1 or len(b) * lengths[b[-1]] <= budget) for b in got)
        # brute force over every way to cut the sorted rows
        best = float("inf")
        for mask in itertools.product([False, True], repeat=len(lengths) - 1):
            cuts, start = [], 0
            for k, cut in enumerate(mask, start=1):
                if cut:
                    cuts.append(order[start:k])
                    start = k
            cuts.append(order[start:])
            if all(len(b) <= batch_size and (len(b) == 1 or len(b) * lengths[b[-1]] <= budget) for b in cuts):
                best = min(best, _padded_cost(cuts, lengths))
        assert _padded_cost(got, lengths) == best
