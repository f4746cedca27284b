"""Celery task names and the queue each is routed to: what the web sends and the worker serves.

The web process sends by name (``celery_app.send_task``) and never imports a task module, so the
names live here, next to the routes. Routing is by name prefix, so a sender that only knows the
name reaches the right queue: training and pool scoring need the accelerator, bookkeeping does not.
"""

from __future__ import annotations

import re
from pathlib import Path

QUEUE_GPU = "gpu"
QUEUE_DEFAULT = "default"
QUEUE_INFERENCE = "inference"
QUEUE_LIVE = "live"
QUEUES = (QUEUE_GPU, QUEUE_DEFAULT, QUEUE_INFERENCE, QUEUE_LIVE)

TASK_RETRAIN = "training.retrain_adapter"
TASK_TAPT = "training.run_tapt"
TASK_RECOMPUTE_QUEUE = "queue.recompute"
TASK_SCORE_POOL = "queue.score_pool"
TASK_REAP = "runs.reap_stale"
TASK_LIVE_REFIT = "live.refit_head"
TASK_LABEL_ISSUES = "quality.label_issues"
TASK_PREDICT = "inference.predict"
TASK_PING = "system.ping"
TASK_SWEEP_ARTIFACTS = "maintenance.sweep_artifacts"
TASK_NAMES = frozenset(
    {
        TASK_RETRAIN,
        TASK_TAPT,
        TASK_RECOMPUTE_QUEUE,
        TASK_SCORE_POOL,
        TASK_REAP,
        TASK_LIVE_REFIT,
        TASK_LABEL_ISSUES,
        TASK_PREDICT,
        TASK_PING,
        TASK_SWEEP_ARTIFACTS,
    }
)
"""Every task the worker registers (``tests/test_architecture.py`` checks the worker's list)."""

TASK_ROUTES = {
    "training.*": {"queue": QUEUE_GPU},
    "queue.*": {"queue": QUEUE_GPU},
    "runs.*": {"queue": QUEUE_DEFAULT},
    "inference.*": {"queue": QUEUE_INFERENCE},
    "live.*": {"queue": QUEUE_LIVE},  # live-head refits: light, never behind an adapter round
}
"""Routing by task-name prefix; anything else goes to ``QUEUE_DEFAULT``."""

_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ping_path(data_dir: Path, nonce: str) -> Path:
    if not _NONCE.match(nonce):
        raise ValueError("A ping nonce is 1-64 characters of A-Z, a-z, 0-9, '_' or '-'.")
    return data_dir / "pings" / nonce
