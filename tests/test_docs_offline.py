"""``/docs`` (Swagger UI) and ``/redoc`` render with the network closed: their scripts, styles and favicon come
from the server itself, never from a CDN. Debian's chromium, driven by Playwright, against a real
``omniembed serve``; every request the pages make to anywhere but the server is refused and recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import omniembed
from service_util import Server

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium (`make test` installs it)"
)
sync_api = pytest.importorskip("playwright.sync_api")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: omniembed.Settings) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("docs-offline"), settings.cache_dir, OMNIEMBED_SERVE_MODELS="minilm",
                 OMNIEMBED_RUNTIME="torch").start()
    yield srv
    srv.stop()


def _offline_page(browser: Any, server: Server, outside: list[str]) -> Any:
    """A page whose every request off the server is aborted (and recorded in ``outside``)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(r: Any) -> None:
        if r.request.url.startswith(server.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context.new_page()


def test_the_html_names_no_other_host(server: Server) -> None:
    for path in ("/docs", "/redoc"):
        html = httpx.get(server.url + path, timeout=30).text
        assert "cdn." not in html and "https://" not in html and "fonts.googleapis" not in html, html
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css") if path == "/docs" else ("redoc.standalone.js",):
            assert asset in html
    r = httpx.get(server.url + "/static-offline-docs/swagger-ui-bundle.js", timeout=30)
    assert r.status_code == 200 and len(r.content) > 100_000 and "javascript" in r.headers["content-type"]


def test_docs_render_every_operation_offline(server: Server, tmp_path: Path) -> None:
    operations = sum(len(ops) for ops in httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"].values())
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = _offline_page(browser, server, outside)
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            shown = page.eval_on_selector_all(".opblock .opblock-summary-path", "els => els.map(e => e.textContent)")
            page.screenshot(path=str(tmp_path / "docs.png"))
            assert len(shown) == operations and "/v1/embeddings" in {s.replace("\u200b", "") for s in shown}

            page = _offline_page(browser, server, outside)
            page.goto(server.url + "/redoc")
            page.wait_for_selector("[data-section-id^='tag/']", timeout=30_000)
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "redoc.png"))
            assert "/v1/embeddings" in text and "omniembed" in text
        finally:
            browser.close()
    assert outside == [], f"the pages asked for outside resources: {outside}"
