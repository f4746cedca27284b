"""A real Celery worker process on a real Redis runs ``system.ping`` sent with ``.delay()``.

Marked ``redis`` and ``celery``: skipped locally without Redis, failing in CI. A random Redis
database number keeps parallel test runs from stealing each other's messages.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 90.0


def _isolated_redis(url: str) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{secrets.randbelow(14) + 1}"


@pytest.fixture()
def worker_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    from sqlalchemy import create_engine

    from app.db import models  # noqa: F401  (registers the tables)
    from app.db.base import Base

    database = tmp_path / "worker.sqlite"
    engine = create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)  # the worker's maintenance loop reads run rows
    engine.dispose()
    return dict(
        os.environ,
        TAPESTRY_BROKER_URL=_isolated_redis(redis_url),
        TAPESTRY_DATA_DIR=str(tmp_path / "worker-data"),
        TAPESTRY_DATABASE_URL=f"sqlite:///{database}",
        PYTHONUNBUFFERED="1",
    )


@pytest.fixture()
def celery_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
         "-Q", "default", "--without-mingle", "--without-gossip", "--loglevel=INFO"],
        cwd=REPO, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@pytest.mark.redis
@pytest.mark.celery
def test_worker_runs_a_ping_sent_with_delay(
    celery_worker: subprocess.Popen[bytes], worker_env: dict[str, str], tmp_path: Path
) -> None:
    from contract.tasks import ping_path

    nonce = f"smoke-{secrets.token_hex(6)}"
    # Sent from a separate process configured only by the environment, exactly like the web
    # process does it (reconfiguring this test process's Celery app would leak into other tests).
    sender = subprocess.run(
        [sys.executable, "-c",
         "import sys; from worker.tasks.system import ping; ping.delay(sys.argv[1])", nonce],
        cwd=REPO, env=worker_env, capture_output=True, text=True, timeout=120,
    )
    assert sender.returncode == 0, sender.stderr[-3000:]
    proof = ping_path(Path(worker_env["TAPESTRY_DATA_DIR"]), nonce)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not proof.exists():
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert celery_worker.poll() is None, f"worker died:\n{log[-3000:]}"
        assert time.monotonic() < deadline, f"no ping after {DEADLINE_SECONDS}s:\n{log[-3000:]}"
        time.sleep(0.2)  # polling a file with a deadline, not waiting for a guessed duration
    assert nonce in proof.read_text()
    assert '"pid"' in proof.read_text()
