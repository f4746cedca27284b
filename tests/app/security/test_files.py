"""Data files are the service account's alone: directories 0700, database, broker and key 0600."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.config import Settings
from app.db.session import make_engine
from app.main import create_app
from worker.celery_app import make_celery


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_directory_database_broker_and_secret_key_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="")  # a key is generated
    app = create_app(settings)
    engine = make_engine(settings.database_url)
    with engine.begin() as connection:  # SQLite creates the file (and its journal) now
        connection.execute(text("CREATE TABLE probe (id INTEGER)"))
    engine.dispose()
    celery = make_celery(settings)
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        connection.default_channel  # noqa: B018 - opens the broker's SQLite tables
    TestClient(app).get("/healthz")

    data = settings.data_dir
    assert _mode(data) == 0o700 and _mode(settings.artifacts) == 0o700
    files = [data / "secret_key", data / "tapestry.sqlite", data / "broker.sqlite"]
    assert {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}


def test_files_of_an_older_install_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    database = data / "tapestry.sqlite"
    database.write_bytes(b"")
    database.chmod(0o644)
    Settings(data_dir=data, secret_key=secrets.token_urlsafe(48)).ensure_dirs()
    assert _mode(data) == 0o700 and _mode(database) == 0o600


def test_a_worker_on_redis_also_writes_private_files(tmp_path: Path) -> None:
    import os

    os.umask(0o022)  # as a freshly started process would have it
    settings = Settings(data_dir=tmp_path / "data", secret_key=secrets.token_urlsafe(48),
                        broker_url="redis://127.0.0.1:6379/9")
    make_celery(settings)  # no connection is made; the worker's process settings are applied
    artifact = tmp_path / "artifact.safetensors"
    artifact.write_bytes(b"weights")
    (tmp_path / "run-dir").mkdir()
    assert _mode(artifact) == 0o600 and _mode(tmp_path / "run-dir") == 0o700
