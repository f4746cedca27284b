"""Two worker "hosts" sharing Postgres, Redis and one artifact directory; one is killed mid-retrain.

Each worker runs in its own working directory with its own data directory (secret key, local
files), as on a separate machine; they share only the database, the broker (and result backend)
and the artifact directory, exactly what README's "Adding hosts" asks of a new host:

- host ``gpu`` consumes ``-Q gpu`` (training, pool scoring);
- host ``cpu`` consumes ``-Q default,inference`` (bookkeeping, the reaper, ``/predict``).

The gpu worker is killed with SIGKILL once the run row shows it training (status ``running`` with
a heartbeat and the test pause point after the first optimizer step reached). Then the cpu host
keeps answering predictions, its reaper re-queues the silent run (the row goes back to
``queued``; the job waits on the ``gpu`` queue), nothing partial is published (no new model
version row, no version directory of the run), and a gpu worker started again completes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.base import Base
from app.db.models import (
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    VERSION_PROMOTED,
    ModelVersion,
    TrainingRun,
)
from app.db.session import make_engine, session_factory
from app.jobs import recording_jobs, set_default_sender
from contract.tasks import QUEUE_DEFAULT, QUEUE_GPU, QUEUE_INFERENCE, QUEUE_LIVE, TASK_PREDICT
from tests.app.domain.runs_support import Db
from tests.conftest import TEST_POSTGRES_URL, TEST_REDIS_URL, FreshPostgres
from tests.integration.conftest import _redis_broker
from tests.integration.workers import BrokerSender, Stack, WorkerProcess
from tests.worker.tasks.seed import seed_project, submit_batch
from tests.worker.tasks.waiting import wait_for
from worker.celery_app import make_celery
from worker.tasks.artifact_store import versions_dir
from worker.tasks.retrain import retrain_body
from worker.tasks.runner import execute_run

pytestmark = [
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(400),
]

GPU_QUEUES: tuple[str, ...] = (QUEUE_GPU,)
CPU_QUEUES: tuple[str, ...] = (QUEUE_LIVE, QUEUE_DEFAULT, QUEUE_INFERENCE)
"""The second host's queues: a parameter, so a queue added later (``live``) joins it here."""
STALE_SECONDS = 20.0
"""Longer than the crash tests' 3 s: four processes share two loaded cores here, and a worker that
misses heartbeats for a few seconds under load must not be declared dead (that is not the kill
under test)."""
NOTICE_WITHIN = STALE_SECONDS * 2 + 15.0


class SharedSender(BrokerSender):
    """The web's side: sends jobs to the shared broker and reads /predict results."""

    def __init__(self, stack: Stack, result_backend_url: str) -> None:
        settings = stack.settings()
        settings.result_backend_url = result_backend_url
        self.app = make_celery(settings)
        self.sent = []


@pytest.fixture()
def shared(tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    broker = _redis_broker()
    fresh = FreshPostgres(TEST_POSTGRES_URL, prefix="tapestry_hosts")
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    try:
        yield Stack(data_dir=web_dir, database_url=fresh.url, broker_url=broker), TEST_REDIS_URL
    finally:
        fresh.drop()


def host_env(stack: Stack, host_dir: Path, result_backend_url: str, **extra: str) -> dict[str, str]:
    """A host's own data directory; the shared database, broker, results and artifact directory."""
    host_dir.mkdir(exist_ok=True)
    return {
        "TAPESTRY_DATA_DIR": str(host_dir),
        "TAPESTRY_ARTIFACT_DIR": str(stack.artifact_dir),
        "TAPESTRY_RESULT_BACKEND_URL": result_backend_url,
        "TAPESTRY_STALE_RUN_SECONDS": str(STALE_SECONDS),
        **extra,
    }


def run_row(db: Db, run_id: int) -> TrainingRun:
    with db.session() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


def versions_of(db: Db, project_id: int) -> list[ModelVersion]:
    with db.session() as session:
        return list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project_id)
                .order_by(ModelVersion.version)
            )
        )


def test_killing_the_gpu_host_mid_retrain_loses_nothing_and_the_cpu_host_keeps_serving(
    shared: tuple[Stack, str], tiny_model: Path, tmp_path: Path
) -> None:
    stack, results_url = shared
    engine = make_engine(stack.database_url)
    Base.metadata.create_all(engine)
    db = Db(engine, session_factory(engine), stack.settings())
    sender = SharedSender(stack, results_url)
    previous_sender = set_default_sender(sender)
    started: list[WorkerProcess] = []

    def start(name: str, queues: Sequence[str], **extra: str) -> WorkerProcess:
        host = tmp_path / f"host-{name}"
        worker = WorkerProcess.on_host(
            stack,
            tmp_path / f"{name}-{len(started)}.log",
            queues=queues,
            cwd=_mkdir(host),
            env=host_env(stack, host, results_url, **extra),
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    try:
        # Version 1, trained here (the "web host" shares the artifact directory).
        with db.session() as session:
            seeded = seed_project(session, base_model=str(tiny_model))
            first = submit_batch(session, seeded, 12)
            session.commit()
        with recording_jobs():
            execute_run(first.id, RUN_RETRAIN, retrain_body, settings=db.settings)
        [v1] = versions_of(db, seeded.project_id)

        cpu = start("cpu", CPU_QUEUES)
        pause_dir = tmp_path / "pause"
        gpu = start(
            "gpu",
            GPU_QUEUES,
            TAPESTRY_TEST_PAUSE_AT="training",
            TAPESTRY_TEST_PAUSE_DIR=str(pause_dir),
        )
        with db.session() as session:
            run = submit_batch(session, seeded, 6)
            session.commit()

        def training() -> bool:
            row = run_row(db, run.id)
            return (
                row.status == RUN_RUNNING
                and row.heartbeat_at is not None
                and (pause_dir / "training.reached").exists()
            )

        wait_for(training, f"the gpu host to be mid-retrain\n{gpu.log_tail()}", timeout=180)
        gpu.kill9()

        # The cpu host keeps serving its queues: a prediction with version 1 is answered ...
        request = {
            "artifact_path": v1.artifact_path,
            "sha256": v1.sha256,
            "model_version_id": v1.id,
            "version": v1.version,
            "texts": ["goal team", "vote election"],
        }
        answer = sender.app.send_task(TASK_PREDICT, args=[request]).get(timeout=120)
        assert "error" not in answer, answer
        assert answer["version"] == 1 and len(answer["probabilities"]) == 2
        # ... and its reaper re-queues the silent run, which waits for a gpu host.
        wait_for(
            lambda: run_row(db, run.id).status == RUN_QUEUED,
            f"the cpu host's reaper to re-queue the run\n{cpu.log_tail()}",
            timeout=NOTICE_WITHIN,
        )
        requeued = run_row(db, run.id)
        assert "no heartbeat" in requeued.log_tail
        assert run_row(db, run.id).status == RUN_QUEUED, "no cpu-host worker took a gpu job"
        answer = sender.app.send_task(TASK_PREDICT, args=[request]).get(timeout=120)
        assert answer["labels"] and "error" not in answer

        # Nothing partial is published: no version row, no version directory of the run.
        assert [v.id for v in versions_of(db, seeded.project_id)] == [v1.id]
        parent = versions_dir(stack.artifact_dir, seeded.project_id)
        assert not [p.name for p in parent.iterdir() if f"-run{run.id}-" in p.name]

        # A gpu host again: the re-queued run completes and publishes exactly one version.
        start("gpu", GPU_QUEUES)
        finished = wait_for(
            lambda: (r := run_row(db, run.id)).status == RUN_SUCCEEDED and r,
            f"the re-queued run to finish\n{started[-1].log_tail()}",
            timeout=180,
        )
        assert isinstance(finished, TrainingRun) and finished.attempts == 2
        versions = versions_of(db, seeded.project_id)
        assert [v.version for v in versions] == [1, 2]
        assert versions[1].status == VERSION_PROMOTED
        assert versions[1].artifact_path.endswith(f"run{run.id}-a2")
        published = [p.name for p in parent.iterdir() if not p.name.startswith(".")]
        assert sorted(published) == sorted(Path(v.artifact_path).name for v in versions)
    except BaseException:
        with db.session() as session:  # what the run row said, for the failure report
            for row in session.scalars(select(TrainingRun).order_by(TrainingRun.id)):
                print(f"run {row.id} {row.kind} {row.status} attempts={row.attempts} "
                      f"phase={row.phase!r} step={row.step}/{row.total} "
                      f"message={row.message!r}\n{row.log_tail}")
        for worker in started:
            print(f"\n----- {worker.log_path.name} -----\n{worker.log_tail(12000)}")
        raise
    finally:
        for worker in started:
            worker.stop()
        set_default_sender(previous_sender)
        sender.close()
        engine.dispose()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

