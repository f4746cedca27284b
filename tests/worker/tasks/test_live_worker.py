"""A real Celery worker process on the ``live`` queue refits the live head after labels arrive.

Embedded defaults end to end: a SQLite database, kombu's SQLAlchemy transport as the broker, and
the labels written by a separate process through the annotator flow (``record_label``), exactly
as the web process does it; the job travels through the broker to the worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.db.models import LiveHeadState, Project, QueueEntry
from tests.worker.ml.tiny import make_tiny_bert
from tests.worker.tasks.seed import Seeded, seed_project
from tests.worker.tasks.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
DEADLINE = 120.0

LABEL_SCRIPT = """
import sys
from app.config import get_settings
from app.db.models import Project, User
from app.db.session import get_engine, session_factory
from app.domain.annotation import record_label

project_id, user_id = int(sys.argv[1]), int(sys.argv[2])
pairs = [tuple(map(int, p.split(":"))) for p in sys.argv[3:]]
with session_factory(get_engine(get_settings()))() as db:
    project = db.get(Project, project_id)
    user = db.get(User, user_id)
    for item_id, label_id in pairs:
        record_label(db, project, user, item_id=item_id, label_id=label_id)
    db.commit()  # the refit job is sent after this commit, by the default Celery sender
"""


@pytest.fixture()
def embedded(tmp_path: Path) -> Iterator[tuple[dict[str, str], Seeded, int]]:
    from app.db import models  # noqa: F401
    from app.db.base import Base
    from tests.app.domain.runs_support import make_user

    database = tmp_path / "tapestry.sqlite"
    engine = create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)
    model = make_tiny_bert(tmp_path / "tiny-bert")
    with Session(engine) as session:
        seeded = seed_project(session, base_model=str(model))
        user_id = make_user(session).id
        session.commit()
    engine.dispose()
    env = dict(
        os.environ,
        TAPESTRY_DATA_DIR=str(tmp_path / "data"),
        TAPESTRY_DATABASE_URL=f"sqlite:///{database}",
        TAPESTRY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    yield env, seeded, user_id


@pytest.fixture()
def live_worker(
    embedded: tuple[dict[str, str], Seeded, int], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = embedded[0]
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
         "-Q", "live", "-n", "live-test@%h", "--without-mingle", "--without-gossip",
         "--loglevel=INFO"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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


def _label(env: dict[str, str], seeded: Seeded, user_id: int, item_ids: list[int]) -> None:
    pairs = [f"{i}:{seeded.label_ids[seeded.pool_gold[i]]}" for i in item_ids]
    done = subprocess.run(
        [sys.executable, "-c", LABEL_SCRIPT, str(seeded.project_id), str(user_id), *pairs],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _state(env: dict[str, str], project_id: int) -> tuple[int, bool, str, list[QueueEntry]]:
    engine = create_engine(env["TAPESTRY_DATABASE_URL"])
    try:
        with Session(engine) as session:
            state = session.scalars(
                select(LiveHeadState).where(LiveHeadState.project_id == project_id)
            ).first()
            project = session.get(Project, project_id)
            assert project is not None
            queue = list(session.scalars(
                select(QueueEntry).where(QueueEntry.project_id == project_id,
                                         QueueEntry.queue_version == project.queue_version)
            ))
            if state is None:
                return 0, True, "", queue
            return state.labels_used, state.refit_pending, state.served, queue
    finally:
        engine.dispose()


@pytest.mark.celery
def test_the_live_worker_refits_the_head_after_labels_arrive(
    embedded: tuple[dict[str, str], Seeded, int],
    live_worker: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    env, seeded, user_id = embedded

    def refit_with(n: int) -> bool:
        assert live_worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        labels_used, pending, _served, _queue = _state(env, seeded.project_id)
        return labels_used == n and not pending

    first = seeded.pool_ids[:9]  # three of each class, in corpus order
    _label(env, seeded, user_id, first)
    wait_for(lambda: refit_with(9), "a live refit with 9 labels", timeout=DEADLINE)
    labels_used, _pending, served, queue = _state(env, seeded.project_id)
    assert served == "live_head"
    assert queue and not {e.item_id for e in queue} & set(first)
    assert all("live head" in e.strategy and len(e.predicted) == 3 for e in queue)

    more = [e.item_id for e in sorted(queue, key=lambda e: e.rank)[:4]]
    _label(env, seeded, user_id, more)
    wait_for(lambda: refit_with(13), "a second refit with 13 labels", timeout=DEADLINE)
    _used, _pending, _served, queue = _state(env, seeded.project_id)
    assert queue and not {e.item_id for e in queue} & set(first + more)
