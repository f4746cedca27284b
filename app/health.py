"""``GET /healthz``: are the database and the broker reachable? 200 when both are, else 503.

Used by docker-compose healthchecks and by people with curl. Cheap on purpose: one ``SELECT 1``
and one broker round trip, each bounded by a short timeout. Never imports the ML stack.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from app.deps import OptionalUser

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    backend: str
    latency_ms: float
    error: str | None = None


def check_database(engine: Engine) -> Check:
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # the point is to report any failure, not to raise it
        return Check(False, engine.dialect.name, _ms(started), _short(exc))
    return Check(True, engine.dialect.name, _ms(started))


def check_broker(url: str, timeout: float = BROKER_TIMEOUT_SECONDS) -> Check:
    """One broker round trip: Redis ``PING``, or ``SELECT 1`` on the SQLAlchemy transport."""
    started = time.perf_counter()
    backend = url.split(":", 1)[0]
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith("sqla+"):
            engine = create_engine(url.removeprefix("sqla+"), poolclass=NullPool)
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout) as connection:
                connection.ensure_connection(max_retries=1)
    except Exception as exc:  # reported, not raised
        return Check(False, backend, _ms(started), _short(exc))
    return Check(True, backend, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


@router.get("/healthz")
def healthz(request: Request, _caller: OptionalUser) -> JSONResponse:
    database = check_database(request.app.state.engine)
    broker = check_broker(request.app.state.settings.broker_url)
    ok = database.ok and broker.ok
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "database": asdict(database),
        "broker": asdict(broker),
    }
    return JSONResponse(body, status_code=200 if ok else 503)
