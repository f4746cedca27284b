"""The reaper as a task and as a loop inside every worker process (no Celery beat needed).

Dead workers are noticed by whoever runs the reaper next: the web process's own schedule
(:mod:`app.maintenance`, every 15 s, whether or not any worker is alive), each run-backed task at
its start, this loop (every third of ``stale_run_seconds``) in every live worker, and ``tapestry
reap``. So a killed run is re-queued or failed within about ``stale_run_seconds`` + 15 s.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.config import Settings, get_settings
from app.db.session import get_engine, session_factory
from app.domain.runs.reaper import ReapReport, reap_stale_runs
from contract.tasks import TASK_REAP
from worker.celery_app import celery_app

log = logging.getLogger(__name__)

_loop_stop = threading.Event()


def reap_once(settings: Settings | None = None) -> ReapReport:
    """One reaper pass in its own transaction; jobs it schedules are sent after the commit."""
    settings = settings or get_settings()
    with session_factory(get_engine(settings))() as session:
        report = reap_stale_runs(session, settings=settings)
        session.commit()
    if report.changed:
        log.warning("reaper: %s", report.summary())
    return report


@celery_app.task(name=TASK_REAP)
def reap_stale() -> str:
    return reap_once().summary()


def reaper_interval(settings: Settings) -> float:
    return max(0.5, settings.stale_run_seconds / 3)


def _loop(settings: Settings) -> None:
    interval = reaper_interval(settings)
    while not _loop_stop.wait(interval):
        try:
            reap_once(settings)
        except Exception:  # the database may be briefly unavailable; try again next period
            log.exception("reaper loop pass failed")


def start_reaper_loop(settings: Settings | None = None) -> threading.Thread:
    settings = settings or get_settings()
    _loop_stop.clear()
    thread = threading.Thread(target=_loop, args=(settings,), name="tapestry-reaper", daemon=True)
    thread.start()
    return thread


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    try:
        reap_once()
    except Exception:
        log.exception("start-up reaper pass failed")
    start_reaper_loop()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    _loop_stop.set()


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    # A forked pool child must not reuse the parent's pooled database connections.
    get_engine().dispose(close=False)
