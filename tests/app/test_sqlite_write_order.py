"""Issue 11, item 1: one lock order for every SQLite write, and no write on the auth path.

Token-authenticated requests used to write ``api_tokens.last_used_at`` inside the request's
transaction, outside the process write lock: holding SQLite's write lock, such a request then
queued on the process lock, while the holder of the process lock waited for SQLite's — 30 s, then
500 "database is locked". Now authenticating writes nothing, and every SQLite write of a session
first takes the process lock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, func, insert, select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import Base, utcnow
from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, SCOPE_ANNOTATE, Annotation, ApiToken, Project
from app.db.session import make_engine, session_factory, sqlite_write_lock
from app.domain import users
from app.domain.users import authenticate_token, flush_token_touches
from app.jobs import recording_jobs
from app.main import create_app
from tests.factories import make_items, make_project, make_token, make_user

CLIENTS = 20
ROUNDS = 6


@pytest.fixture()
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", secret_key=secrets.token_urlsafe(48),
                        write_rate_limit_per_minute=100_000)
    settings.ensure_dirs()
    return settings


@pytest.fixture()
def engine(sqlite_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(sqlite_settings.database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def write_statements(engine: Engine) -> list[str]:
    """Every INSERT/UPDATE/DELETE sent on ``engine`` from now on (the caller removes nothing:
    the engine is the test's own)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            seen.append(statement)

    return seen


def test_authenticating_a_token_writes_nothing_and_the_use_is_written_later(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "TOKEN_TOUCH_INTERVAL", timedelta(0))
    with Session(engine) as db:
        plaintext = make_token(db, make_user(db))
        db.commit()
    writes = write_statements(engine)
    with Session(engine) as db:
        token, _ = authenticate_token(db, plaintext, now=utcnow())
        db.commit()
        assert writes == [] and token.last_used_at is None
    with Session(engine) as db:
        assert flush_token_touches(db) >= 1
        db.commit()
        stored = db.get(ApiToken, token.id)
        assert stored is not None and stored.last_used_at is not None
    assert any("api_tokens" in statement for statement in writes)


def test_every_sqlite_write_of_a_session_holds_the_process_lock(engine: Engine) -> None:
    lock = sqlite_write_lock(engine)
    sessions = session_factory(engine)
    with sessions() as db:  # an ORM flush
        db.add(Project(name="flushed"))
        db.flush()
        assert lock.locked()
        db.commit()
        assert not lock.locked()
    with sessions() as db:  # a Core insert through the session
        db.execute(insert(Project), [{"name": "core"}])
        assert lock.locked()
        db.rollback()
        assert not lock.locked()
    with sessions() as db:  # a textual write (kombu's broker begins with BEGIN IMMEDIATE)
        db.execute(text("UPDATE projects SET name = 'renamed'"))
        assert lock.locked()
        db.rollback()
        assert not lock.locked()
    with sessions() as db:  # reads take nothing
        assert db.scalar(select(func.count()).select_from(Project)) == 1
        assert not lock.locked()


def test_concurrent_token_clients_on_sqlite_get_no_database_is_locked(
    sqlite_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 API clients with their own tokens lease and label at once on the default SQLite
    deployment; every token use counts as due for a touch. No 5xx, every label stored."""
    monkeypatch.setattr(users, "TOKEN_TOUCH_INTERVAL", timedelta(0))
    with Session(engine) as db:
        admin = make_user(db, role=ROLE_ADMIN)
        annotators = [make_user(db, role=ROLE_ANNOTATOR) for _ in range(CLIENTS)]
        project = make_project(db, lead=admin, annotators=annotators)
        make_items(db, project, [f"text number {i} about things" for i in range(CLIENTS * ROUNDS)])
        tokens = [make_token(db, a, scopes=[SCOPE_ANNOTATE]) for a in annotators]
        project_id = project.id
        db.commit()
    app = create_app(sqlite_settings)
    statuses: list[tuple[str, int, str]] = []

    async def client_loop(client: httpx.AsyncClient, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        base = f"/api/v1/projects/{project_id}"
        labelled = 0
        for n in range(ROUNDS):
            read = await client.get(base, headers=headers)
            statuses.append(("read", read.status_code, read.text[:200]))
            lease = await client.post(f"{base}/queue/lease", json={"n": 1}, headers=headers)
            statuses.append(("lease", lease.status_code, lease.text[:200]))
            if lease.status_code != 200 or not lease.json()["items"]:
                continue
            item_id = lease.json()["items"][0]["item_id"]
            name = ("positive", "negative")[n % 2]
            label = await client.post(
                f"{base}/annotations", headers=headers,
                json={"annotations": [{"item_id": item_id, "label": name}]},
            )  # fmt: skip
            statuses.append(("label", label.status_code, label.text[:200]))
            labelled += label.status_code == 200
        return labelled

    async def run_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            return await asyncio.gather(*(client_loop(c, t) for t in tokens))

    with recording_jobs():
        labelled = asyncio.run(run_all())
    failures = [s for s in statuses if s[1] != 200]
    assert failures == [], failures[:5]
    assert sum(labelled) == CLIENTS * ROUNDS
    with Session(engine) as db:
        stored = db.scalar(
            select(func.count()).select_from(Annotation)
            .where(Annotation.project_id == project_id)
        )  # fmt: skip
        assert stored == CLIENTS * ROUNDS
        assert flush_token_touches(db) >= CLIENTS  # the uses were remembered, not written
        db.commit()
        touched = db.scalar(
            select(func.count()).select_from(ApiToken).where(ApiToken.last_used_at.is_not(None))
        )
        assert touched == CLIENTS
