"""The API pages (``/docs``: Swagger UI, ``/redoc``: ReDoc) served from this host, so they work
on an air-gapped one. FastAPI's defaults load both from a CDN (a blank page offline); here its
documented self-hosting (``get_swagger_ui_html``, ``get_redoc_html``) points them at the assets
of ``fastapi-offline``, a maintained MIT wheel that ships Swagger UI's and ReDoc's bundles
(2.7 MB we do not vendor), mounted under `ASSETS`. Google Fonts stay off (another CDN)."""

from pathlib import Path
from typing import Any

from clsclip.optional import require

ASSETS = "/docs-assets"
"""Where the pages' scripts, style and icon are served (no API key: the pages are public)."""


def add_docs_pages(app: Any) -> None:
    """``/docs``, its OAuth2 redirect, and ``/redoc`` on ``app`` (made with ``docs_url=None,
    redoc_url=None``), their assets from this host."""
    offline = require("fastapi_offline", "serve", purpose="the offline API pages")
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )
    from fastapi.staticfiles import StaticFiles
    from starlette.requests import Request  # a real annotation: FastAPI reads it (no __future__)

    static = Path(str(offline.__file__)).parent / "static"
    app.mount(ASSETS, StaticFiles(directory=static), name="docs-assets")
    openapi, redirect = app.openapi_url, app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> Any:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect, swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )  # fmt: skip

    @app.get(redirect, include_in_schema=False)
    async def swagger_redirect() -> Any:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Any:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False,
        )  # fmt: skip
