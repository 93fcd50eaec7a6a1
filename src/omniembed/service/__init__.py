"""The HTTP service: OpenAI, TwelveLabs and feature-extraction-server protocols over one engine.

``create_app`` is imported lazily so that ``import omniembed`` (which needs only the schemas here for
``omniembed.Client``) does not import FastAPI or SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from omniembed.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    from omniembed.service.app import create_app as _create_app

    return _create_app(settings)


