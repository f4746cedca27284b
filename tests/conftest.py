"""Shared test setup: isolated environment, database fixtures, the app client, service markers.

* Environment: a throwaway data dir, a random secret, ``HF_HUB_OFFLINE=1`` — set before any app
  module reads settings, so no test ever touches a real data directory or a model hub.
* ``db``: a Session inside a transaction that is rolled back after the test (SAVEPOINT pattern,
  ``join_transaction_mode="create_savepoint"``: code under test may commit freely). SQLite by
  default; Postgres when ``TAPESTRY_TEST_DATABASE_URL`` is set (a fresh database per test session
  is created on that server and dropped afterwards). Tests using it are marked ``db`` so CI can run
  them a second time against Postgres.
* ``app`` / ``client``: ``create_app`` with ``get_db`` overridden to hand out that same session.
* Markers ``postgres``, ``redis``, ``celery``, ``browser``: the test is skipped when the service is
  missing — unless ``CI`` is set, in which case it fails, so CI cannot go green by skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tapestry-tests-"))
os.environ["TAPESTRY_DATA_DIR"] = str(_SESSION_DIR / "data")
os.environ["TAPESTRY_SECRET_KEY"] = secrets.token_urlsafe(48)
os.environ.pop("TAPESTRY_DATABASE_URL", None)
os.environ.pop("TAPESTRY_BROKER_URL", None)
os.environ.pop("TAPESTRY_ARTIFACT_DIR", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# No background reaper in the test process (it would write to the shared test database at random
# moments); tests of app.maintenance turn it on for their own app.
os.environ["TAPESTRY_WEB_MAINTENANCE"] = "false"

import pytest  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.config import Settings, get_settings  # noqa: E402
from app.db.base import Base  # noqa: E402
from app.db.session import make_engine  # noqa: E402

get_settings.cache_clear()

TEST_DATABASE_URL = os.environ.get("TAPESTRY_TEST_DATABASE_URL", "")
TEST_POSTGRES_URL = os.environ.get(
    "TAPESTRY_TEST_POSTGRES_URL",
    TEST_DATABASE_URL
    if TEST_DATABASE_URL.startswith("postgres")
    else "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
)
TEST_REDIS_URL = os.environ.get("TAPESTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CHROMIUM = os.environ.get("TAPESTRY_TEST_CHROMIUM", "/usr/bin/chromium")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail in CI, where a missing service is a broken pipeline, not a detail."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- service markers


def _postgres_problem() -> str | None:
    try:
        engine = make_engine(_admin_url(TEST_POSTGRES_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"Postgres unreachable at {TEST_POSTGRES_URL}: {type(exc).__name__}"
    return None


def _redis_problem() -> str | None:
    try:
        import redis

        client = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis unreachable at {TEST_REDIS_URL}: {type(exc).__name__}"
    return None


def _celery_problem() -> str | None:
    return None if shutil.which("celery") or _venv_bin("celery").exists() else "no celery binary"


def _browser_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


def _venv_bin(name: str) -> Path:
    import sys

    return Path(sys.executable).parent / name


_SERVICE_CHECKS: dict[str, Callable[[], str | None]] = {
    "postgres": _postgres_problem,
    "redis": _redis_problem,
    "celery": _celery_problem,
    "browser": _browser_problem,
}
_service_state: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db: uses the shared `db` fixture (CI runs these again on Postgres)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        definitions = info.name2fixturedefs.get("db", ()) if info is not None else ()
        # Only this file's `db` (other modules may define their own fixture of that name).
        if definitions and getattr(definitions[-1].func, "__module__", None) == __name__:
            item.add_marker(pytest.mark.db)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, check in _SERVICE_CHECKS.items():
        if item.get_closest_marker(marker) is None:
            continue
        if marker not in _service_state:
            _service_state[marker] = check()
        problem = _service_state[marker]
        if problem:
            skip_or_fail(problem)


# --------------------------------------------------------------------------- databases


def _admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def use_real_savepoints(engine: Engine) -> None:
    """pysqlite opens transactions lazily, which breaks SAVEPOINT; take control of BEGIN."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @event.listens_for(engine, "begin")
    def _explicit_begin(connection: object) -> None:
        connection.exec_driver_sql("BEGIN")  # type: ignore[attr-defined]


class FreshPostgres:
    """A new, empty database on a Postgres server, dropped by :meth:`drop`."""

    def __init__(self, server_url: str, prefix: str = "tapestry_test") -> None:
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self._admin = make_engine(_admin_url(server_url), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        url = make_url(server_url).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)

    def drop(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """URL of the session's test database, schema created from the models."""
    if TEST_DATABASE_URL.startswith("postgres"):
        problem = _postgres_problem()
        if problem:
            skip_or_fail(problem)
        fresh = FreshPostgres(TEST_DATABASE_URL)
        try:
            yield fresh.url
        finally:
            fresh.drop()
        return
    yield TEST_DATABASE_URL or f"sqlite:///{_SESSION_DIR / 'test.sqlite'}"


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    if engine.dialect.name == "sqlite":
        use_real_savepoints(engine)
    Base.metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture()
def db(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test, even if the code under test commits."""
    connection = db_engine.connect()
    transaction = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        if transaction.is_active:
            transaction.rollback()
        connection.close()


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database for tests marked ``postgres`` (migrations, SKIP LOCKED)."""
    fresh = FreshPostgres(TEST_POSTGRES_URL, prefix="tapestry_pg")
    try:
        yield fresh.url
    finally:
        fresh.drop()


@pytest.fixture()
def redis_url() -> str:
    return TEST_REDIS_URL


# --------------------------------------------------------------------------- app and clients


# One secret for the whole session: the shared app's session middleware signs with it.
TEST_SECRET_KEY = secrets.token_urlsafe(48)


def _test_settings(data_dir: Path, db_url: str) -> Settings:
    settings = Settings(
        data_dir=data_dir,
        database_url=db_url,
        broker_url=f"sqla+sqlite:///{data_dir / 'broker.sqlite'}",
        secret_key=TEST_SECRET_KEY,
    )
    settings.ensure_dirs()
    return settings


@pytest.fixture()
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for this test: its own data directory, the session's database and secret."""
    return _test_settings(tmp_path / "data", db_url)


@pytest.fixture(scope="session")
def _shared_app(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> FastAPI:
    """Building an app's routing tables costs about a second, so tests share one app."""
    from app.main import create_app

    return create_app(_test_settings(tmp_path_factory.mktemp("app") / "data", db_url))


@pytest.fixture()
def app(_shared_app: FastAPI, settings: Settings, db: Session) -> Iterator[FastAPI]:
    """The app with this test's settings and ``get_db`` handing out this test's session.

    Settings that are read per request (``SettingsDep``) follow the test's ``settings``; those
    fixed at creation (secret, upload limit) are the session's — tests that need other values
    build their own app with ``create_app(settings)``.
    """
    from app.deps import get_db

    def _test_db() -> Iterator[Session]:
        # Like production, each request is its own unit of work: commit what the test set up so
        # far (this releases a SAVEPOINT; the outer transaction is still rolled back after the
        # test), then commit or roll back exactly what the request did.
        db.commit()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

    previous_settings = _shared_app.state.settings
    _shared_app.state.settings = settings
    # In-memory limits start empty per test (ids repeat across rolled-back tests on SQLite).
    _shared_app.state.write_rate_limiter = None
    _shared_app.state.login_throttle = None
    _shared_app.dependency_overrides[get_db] = _test_db
    try:
        yield _shared_app
    finally:
        _shared_app.dependency_overrides.clear()
        _shared_app.state.settings = previous_settings


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
