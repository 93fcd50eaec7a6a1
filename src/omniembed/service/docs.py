"""``/redoc`` from the package's own ReDoc bundle (fastapi-offline ships it, and Swagger UI's for ``/docs``).

ReDoc's bundle shows a small logo it loads from its makers' CDN; the page's Content-Security-Policy keeps
images to this server, so the page makes no request off the server and still renders fully offline.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

STATIC = "/static-offline-docs"
"""Where fastapi-offline mounts its Swagger UI and ReDoc files."""

router = APIRouter(include_in_schema=False)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC}/redoc.standalone.js", redoc_favicon_url=f"{root}{STATIC}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = "img-src 'self' data: blob:"
    return page
