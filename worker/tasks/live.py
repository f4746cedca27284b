"""Celery task: refit a project's live head and rebuild its queue (``worker.tasks.live_refit``).

Runs on the ``live`` queue, on a worker process that adapter rounds never block. Not a run-backed
task: it takes about a second, is coalesced by ``LiveHeadState.refit_pending`` and is safe to
repeat (each refit reads the labels present when it starts).
"""

from __future__ import annotations

import logging

from app.config import get_settings
from app.db.session import get_engine, session_factory
from contract.tasks import TASK_LIVE_REFIT
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=TASK_LIVE_REFIT)
def refit_head(project_id: int) -> str:
    from worker.tasks.live_refit import refit_live_head

    settings = get_settings()
    result = refit_live_head(int(project_id), settings, session_factory(get_engine(settings)))
    if result is None:
        return f"project {project_id} no longer exists"
    summary = (
        f"project {project_id}: {result.labels_used} labels, served {result.served}, "
        f"{result.queued} queued as v{result.queue_version} in {result.timings.get('total')} s"
    )
    log.info("live head %s (%s)", summary, result.timings)
    return summary
