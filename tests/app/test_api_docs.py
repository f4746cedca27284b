"""``/api/docs``: Swagger UI from the installed package, no CDN, its script allowed by the CSP."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_api_docs_page_loads_swagger_ui_from_the_app_with_the_csp_nonce(
    client: TestClient,
) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/api/docs/static/swagger-ui-bundle.js" in sources
    assert "/api/docs/static/swagger-ui.css" in sources
    assert not [s for s in sources if "://" in s], "nothing may come from another host"
    assert "'/api/openapi.json'" in page.text or '"/api/openapi.json"' in page.text
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    inline = re.findall(r"<script([^>]*)>\s*(?:\S)", page.text)
    assert inline and all(f'nonce="{nonce.group(1)}"' in attrs or "src=" in attrs
                          for attrs in inline)
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        asset = client.get(f"/api/docs/static/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
    assert client.get("/api/openapi.json").json()["info"]["title"] == "Tapestry"
