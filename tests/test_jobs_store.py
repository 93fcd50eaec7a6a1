"""The job store's lease protocol on SQLite and on a real PostgreSQL server, and the runner's error records.

Fast: no model, no HTTP. Several ``JobStore`` objects on one database stand for several servers (each has
its own connections, as separate processes would).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omniembed.embedding import Modality
from omniembed.errors import InputUnreadable, OmniEmbedError
from omniembed.service.jobs import JobRunner, JobStore


def _new(store: JobStore, n: int, model: str = "minilm") -> list[str]:
    return [store.create("text-embedding", model, False, {"inputs": [f"t{i}"], "config": {}}) for i in range(n)]


def test_claim_lease_and_finish_by_owner_only(store_url: str) -> None:
    a, b = JobStore(store_url, ttl_sec=60), JobStore(store_url, ttl_sec=60)
    ids = _new(a, 3)
    got_a = a.claim("runner-a", 2, lease_sec=30)
    assert [r["id"] for r in got_a] == ids[:2]  # oldest first
    assert all(r["owner"] == "runner-a" and r["runs"] == 1 and r["status"] == "running" for r in got_a)
    assert all(r["lease_until"] > time.time() + 25 for r in got_a)
    got_b = b.claim("runner-b", 5, lease_sec=30)
    assert [r["id"] for r in got_b] == ids[2:]
    assert b.claim("runner-b", 5, lease_sec=30) == []

    assert b.finish("runner-b", ids[0], result={"embedding": [1.0]}) is False  # not b's job
    assert a.get(ids[0])["status"] == "running"
    assert a.finish("runner-a", ids[0], result={"embedding": [1.0]}) is True
    assert a.finish("runner-a", ids[0], result={"embedding": [2.0]}) is False  # never twice
    row = b.get(ids[0])
    assert row is not None and row["status"] == "complete" and row["completions"] == 1 and row["runs"] == 1
    assert json.loads(row["result"]) == {"embedding": [1.0]}

    assert a.requeue_expired() == 0 and b.requeue_expired() == 0  # live leases are never taken
    assert b.release("runner-b", [ids[1]]) == 0  # b cannot put a's job back
    assert a.release("runner-a", [ids[1]]) == 1
    assert a.get(ids[1])["status"] == "starting"
    assert a.counts() == {"complete": 1, "running": 1, "starting": 1}


def test_only_expired_leases_are_requeued(store_url: str) -> None:
    a, b = JobStore(store_url, ttl_sec=60), JobStore(store_url, ttl_sec=60)
    ids = _new(a, 2)
    assert len(a.claim("runner-a", 2, lease_sec=1.0)) == 2
    for _ in range(4):  # a heartbeat keeps the leases alive past their first expiry
        time.sleep(0.25)
        assert a.renew("runner-a", ids, lease_sec=1.0) == set(ids)
        assert b.requeue_expired() == 0
    a.finish("runner-a", ids[0], result={"embedding": [0.0]})
    time.sleep(1.3)  # runner a "dies": no more renewals
    assert b.requeue_expired() == 1
    assert a.renew("runner-a", ids, lease_sec=1.0) == set()  # a has lost its lease
    taken = b.claim("runner-b", 5, lease_sec=30)
    assert [r["id"] for r in taken] == [ids[1]] and taken[0]["runs"] == 2
    assert a.finish("runner-a", ids[1], result={"embedding": [9.0]}) is False  # the stale owner is refused
    assert b.finish("runner-b", ids[1], result={"embedding": [1.0]}) is True
    rows = {i: b.get(i) for i in ids}
    assert [(r["completions"], r["runs"]) for r in rows.values() if r] == [(1, 1), (1, 2)]


def test_concurrent_claims_take_each_job_once(store_url: str) -> None:
    """Six stores (six 'servers') race to claim and finish 240 jobs: each is claimed and finished once."""
    seed = JobStore(store_url, ttl_sec=60)
    ids = _new(seed, 240)
    stores = [JobStore(store_url, ttl_sec=60) for _ in range(6)]
    claimed: list[list[str]] = [[] for _ in stores]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def work(k: int) -> None:
        try:
            start.wait()
            while rows := stores[k].claim(f"runner-{k}", 3, lease_sec=30):
                for row in rows:
                    claimed[k].append(row["id"])
                    assert stores[k].finish(f"runner-{k}", row["id"], result={"embedding": [float(k)]})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    every = Counter(i for c in claimed for i in c)
    assert sorted(every) == sorted(ids) and set(every.values()) == {1}
    assert sum(bool(c) for c in claimed) >= 2  # the race really was between several runners
    rows = [seed.get(i) for i in ids]
    assert all(r is not None and (r["status"], r["runs"], r["completions"]) == ("complete", 1, 1) for r in rows)


def test_active_jobs_and_key_hash(store_url: str) -> None:
    store = JobStore(store_url, ttl_sec=60)
    mine = store.create("text-embedding", "minilm", True, {"inputs": ["x"]}, key_hash="ab" * 32)
    _new(store, 1, model="clip-vit-b32")
    assert store.get(mine)["key_hash"] == "ab" * 32
    assert store.active("minilm") == [{"id": mine, "status": "starting", "key_hash": "ab" * 32}]


class _Vector:
    vector = np.ones(2, "float32")  # all that a job's result payload reads from an Embedding


class _FakeBatcher:
    """Stands in for the batcher: 'bad' items fail with their position as a field, 'boom' raises."""

    async def embed(self, model: str, modality: Modality, items: list[str], **options: Any) -> list[Any]:
        await asyncio.sleep(0.01)
        if "boom" in items:
            raise RuntimeError("a defect")
        if "all-wrong" in items:
            raise InputUnreadable("the whole request is unusable")
        out: list[_Vector | OmniEmbedError] = []
        for i, item in enumerate(items):
            out.append(InputUnreadable("cannot decode this text", index=i) if item == "bad" else _Vector())
        return out


def test_runner_records_structured_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", ttl_sec=60)
    jobs = {
        "ok": store.create("text-embedding", "m", True, {"inputs": ["a", "b"]}),
        "batched_bad": store.create("text-embedding", "m", True, {"inputs": ["a", "b", "bad"]}),
        "single_bad": store.create("text-embedding", "m", False, {"inputs": ["bad"]}),
        "whole": store.create("text-embedding", "m", True, {"inputs": ["all-wrong"]}),
        "boom": store.create("text-embedding", "m", False, {"inputs": ["boom"]}),
    }

    async def run() -> JobRunner:
        runner = JobRunner(store, _FakeBatcher(), concurrency=4, grace_sec=1, lease_sec=3)
        await runner.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and store.counts().keys() - {"complete", "failed"}:
            await asyncio.sleep(0.05)
        await runner.stop()
        return runner

    with caplog.at_level(logging.ERROR, logger="omniembed.service.jobs"):
        runner = asyncio.run(run())
    rows = {name: store.get(i) for name, i in jobs.items()}
    assert all(r is not None and r["completions"] == 1 and r["owner"] == runner.runner_id for r in rows.values())
    errors = {name: json.loads(r["error"]) for name, r in rows.items() if r and r["error"]}
    assert json.loads(rows["ok"]["result"]) == [{"embedding": [1.0, 1.0]}] * 2
    assert errors["batched_bad"] == {"code": "input_unreadable", "message": "cannot decode this text", "index": 2}
    assert errors["single_bad"] == {"code": "input_unreadable", "message": "cannot decode this text"}
    assert errors["whole"] == {"code": "input_unreadable", "message": "the whole request is unusable"}
    boom = errors["boom"]
    assert boom["code"] == "internal_error" and boom["incident"] in boom["message"]
    assert "RuntimeError" not in boom["message"]  # the client sees an incident id, the log the traceback
    logged = [r for r in caplog.records if boom["incident"] in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and "a defect" in str(logged[0].exc_info[1])
