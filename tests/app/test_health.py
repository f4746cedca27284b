"""/healthz reports the database and the broker, and says 503 when one is down."""

from __future__ import annotations

import socket

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.health import check_broker
from app.main import create_app


def test_healthz_reports_database_and_broker(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["broker"]["ok"] is True
    assert body["broker"]["backend"] == "sqla+sqlite"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthz_is_503_when_the_broker_is_unreachable(settings: Settings, db: Session) -> None:
    broken = Settings(**(settings.model_dump() | {
        "broker_url": f"redis://127.0.0.1:{_closed_port()}/0"}))
    app: FastAPI = create_app(broken)
    response = TestClient(app).get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["broker"]["ok"] is False
    assert body["broker"]["error"]


def test_check_broker_on_unknown_scheme_reports_instead_of_raising() -> None:
    result = check_broker("amqp://127.0.0.1:1//", timeout=0.5)
    assert result.ok is False and result.error
