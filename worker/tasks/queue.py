"""Celery tasks that rebuild a project's annotation queue (``worker.tasks.queue_build``) and score
the rest of a large pool afterwards (``worker.tasks.pool_scoring``)."""

from __future__ import annotations

from typing import Any

from app.db.models import RUN_QUEUE, RUN_SCORE
from contract.tasks import TASK_RECOMPUTE_QUEUE, TASK_SCORE_POOL
from worker.celery_app import celery_app
from worker.tasks.runner import execute_run


@celery_app.task(name=TASK_RECOMPUTE_QUEUE, bind=True)
def recompute_queue(self: Any, run_id: int) -> str:
    """Score the pool with the current model version and swap in a new queue version."""
    from worker.tasks.queue_build import recompute_queue_body

    return execute_run(int(run_id), RUN_QUEUE, recompute_queue_body, task_id=self.request.id)


@celery_app.task(name=TASK_SCORE_POOL, bind=True)
def score_pool(self: Any, run_id: int) -> str:
    """Score the pool items the current version's queue rebuild left out, in the background."""
    from worker.tasks.pool_scoring import score_pool_body

    return execute_run(int(run_id), RUN_SCORE, score_pool_body, task_id=self.request.id)
