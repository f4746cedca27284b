"""Security headers on every response, the 500 of an unhandled error included (page and API)."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
           "Content-Security-Policy")


def test_unhandled_errors_answer_500_with_the_security_headers(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", secret_key=secrets.token_urlsafe(48)))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("unexpected")

    @app.get("/api/v1/boom")
    def api_boom() -> None:
        raise RuntimeError("unexpected")

    client = TestClient(app, raise_server_exceptions=False)
    for url in ("/boom", "/api/v1/boom", "/healthz", "/login"):
        response = client.get(url)
        missing = [name for name in HEADERS if name not in response.headers]
        assert missing == [], (url, response.status_code, missing)
    page, api = client.get("/boom"), client.get("/api/v1/boom")
    assert page.status_code == 500 and api.status_code == 500
    assert api.json()["error"]["code"] == "internal_error"
    assert "unexpected" not in page.text and "unexpected" not in api.text
