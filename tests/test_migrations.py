"""Alembic: upgrade -> downgrade -> upgrade works, and the migrations equal the models exactly.

Runs on SQLite always and on Postgres (marker ``postgres``; skipped locally without a server,
failing in CI). "Equal" means Alembic's autogenerate comparison finds nothing to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from app.db import models  # noqa: F401  (registers the tables)
from app.db.base import Base
from app.db.fulltext import SEARCH_OBJECTS
from app.db.migrate import current_revision, downgrade, upgrade

APP_TABLES = {table.name for table in Base.metadata.sorted_tables}


def _head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = Path(__file__).resolve().parents[1]
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def _diff(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "compare_server_default": True,
                      "render_as_batch": connection.dialect.name == "sqlite"},
            )
            return [change for change in compare_metadata(context, Base.metadata)
                    if not _is_search_object(change)]
    finally:
        engine.dispose()


def _is_search_object(change: Any) -> bool:
    """Full-text search lives outside the ORM (app/db/fulltext.py): FTS5 tables on SQLite, a
    generated column and its index on Postgres."""
    parts = change if isinstance(change, tuple) else ()
    return any(getattr(part, "name", None) in SEARCH_OBJECTS for part in parts)


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"} - SEARCH_OBJECTS
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    assert _tables(url) == APP_TABLES
    assert current_revision(url) == _head_revision()
    downgrade(url, "base")
    assert _tables(url) == set()
    assert current_revision(url) is None
    upgrade(url)
    assert _tables(url) == APP_TABLES
    assert _diff(url) == [], "models.py and migrations/versions disagree; update the revision"


def test_sqlite_upgrade_downgrade_upgrade_and_no_diff(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'migrated.sqlite'}")


@pytest.mark.postgres
def test_postgres_upgrade_downgrade_upgrade_and_no_diff(postgres_url: str) -> None:
    _round_trip(postgres_url)


@pytest.mark.postgres
def test_postgres_has_the_cycle_closing_foreign_keys(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        names = {fk["name"] for fk in inspect(engine).get_foreign_keys("projects")}
    finally:
        engine.dispose()
    assert "fk_projects_current_model_version_id_model_versions" in names


def test_diff_detects_a_model_change(tmp_path: Path) -> None:
    """The no-diff assertion can fail: a column missing from the database is reported."""
    url = f"sqlite:///{tmp_path / 'drift.sqlite'}"
    upgrade(url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE items DROP COLUMN meta")
    engine.dispose()
    assert any("meta" in repr(change) for change in _diff(url))
