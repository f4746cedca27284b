"""Celery tasks for training: explicit names, a run id as the only argument, thin shells.

The bodies live in ``worker.tasks.retrain`` and ``worker.tasks.tapt_job``; ``execute_run`` does the
claim, heartbeat, publication and failure handling shared by every run-backed task.
"""

from __future__ import annotations

from typing import Any

from app.db.models import RUN_RETRAIN, RUN_TAPT
from contract.tasks import TASK_RETRAIN, TASK_TAPT
from worker.celery_app import celery_app
from worker.tasks.runner import execute_run


@celery_app.task(name=TASK_RETRAIN, bind=True)
def retrain_adapter(self: Any, run_id: int) -> str:
    """Retrain the project's adapter on its newest labelled data, then promote the new version."""
    from worker.tasks.retrain import retrain_body

    return execute_run(int(run_id), RUN_RETRAIN, retrain_body, task_id=self.request.id)


@celery_app.task(name=TASK_TAPT, bind=True)
def run_tapt(self: Any, run_id: int) -> str:
    """Task-adaptive pretraining on the project's pool; later rounds train on the result."""
    from worker.tasks.tapt_job import tapt_body

    return execute_run(int(run_id), RUN_TAPT, tapt_body, task_id=self.request.id)
