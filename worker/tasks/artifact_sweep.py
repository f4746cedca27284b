"""``maintenance.sweep_artifacts`` and its loop inside every worker process (no Celery beat).

The rules are :mod:`app.domain.artifact_hygiene`'s (the web and ``tapestry artifacts sweep`` use the
same function). Every worker sweeps every ``TAPESTRY_ARTIFACT_SWEEP_SECONDS`` (first pass one
period after start); two workers sweeping at once is harmless: removal tolerates paths already
gone, and whatever is active or kept is decided from the database on each pass.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from app.config import Settings, get_settings
from app.db.session import get_engine, session_factory
from app.domain.artifact_hygiene import SweepReport, sweep_artifacts
from contract.tasks import TASK_SWEEP_ARTIFACTS
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


_loop_stop = threading.Event()


def sweep_once(settings: Settings | None = None, *, dry_run: bool = False) -> SweepReport:
    """One sweep in its own transaction (``artifact_deleted`` marks commit with it)."""
    settings = settings or get_settings()
    with session_factory(get_engine(settings))() as session:
        report = sweep_artifacts(session, settings, dry_run=dry_run)
        session.commit()
    if report.removed:
        log.info("%s", report.summary())
    return report


@celery_app.task(name=TASK_SWEEP_ARTIFACTS)
def sweep_artifacts_task(dry_run: bool = False) -> str:
    return sweep_once(dry_run=dry_run).summary()


def _loop(settings: Settings) -> None:
    while not _loop_stop.wait(settings.artifact_sweep_seconds):
        try:
            sweep_once(settings)
        except Exception:  # the database or the store may be briefly unavailable
            log.exception("artifact sweep pass failed")


def start_sweep_loop(settings: Settings | None = None) -> threading.Thread | None:
    settings = settings or get_settings()
    if settings.artifact_sweep_seconds <= 0:
        return None
    _loop_stop.clear()
    thread = threading.Thread(
        target=_loop, args=(settings,), name="tapestry-artifact-sweep", daemon=True
    )
    thread.start()
    return thread


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    start_sweep_loop()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    _loop_stop.set()
