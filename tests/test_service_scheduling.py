"""How the service schedules work (issue 25): each model has its own inference thread, so a model being
prepared or running a long batch never holds up another model's requests; durable jobs wait their turn
instead of failing with the request deadline or a full queue, and requests stay answered meanwhile;
/metrics answers while the job store is down. Fake engines (they implement ``Engine.run``) make the timing
deterministic; tests/test_service_jobs.py runs the job reproduction against a real server too."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omniembed
from omniembed.embedding import Embedding, EmbeddingMeta, InputInfo, Modality
from omniembed.registry import ModelSpec, Registry, WeightsSource
from omniembed.service.batcher import Batcher
from omniembed.service.jobs import JobRunner, JobStore
from omniembed.service.metrics import Metrics

TEXT = Modality.TEXT


def _vector(value: float) -> Embedding:
    meta = EmbeddingMeta(model="m", model_version="", modality=TEXT, dim=2, pooling="mean", normalized=False,
                         preprocessing="", input=InputInfo("text", ""), runtime="fake", device="cpu")
    return Embedding(np.array([value, 1.0], dtype=np.float32), meta)


@dataclass
class _Engine:
    """Models ``a`` and ``b`` (text). ``block[model]`` holds that model's batches until set; every batch
    takes ``delay`` seconds; an item ``"n"`` embeds as ``[float(n), 1]``."""

    settings: omniembed.Settings
    delay: float = 0.0
    block: dict[str, threading.Event] = field(default_factory=dict)
    started: dict[str, threading.Event] = field(default_factory=dict)
    threads: dict[str, set[str]] = field(default_factory=dict)
    batches: list[tuple[str, list[Any]]] = field(default_factory=list)

    def served_spec(self, model: str, modality: Modality | None = None) -> ModelSpec:
        return ModelSpec(model, "", (TEXT,), 2, "mean", False, WeightsSource(), "")

    def run(self, model: str, modality: Modality, items: list[Any], options: Any = None, **_: Any) -> list[Any]:
        self.threads.setdefault(model, set()).add(threading.current_thread().name)
        self.started.setdefault(model, threading.Event()).set()
        if model in self.block:
            self.block[model].wait(30)
        time.sleep(self.delay)
        self.batches.append((model, list(items)))
        return [_vector(float(x)) for x in items]


def _batcher(**settings: Any) -> tuple[Batcher, _Engine]:
    engine = _Engine(omniembed.Settings(**settings))
    return Batcher(engine, Metrics()), engine  # type: ignore[arg-type]


# -- defect 6: one model's preparation or long batch does not hold up another model ------------------------


def test_a_blocked_model_does_not_hold_up_another_models_requests() -> None:
    """Model a's batch (standing in for a long batch, or its first load: Engine.run loads the model on the
    same thread) blocks; a request for model b is answered meanwhile. On one shared inference thread (before
    the fix) b's request waited for a's batch and timed out here."""

    async def main() -> None:
        batcher, engine = _batcher(max_batch_wait_ms=0)
        engine.block["a"] = threading.Event()
        try:
            slow = asyncio.ensure_future(batcher.embed("a", TEXT, ["1"]))
            assert await asyncio.to_thread(engine.started.setdefault("a", threading.Event()).wait, 10)
            fast = await asyncio.wait_for(batcher.embed("b", TEXT, ["2", "3"]), 5)
            assert [r.vector.tolist() for r in fast if isinstance(r, Embedding)] == [[2.0, 1.0], [3.0, 1.0]]
            assert not slow.done()  # a is still blocked while b answered
            engine.block["a"].set()
            (one,) = await slow
            assert isinstance(one, Embedding) and one.vector.tolist() == [1.0, 1.0]
            assert engine.threads["a"].isdisjoint(engine.threads["b"])  # each model on its own thread
            assert batcher.threads == ["a", "b"]
        finally:
            engine.block["a"].set()
            await batcher.close()

    asyncio.run(main())


def test_preparing_a_model_runs_on_its_own_thread() -> None:
    """A start-up load (``run_model``, as ``_preload`` does) blocks model a's thread only: model b answers."""

    async def main() -> None:
        batcher, _engine = _batcher(max_batch_wait_ms=0)
        release, loading = threading.Event(), threading.Event()

        def load() -> str:
            loading.set()
            release.wait(30)
            return threading.current_thread().name

        try:
            load_a = batcher.run_model("a", load)
            assert await asyncio.to_thread(loading.wait, 10)
            answer = await asyncio.wait_for(batcher.embed("b", TEXT, ["5"]), 5)
            assert isinstance(answer[0], Embedding) and answer[0].vector.tolist() == [5.0, 1.0]
            release.set()
            assert (await load_a).startswith("omniembed-a")
        finally:
            release.set()
            await batcher.close()

    asyncio.run(main())


_overlap: dict[str, Any] = {"active": 0, "most": 0, "loads": []}
_overlap_lock = threading.Lock()


def slow_loader(spec: ModelSpec, *_: Any) -> str:
    """A model "loader" (``ModelSpec.loader`` names it) that takes a while and records how many run at once."""
    with _overlap_lock:
        _overlap["active"] += 1
        _overlap["most"] = max(_overlap["most"], _overlap["active"])
        _overlap["loads"].append(spec.name)
    time.sleep(0.2)
    with _overlap_lock:
        _overlap["active"] -= 1
    return f"loaded {spec.name}"


def test_engine_loads_different_models_from_two_threads_one_at_a_time(tmp_path: Path) -> None:
    """Two threads load models a and b (twice each) at once: each model loads once, both end up cached,
    and the two preparations never overlap (torch's exporters and the preparation step's stdout redirect
    are process-wide)."""
    specs = [ModelSpec(n, f"{__name__}:slow_loader", (TEXT,), 2, "mean", False, WeightsSource(), "")
             for n in ("a", "b")]
    engine = omniembed.Engine(omniembed.Settings(cache_dir=tmp_path, data_dir=tmp_path, runtime="torch",
                                                 device="cpu", precision="fp32", hub_offline=True),
                              registry=Registry(specs))
    _overlap.update(active=0, most=0, loads=[])
    got: dict[int, Any] = {}
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, engine.load("ab"[k % 2]))) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == {0: "loaded a", 1: "loaded b", 2: "loaded a", 3: "loaded b"}
    assert sorted(_overlap["loads"]) == ["a", "b"] and _overlap["most"] == 1
    assert sorted(k.model for k in engine.loaded()) == ["a", "b"]


# -- defect 2: durable jobs wait their turn ----------------------------------------------------------------


CONFIGS = [{}, {"truncate": "start"}, {"normalize": False}, {"pooling": "max"}]
"""Job options: one queue each."""


def test_jobs_wait_for_room_and_requests_stay_answered(tmp_path: Path) -> None:
    """Issue 25's reproduction, scaled down: 40 queued jobs (30 of 16 texts with four sets of options, so in
    four queues; 10 single) on a queue of 16 items with a 0.5 s request deadline and a model that
    takes 30 ms a batch (about 1 s of work in all). Every job completes with the right vectors (none fails as
    request_timeout or too_many_requests, as 28 of 40 did before), and a full request sent meanwhile (with
    options of its own: a fifth queue) is answered within its deadline, its batch run right after the one
    being encoded when it came, before the job batches waiting in the four job queues."""
    batcher, engine = _batcher(queue_size=16, max_items_per_request=16, request_timeout_sec=0.5, batch_size=2,
                               max_batch_wait_ms=1)
    engine.delay = 0.03
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", ttl_sec=600)
    long = [store.create("text-embedding", "a", True, {"inputs": [str(100 * k + j) for j in range(16)],
                                                       "config": CONFIGS[k % len(CONFIGS)]})
            for k in range(30)]
    single = [store.create("text-embedding", "a", False, {"inputs": [str(k)]}) for k in range(10)]

    async def main() -> tuple[list[Any], int]:
        runner = JobRunner(store, batcher, concurrency=32, grace_sec=1, lease_sec=3)
        await runner.start()
        try:
            while len(engine.batches) < 2:
                await asyncio.sleep(0.01)
            before = len(engine.batches)
            answer = await batcher.embed("a", TEXT, ["7"] * 16, pooling="cls")  # a full request, jobs queued
            ahead = [items for _m, items in engine.batches[before:]].index(["7"] * 16)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and store.counts().keys() - {"complete", "failed"}:
                await asyncio.sleep(0.05)
            return answer, ahead
        finally:
            await runner.stop()
            await batcher.close()

    answer, ahead = asyncio.run(main())
    assert [r.vector.tolist() for r in answer if isinstance(r, Embedding)] == [[7.0, 1.0]] * 16
    # the batch being encoded when it came (and at most one handed the model's turn while the request's batch
    # formed), not every job queue's waiting batch (4 went first when batches ran in arrival order)
    assert ahead <= 2
    rows = {i: store.get(i) for i in long + single}
    assert {i: r["status"] for i, r in rows.items() if r} == {i: "complete" for i in long + single}, \
        {r["error"] for r in rows.values() if r and r["error"]}
    for k, i in enumerate(long):
        row = rows[i]
        assert row is not None and row["runs"] == 1 and row["completions"] == 1
        assert [v["embedding"] for v in json.loads(row["result"])] == [[100 * k + j, 1.0] for j in range(16)]
    assert [json.loads(rows[i]["result"])["embedding"] for i in single] == [[k, 1.0] for k in range(10)]  # type: ignore[index]
    assert max(len(items) for _m, items in engine.batches) <= 16  # never more job items than a queue holds


def _run_jobs(store: JobStore, batcher: Batcher, timeout: float | None = None) -> None:
    """Run a job runner until every job in ``store`` has finished (at most 20 s)."""

    async def main() -> None:
        runner = JobRunner(store, batcher, concurrency=2, grace_sec=1, lease_sec=3, timeout_sec=timeout)
        await runner.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and store.counts().keys() - {"complete", "failed"}:
            await asyncio.sleep(0.05)
        await runner.stop()
        await batcher.close()

    asyncio.run(main())


def test_a_job_deadline_is_its_own_setting(tmp_path: Path) -> None:
    """``job_timeout_sec`` (not the request deadline) fails a job that takes longer, naming the setting."""
    batcher, engine = _batcher(request_timeout_sec=0.05, max_batch_wait_ms=0)
    engine.delay = 0.3
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", ttl_sec=600)
    ok = store.create("text-embedding", "a", False, {"inputs": ["1"]})

    _run_jobs(store, batcher, timeout=5.0)  # 0.3 s of work: over the request deadline, within the job's
    row = store.get(ok)
    assert row is not None and row["status"] == "complete" and json.loads(row["result"]) == {"embedding": [1.0, 1.0]}
    late = store.create("text-embedding", "a", False, {"inputs": ["2"]})
    batcher, engine = _batcher(max_batch_wait_ms=0)
    engine.delay = 1.0
    _run_jobs(store, batcher, timeout=0.2)
    row = store.get(late)
    assert row is not None and row["status"] == "failed"
    error = json.loads(row["error"])
    assert error["code"] == "request_timeout" and "OMNIEMBED_JOB_TIMEOUT_SEC" in error["message"]


# -- defect 7: /metrics while the job store is down ---------------------------------------------------------


def test_metrics_answer_while_the_job_store_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's database goes away (a PostgreSQL URL to a closed port): /metrics still answers 200, with
    omniembed_job_store_up 0 and no job counts; once the store is back, 1 and the counts. Before: a 500."""
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    from omniembed.service import create_app
    from service_util import free_port

    settings = omniembed.Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path, hub_offline=True,
                                  serve_models=[], joint_model="none")
    app = create_app(settings)
    state = app.state.omniembed
    with TestClient(app, raise_server_exceptions=False) as client:
        state.store.create("text-embedding", "nowhere", False, {"inputs": ["x"]})
        working = state.store.db
        monkeypatch.setattr(state.store, "db", create_engine(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x"))
        down = client.get("/metrics")
        assert down.status_code == 200, down.text
        assert "omniembed_job_store_up 0.0" in down.text and 'omniembed_jobs{status="' not in down.text
        assert "omniembed_requests_total" in down.text  # the rest of the metrics are there
        monkeypatch.setattr(state.store, "db", working)
        again = client.get("/metrics").text
        assert "omniembed_job_store_up 1.0" in again and 'omniembed_jobs{status="' in again


def test_a_jobs_item_error_names_its_position_across_chunks(tmp_path: Path) -> None:
    """A job longer than a queue goes in chunks of one queue (4 items): its progress is recorded as they
    finish (4/10, then 8/10), and an item's error keeps its position in the whole job (the third chunk's)."""

    @dataclass
    class _Failing(_Engine):
        def run(self, model: str, modality: Modality, items: list[Any], options: Any = None, **_: Any) -> list[Any]:
            return [omniembed.InputUnreadable("cannot decode this text", index=k) if x == "bad" else _vector(1.0)
                    for k, x in enumerate(items)]

    engine = _Failing(omniembed.Settings(queue_size=4, max_items_per_request=4, max_batch_wait_ms=0))
    batcher = Batcher(engine, Metrics())  # type: ignore[arg-type]
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", ttl_sec=600)
    job = store.create("text-embedding", "a", True, {"inputs": ["ok"] * 9 + ["bad"]})

    _run_jobs(store, batcher)
    row = store.get(job)
    assert row is not None and row["status"] == "failed"
    assert json.loads(row["error"]) == {"code": "input_unreadable", "message": "cannot decode this text", "index": 9}
    assert row["progress"] == pytest.approx(0.8)


# -- a TwelveLabs image task is a durable job too ------------------------------------------------------------


class _ImageEngine(_Engine):
    def served_spec(self, model: str, modality: Modality | None = None) -> ModelSpec:
        return ModelSpec(model, "", (Modality.IMAGE,), 2, "mean", False, WeightsSource(), "")


def test_an_image_task_waits_its_turn_past_the_request_deadline() -> None:
    """An image embedding task (TwelveLabs Embed v2 or v1 tasks) runs through run_plan(job=True): its model's
    batch is held past the request deadline (0.3 s), and the task still completes; the same call as a
    request (job=False, the synchronous Embed v2 route) answers request_timeout. Before, tasks used the
    request lane and failed like the request."""
    from omniembed.service.twelvelabs.tasks import MediaPlan, run_plan

    @dataclass
    class _State:
        batcher: Batcher

        def require_batcher(self) -> Batcher:
            return self.batcher

    async def main() -> None:
        engine = _ImageEngine(omniembed.Settings(request_timeout_sec=0.3, max_batch_wait_ms=0))
        state = _State(Batcher(engine, Metrics()))  # type: ignore[arg-type]
        plan = MediaPlan(model_name="m", input_type="image", models={"visual": "img"}, scopes=["asset"])
        try:
            engine.block["img"] = threading.Event()
            with pytest.raises(omniembed.OmniEmbedError) as timed_out:
                await run_plan(state, plan, "4")  # type: ignore[arg-type]
            assert timed_out.value.code == "request_timeout"
            engine.block["img"].set()
            engine.block["img"] = threading.Event()
            task = asyncio.ensure_future(run_plan(state, plan, "5", job=True))  # type: ignore[arg-type]
            await asyncio.sleep(0.8)  # well past the request deadline
            assert not task.done()
            engine.block["img"].set()
            result = await asyncio.wait_for(task, 10)
            assert [s["vector"] for s in result["segments"]] == [[5.0, 1.0]]
        finally:
            for event in engine.block.values():
                event.set()
            await state.batcher.close()

    asyncio.run(main())
