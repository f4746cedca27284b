"""Celery task that rebuilds a project's annotation queue (see ``worker.tasks.queue_build``)."""

from __future__ import annotations

from typing import Any

from app.db.models import RUN_QUEUE
from contract.tasks import TASK_RECOMPUTE_QUEUE
from worker.celery_app import celery_app
from worker.tasks.runner import execute_run


@celery_app.task(name=TASK_RECOMPUTE_QUEUE, bind=True)
def recompute_queue(self: Any, run_id: int) -> str:
    """Score the pool with the current model version and swap in a new queue version."""
    from worker.tasks.queue_build import recompute_queue_body

    return execute_run(int(run_id), RUN_QUEUE, recompute_queue_body, task_id=self.request.id)
