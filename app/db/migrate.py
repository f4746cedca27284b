"""Run Alembic migrations from code (``tapestry db upgrade``, the demo, tests).

The Alembic files live at the repository root (``alembic.ini``, ``migrations/``) and ship inside
the package (:mod:`app.assets`), so commands work from any working directory and from a wheel.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.assets import asset_path

ALEMBIC_INI = asset_path("alembic.ini")
MIGRATIONS_DIR = asset_path("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
