"""Two `omniembed serve` processes on one job store (one SQLite file; one PostgreSQL database) run each job
exactly once, including across a kill -9 of one of them. The store is read directly, not through the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

import omniembed
from corpus import LONG_PARAGRAPH
from service_util import Server, job_rows

LEASE_SEC = 3  # short, so the test waits little for an abandoned job; heartbeat every second
TEXTS_PER_JOB = 4


def _submit(servers: list[Server], n: int, tag: str) -> list[str]:
    ids = []
    for k in range(n):
        texts = [f"{LONG_PARAGRAPH} ({tag} {k}.{j})" for j in range(TEXTS_PER_JOB)]
        server = servers[k % len(servers)]
        r = httpx.post(f"{server.url}/api/tasks/text-embedding/batched/minilm/jobs", json={"text": texts})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def _wait(url: str, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = job_rows(url)
        if all(rows[i]["status"] in ("complete", "failed") for i in ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_two_servers_run_each_job_once_even_across_a_kill(
    store_url: str, tmp_path: Path, settings: omniembed.Settings
) -> None:
    env = {"OMNIEMBED_JOBS_DB_URL": store_url, "OMNIEMBED_JOB_LEASE_SEC": str(LEASE_SEC),
           "OMNIEMBED_JOB_CONCURRENCY": "2", "OMNIEMBED_BATCH_SIZE": "4"}
    a = Server(tmp_path, settings.cache_dir, **env).start()
    b = Server(tmp_path, settings.cache_dir, **env)
    try:
        # 1. Server b starts while a is running jobs (the old start-up requeued all of them: 2 runs each).
        first = _submit([a], 20, "first")
        deadline = time.monotonic() + 60
        while not any(r["status"] == "complete" for r in job_rows(store_url).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        done = [r for r in job_rows(store_url).values() if r["status"] == "complete"]
        assert done, "server a completed no job"
        a_id = done[0]["owner"]
        b.start()
        rows = _wait(store_url, first, timeout=90)
        assert [rows[i]["status"] for i in first] == ["complete"] * len(first)
        assert [(rows[i]["runs"], rows[i]["completions"]) for i in first] == [(1, 1)] * len(first)
        owners = {rows[i]["owner"] for i in first}
        assert len(owners) == 2, "server b never ran a job: it started after a had finished them all"
        (b_id,) = owners - {a_id}

        # 2. kill -9 server a while it runs jobs: b resumes exactly those once their lease lapses.
        second = _submit([a, b], 14, "second")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = job_rows(store_url)
            running_on_a = [i for i in second if rows[i]["status"] == "running" and rows[i]["owner"] == a_id]
            if running_on_a and sum(rows[i]["status"] == "complete" for i in second) >= 2:
                break
            time.sleep(0.02)
        a.kill()
        killed_at = time.monotonic()
        snapshot = job_rows(store_url)
        abandoned = {i for i in second if snapshot[i]["status"] == "running" and snapshot[i]["owner"] == a_id}
        assert abandoned, "the kill must land while server a runs jobs"
        assert any(snapshot[i]["status"] == "starting" for i in second), "the kill must land before the end"

        rows = _wait(store_url, second, timeout=90)
        assert [rows[i]["status"] for i in second] == ["complete"] * len(second)  # none lost
        assert all(rows[i]["completions"] == 1 for i in second)  # none finished twice
        runs = {i: rows[i]["runs"] for i in second}
        assert {i for i, n in runs.items() if n == 2} == abandoned  # only a's running jobs ran again
        assert set(runs.values()) <= {1, 2}
        assert all(rows[i]["owner"] == b_id for i in abandoned)
        # each job resumed only once its own lease had lapsed, never while a was alive (leases differ per job:
        # each was claimed or renewed at its own time, so b may resume one before another's lease lapses)
        early = {i: snapshot[i]["lease_until"] - rows[i]["started_at"] for i in abandoned}
        assert all(d <= 0.05 for d in early.values()), early
        assert time.monotonic() - killed_at < 60

        # results are readable through the surviving server, and right
        got = httpx.get(f"{b.url}/api/tasks/text-embedding/batched/jobs/{sorted(abandoned)[0]}").json()
        assert got["status"] == "complete" and len(got["result"]) == TEXTS_PER_JOB
        assert len(got["result"][0]["embedding"]) == 384
    finally:
        for server in (a, b):
            if server.proc is not None:
                server.stop()
