"""Alembic environment: one code path for SQLite and Postgres.

URL precedence: ``alembic -x url=...`` > ``sqlalchemy.url`` in the config (set by tests and by
:mod:`app.db.migrate`) > Tapestry settings. SQLite runs in batch mode (table rebuilds for ALTERs)
with foreign keys switched off during the migration, as SQLite's documentation requires for
table rebuilds; constraint names come from the models' naming convention.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.db import models  # noqa: F401  (registers every table on the metadata)
from app.db.base import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    override = context.get_x_argument(as_dictionary=True).get("url")
    if override:
        return override
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    settings = get_settings()
    if settings.is_sqlite:
        settings.ensure_dirs()
    return settings.database_url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    is_sqlite = (
        connection.dialect.name == "sqlite" if connection is not None
        else bool(url and url.startswith("sqlite"))
    )
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
        compare_server_default=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=NullPool)
    with engine.connect() as connection:
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            connection.execute(text("PRAGMA foreign_keys=OFF"))
            connection.commit()
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        if is_sqlite:
            connection.execute(text("PRAGMA foreign_keys=ON"))
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
