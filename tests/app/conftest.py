"""Fixtures shared by the app tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session


@pytest.fixture()
def closing_app(app: FastAPI, db: Session) -> FastAPI:
    """``app`` whose requests end like production ones: the rows they loaded are detached after.

    The shared fixture keeps one session open across requests, so an expired row read after a
    rollback silently reloads; in a server the session is closed by then and the read raises
    ``DetachedInstanceError`` (which is how every error page once became a 500).
    """
    from app.deps import get_db

    def _closing_db() -> Iterator[Session]:
        db.commit()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            db.expunge_all()

    app.dependency_overrides[get_db] = _closing_db
    return app
