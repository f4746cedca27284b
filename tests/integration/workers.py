"""Real Celery worker processes for integration tests, and a sender bound to the same broker.

A worker is ``python -m celery -A worker.celery_app:celery_app worker --pool=solo`` in its own
process group, configured only through ``TAPESTRY_*`` environment variables (database, broker,
artifact dir, short heartbeat and stale-run timeouts, optional test pause point), exactly as a
deployment configures it. Its output goes to a log file that failing tests print.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

from app.config import Settings
from app.jobs import Job
from contract.tasks import QUEUES
from tests.worker.tasks.waiting import wait_for
from worker.celery_app import make_celery

REPO_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_SECONDS = 0.5
STALE_RUN_SECONDS = 3.0
READY_TIMEOUT = 120.0


@dataclass
class Stack:
    """Where one test's database, broker and artifacts live, as worker environment variables."""

    data_dir: Path
    database_url: str
    broker_url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            database_url=self.database_url,
            broker_url=self.broker_url,
            artifact_dir=self.artifact_dir,
            heartbeat_seconds=HEARTBEAT_SECONDS,
            stale_run_seconds=STALE_RUN_SECONDS,
            max_run_attempts=2,
            visibility_timeout_seconds=60,
        )

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_TEST_PAUSE")}
        env.update(
            TAPESTRY_DATA_DIR=str(self.data_dir),
            TAPESTRY_DATABASE_URL=self.database_url,
            TAPESTRY_BROKER_URL=self.broker_url,
            TAPESTRY_ARTIFACT_DIR=str(self.artifact_dir),
            TAPESTRY_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            TAPESTRY_STALE_RUN_SECONDS=str(STALE_RUN_SECONDS),
            TAPESTRY_MAX_RUN_ATTEMPTS="2",
            TAPESTRY_VISIBILITY_TIMEOUT_SECONDS="60",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env


class WorkerProcess:
    """One real worker process; ``kill9`` is the crash, ``stop`` the polite shutdown.

    ``queues`` are the queues it consumes (all by default); ``cwd`` its working directory (another
    directory simulates another host: nothing is found next to the source by accident).
    """

    def __init__(self, stack: Stack, log_path: Path, **env: str) -> None:
        self._start(stack, log_path, QUEUES, REPO_ROOT, env)

    @classmethod
    def on_host(
        cls, stack: Stack, log_path: Path, *, queues: Sequence[str], cwd: Path, env: dict[str, str]
    ) -> WorkerProcess:
        """A worker consuming only ``queues``, started in ``cwd`` (another "host")."""
        worker = cls.__new__(cls)
        worker._start(stack, log_path, queues, cwd, env)
        return worker

    def _start(
        self, stack: Stack, log_path: Path, queues: Sequence[str], cwd: Path, env: dict[str, str]
    ) -> None:
        self.log_path = log_path
        self.queues = tuple(queues)
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
            "--pool=solo", "-Q", ",".join(self.queues), "--loglevel=INFO", "-n", self.name,
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=stack.env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            return b" ready." in self.log_path.read_bytes()

        wait_for(ready, "the worker to start", timeout=READY_TIMEOUT, interval=0.1)

    def kill9(self) -> None:
        """The crash under test: SIGKILL, no cleanup, no ack, no final database write."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")


class BrokerSender:
    """Sends jobs to the stack's broker by name, like the web process does."""

    def __init__(self, stack: Stack) -> None:
        self.app: Celery = make_celery(stack.settings())
        self.sent: list[Job] = []

    def __call__(self, job: Job) -> None:
        self.sent.append(job)
        self.app.send_task(job.name, args=list(job.args), kwargs=dict(job.kwargs))

    def close(self) -> None:
        self.app.close()
