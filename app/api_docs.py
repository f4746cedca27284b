"""The interactive API docs (Swagger UI) at ``/api/docs``, served by Tapestry itself.

FastAPI's default page loads Swagger UI from a CDN and starts it with an inline script: offline
the page stays blank, and the Content-Security-Policy (``app.security.headers``) refuses both
the CDN and the inline script anyway. Here the script and stylesheet come from the copy of
swagger-ui-dist that the ``fastapi-offline`` package ships (MIT; only its files are used), and
the page's inline script carries the request's CSP nonce.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.security.headers import NONCE_SCOPE_KEY

DOCS_URL = "/api/docs"
STATIC_URL = "/api/docs/static"


def swagger_ui_directory() -> str:
    """The installed swagger-ui-dist files (``swagger-ui-bundle.js``, ``swagger-ui.css``)."""
    return str(files("fastapi_offline") / "static")


def install_api_docs(app: FastAPI) -> None:
    """Mount the Swagger UI files and the page (the app is created with ``docs_url=None``)."""
    app.mount(STATIC_URL, StaticFiles(directory=swagger_ui_directory()), name="api-docs-static")
    openapi_url = app.openapi_url or "/api/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
        )
        nonce = request.scope.get("state", {}).get(NONCE_SCOPE_KEY, "")
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(html)
