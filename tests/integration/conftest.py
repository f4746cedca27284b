"""Fixtures for tests that run real Celery worker processes.

``stack`` is parametrised over the two brokers Tapestry supports: kombu's SQLAlchemy transport on a
SQLite file (the embedded default, always available) and Redis (``redis://127.0.0.1:6379/15``;
skipped when Redis is down, unless ``CI`` is set, where that fails). The database is a SQLite file
per test, or a fresh Postgres database when ``TAPESTRY_TEST_DATABASE_URL`` points at Postgres.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.db.base import Base
from app.db.session import make_engine, session_factory
from app.jobs import set_default_sender
from tests.app.domain.runs_support import Db
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, FreshPostgres, skip_or_fail
from tests.integration.workers import BrokerSender, Stack, WorkerProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRANSPORTS = ("sqla", "redis")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch  # imported here: the other tests in this folder do not need torch

    from tests.worker.ml.tiny import make_tiny_bert

    torch.set_num_threads(1)  # this process only trains "version 1"; workers have their own
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _redis_broker() -> str:
    try:
        import redis

        client = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.flushdb()  # leftovers of earlier tests (restored unacked messages) must not leak
        client.close()
    except Exception as exc:
        skip_or_fail(f"Redis unreachable at {TEST_REDIS_URL}: {type(exc).__name__}")
    return TEST_REDIS_URL


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def stack(transport: str, tmp_path: Path) -> Iterator[Stack]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    broker = (
        _redis_broker() if transport == "redis" else f"sqla+sqlite:///{data_dir / 'broker.sqlite'}"
    )
    fresh = (
        FreshPostgres(TEST_DATABASE_URL, prefix="tapestry_it")
        if TEST_DATABASE_URL.startswith("postgres")
        else None
    )
    database_url = fresh.url if fresh else f"sqlite:///{data_dir / 'tapestry.sqlite'}"
    try:
        yield Stack(data_dir=data_dir, database_url=database_url, broker_url=broker)
    finally:
        if fresh is not None:
            fresh.drop()


@pytest.fixture()
def stack_db(stack: Stack) -> Iterator[Db]:
    engine = make_engine(stack.database_url)
    Base.metadata.create_all(engine)
    try:
        yield Db(engine, session_factory(engine), stack.settings())
    finally:
        engine.dispose()


@pytest.fixture()
def sender(stack: Stack, stack_db: Db) -> Iterator[BrokerSender]:
    """Every commit in this test process sends its jobs to the stack's broker."""
    broker_sender = BrokerSender(stack)
    previous = set_default_sender(broker_sender)
    try:
        yield broker_sender
    finally:
        set_default_sender(previous)
        broker_sender.close()


@pytest.fixture()
def workers(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with ``workers(**env)``; all are stopped after the test (logs on failure)."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(stack, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for worker in started:
                print(f"\n----- {worker.log_path.name} -----\n{worker.log_tail()}")
