"""Schemathesis against the real server (uvicorn on 127.0.0.1, every model of the test cache loaded at start),
two ways:

- the schemathesis CLI with ``--checks all`` (``test_schemathesis_cli_all_checks``): every check, including
  that a request the schema allows is accepted (``positive_data_acceptance``) and one it forbids is refused.
  The CLI learns model names from the server's answers (``GET /v1/models``), so its requests reach every
  model; the server loads them all at start, so no request waits for a model to load. The 400s that no
  schema can judge (bytes or URLs that must be read, a dimension that must match the model, an end after a
  start) are let through by ``schemathesis_hooks.py``, one reason each, and counted in the report;
- schemathesis' Python API (``test_schemathesis_finds_nothing``): up to 25 generated requests per operation
  of each of three kinds: valid by the schema, invalid by it, and valid with real task and model names and an
  input (requests the CLI does not make: its names are random or learnt, its texts rarely real). No answer
  may be a 5xx other than a documented 503, carry a status its operation does not document, or break its
  documented schema.

Deterministic (derandomized, no shrinking, no example database), so a failure reproduces run after run. Both
write their files under pytest's tmp_path, never into the checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

import omniembed
from service_util import Server

EXAMPLES = 25
"""Generated requests per operation and kind of input."""
CLI_EXAMPLES = 50
"""The CLI's ``-n``: generated cases per operation and phase (about 5,000 requests in all)."""
DOCUMENTED_503 = {"weights_not_found", "runtime_unavailable"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings,
           engine: omniembed.Engine) -> Iterator[Server]:
    # Every model the server lists (GET /v1/models: the models whose weights are in the cache) is loaded at
    # start: the CLI names them from that list, and none of its requests may be the one that loads a model.
    served = ",".join(spec.name for spec in engine.available_specs())
    srv = Server(
        tmp_path_factory.mktemp("schemathesis-srv"), settings.cache_dir,
        # Marengo names and the image/audio routes all land on the one small model; URLs fail fast (private
        # addresses are refused, public ones are not reachable from the test machine).
        OMNIEMBED_SERVE_MODELS=served,
        OMNIEMBED_DEFAULT_IMAGE_MODEL="minilm", OMNIEMBED_DEFAULT_AUDIO_MODEL="minilm",
        OMNIEMBED_FETCH_TIMEOUT_SEC="1", OMNIEMBED_REQUEST_TIMEOUT_SEC="20",
    ).start(timeout=300)
    yield srv
    srv.stop()


def _code(body: Any) -> str | None:
    """The error code of any of the three protocol faces' error bodies."""
    if not isinstance(body, dict):
        return None
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) else None


TASKS = ["text-embedding", "text-embedding", "image-embedding", "audio-embedding"]
MODELS = ["minilm", "all-MiniLM-L6-v2", "all_minilm_l6_v2", "Marengo-retrieval-2.7"]
TRUNCATE = ["end", "start", "none"]
INPUT_KEY = {"text-embedding": "text", "image-embedding": "image", "audio-embedding": "audio"}


def _with_known_names(strategy: Any) -> Any:
    """Generated cases whose task, model names and truncation mode exist and whose body holds an input, so
    that requests get past name resolution into the embedding paths (random names end at 404)."""
    from hypothesis import strategies as st

    def apply(drawn: tuple[Any, str, str, str, str]) -> Any:
        case, task, model, truncate, text = drawn
        params = case.path_parameters or {}
        for name, value in (("task", task), ("model", model), ("model_id", model)):
            if name in params:
                params[name] = value
        path = case.operation.path
        if not isinstance(case.body, dict) or case.method.upper() != "POST":
            return case
        if path == "/v1/embeddings":
            case.body.update(model=model, input=text)
        elif path == "/v1.3/embed":
            case.body.update(model_name=model, text_truncate=truncate, text=text)
        elif path.startswith("/api/"):
            case.body[INPUT_KEY[task]] = [text] if "/batched/" in path else text
        return case

    texts = st.text(min_size=1, max_size=300)
    return st.tuples(strategy, st.sampled_from(TASKS), st.sampled_from(MODELS), st.sampled_from(TRUNCATE),
                     texts).map(apply)


def _explore(label: str, strategy: Any, base_url: str, failures: dict[str, str], seen: dict[str, int]) -> None:
    """Run one operation's generated cases; findings go to ``failures`` (the first case of each kind),
    status counts to ``seen``."""

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=30)
        where = f"{case.operation.label} ({label}) -> {response.status_code}"
        seen[f"{case.operation.label} {response.status_code}"] = seen.get(
            f"{case.operation.label} {response.status_code}", 0) + 1
        try:
            case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])
        except FailureGroup as exc:  # keep it and go on: the test reports every kind of finding at the end
            kinds = ", ".join(sorted({getattr(f, "title", type(f).__name__) for f in exc.exceptions}))
            failures.setdefault(f"{where}: {kinds}", f"{exc}\n  request: {case.as_curl_command()}")
            return
        if response.status_code >= 500:
            is_json = "json" in response.headers.get("content-type", "")
            code = _code(response.json()) if is_json else None
            if not (response.status_code == 503 and (code in DOCUMENTED_503 or case.operation.path == "/ready")):
                failures.setdefault(f"{where}: server error", f"{response.text[:300]}\n  {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert label == "negative"


def test_schemathesis_finds_nothing(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: dict[str, str] = {}
    seen: dict[str, int] = {}
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        _explore("positive", positive, server.url, failures, seen)
        _explore("negative", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), server.url, failures, seen)
        _explore("known names", _with_known_names(positive), server.url, failures, seen)
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {len(operations)} operations, up to {EXAMPLES} cases each for 3 kinds of input, "
          f"{sum(seen.values())} requests in {elapsed:.0f} s; answers: {dict(sorted(seen.items()))}")
    report = "\n".join(f"- {kind}\n{example}" for kind, example in list(failures.items())[:10])
    assert not failures, f"{len(failures)} kinds of findings:\n" + "\n".join(failures) + "\n\nfirst cases:\n" + report


def _findings(output: str) -> str:
    """The CLI's findings, each operation with its check, the status and body it got, and the summary."""
    keep = re.compile(r"^(_{3,} .* _{3,}|- ST\d+.*|\[\d{3}\].*|    `.*|.*(❌|Failures|failures|Test cases).*)$")
    return "\n".join(line for line in output.splitlines() if keep.match(line))


def test_schemathesis_cli_all_checks(server: Server, tmp_path: Path) -> None:
    """The schemathesis CLI, every check, as a user would run it: 0 findings."""
    runtime_log = tmp_path / "runtime-judged.jsonl"
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli), "run", f"{server.url}/openapi.json", "--checks", "all", "-n", str(CLI_EXAMPLES),
        "--generation-deterministic", "--no-shrink", "--continue-on-failure",
        "--phases", "examples,coverage,fuzzing", "-w", "1",  # -w 2 crashed inside hypothesis (lambda parsing)
        "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "OMNIEMBED_ST_RUNTIME_LOG": str(runtime_log),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "NO_COLOR": "1", "COLUMNS": "160"}
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    judged = [json.loads(line) for line in runtime_log.read_text().splitlines()] if runtime_log.exists() else []
    reasons = Counter(f"{j['operation']}: {j['why'][:80]}" for j in judged)
    cases = re.search(r"(\d+) generated", done.stdout)
    print(f"\nschemathesis CLI --checks all -n {CLI_EXAMPLES}: exit {done.returncode}, "
          f"{cases.group(1) if cases else '?'} cases in {elapsed:.0f} s; {len(judged)} rejected requests let "
          f"through as judged only at run time: {dict(reasons)}")
    assert done.returncode == 0, (
        f"schemathesis --checks all exited {done.returncode}:\n{_findings(done.stdout)}\n\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    )
    filtered = re.search(r"Filtered: (\d+)", done.stdout)  # the hook's log holds every finding it dropped
    assert int(filtered.group(1) if filtered else 0) == len(judged), done.stdout[-2000:]
