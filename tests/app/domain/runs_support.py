"""Data helpers for the run / model-version tests (and the worker task tests).

Most tests use the shared ``db`` session fixture (rolled back after the test, Postgres in CI).
``file_db`` gives a test its own committed database instead, for tests that need several
connections at once (threads, task bodies opening their own sessions, worker subprocesses): a
SQLite file, or a fresh Postgres database when ``TAPESTRY_TEST_DATABASE_URL`` points at Postgres.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import Base
from app.db.models import (
    SPLIT_POOL,
    Annotation,
    Item,
    Label,
    ModelVersion,
    Project,
    User,
)
from app.db.session import make_engine, session_factory
from app.domain.model_versions import ARTIFACT_MARKER, register_version


@dataclass
class Db:
    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings

    def session(self) -> Session:
        return self.sessions()


@pytest.fixture()
def file_db(tmp_path: Path) -> Iterator[Db]:
    from tests.conftest import TEST_DATABASE_URL, FreshPostgres

    fresh = None
    if TEST_DATABASE_URL.startswith("postgres"):
        fresh = FreshPostgres(TEST_DATABASE_URL, prefix="tapestry_own")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=fresh.url if fresh else "",
        secret_key=secrets.token_urlsafe(48),
        heartbeat_seconds=0.2,
        stale_run_seconds=30.0,
        max_run_attempts=2,
    )
    settings.ensure_dirs()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    try:
        yield Db(engine, session_factory(engine), settings)
    finally:
        engine.dispose()
        if fresh is not None:
            from app.db.session import get_engine

            get_engine(settings).dispose()  # task bodies' pooled connections block DROP
            fresh.drop()


def make_project(
    session: Session, *, labels: tuple[str, ...] = ("neg", "pos"), **kw: object
) -> Project:
    project = Project(name="p", **kw)
    session.add(project)
    session.flush()
    for position, name in enumerate(labels):
        session.add(Label(project_id=project.id, name=name, position=position))
    session.flush()
    return project


def make_user(session: Session, email: str = "a@example.org") -> User:
    user = User(email=email, password_hash="x")
    session.add(user)
    session.flush()
    return user


def add_items(
    session: Session, project: Project, texts: list[str], split: str = SPLIT_POOL
) -> list[Item]:
    items = [
        Item(
            project_id=project.id,
            text=t,
            content_hash=hashlib.sha256(f"{split}:{t}".encode()).hexdigest(),
            split=split,
        )
        for t in texts
    ]
    session.add_all(items)
    session.flush()
    return items


def annotate(
    session: Session, project: Project, item: Item, label: Label, user: User | None = None
) -> Annotation:
    annotation = Annotation(
        project_id=project.id,
        item_id=item.id,
        label_id=label.id,
        annotator_id=user.id if user else None,
    )
    session.add(annotation)
    session.flush()
    return annotation


def fake_artifact(settings: Settings, name: str, *, complete: bool = True) -> str:
    """A directory standing in for a model artifact; complete ones have a card."""
    path = settings.artifacts / "projects" / name
    path.mkdir(parents=True, exist_ok=True)
    if complete:
        (path / ARTIFACT_MARKER).write_text(json.dumps({"name": name}))
    return path.relative_to(settings.artifacts).as_posix()


def add_version(
    session: Session,
    settings: Settings,
    project: Project,
    version: int,
    *,
    run_id: int | None = None,
    complete: bool = True,
) -> ModelVersion:
    return register_version(
        session,
        project.id,
        version=version,
        run_id=run_id,
        data_version=version,
        artifact_path=fake_artifact(settings, f"p{project.id}-v{version}", complete=complete),
    )
