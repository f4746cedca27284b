"""Celery tasks: the only bridge between the database and the ML core.

Importing this package registers every task on ``worker.celery_app.celery_app``. Task modules
import torch lazily (inside task bodies), so a worker's parent process starts fast and stays small.
"""

from worker.tasks import (
    artifact_sweep,
    inference,
    label_errors,
    live,
    maintenance,
    queue,
    system,
    training,
)

__all__ = ["artifact_sweep", "inference", "label_errors", "live", "maintenance", "queue", "system",
           "training"]
