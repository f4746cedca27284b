"""Training runs: one package for every rule about them.

- :mod:`~app.domain.runs.locks`: the project lock every run decision takes, and the
  send-after-commit of a run's task (``KIND_TASKS``).
- :mod:`~app.domain.runs.requests`: request a run (coalescing per project and kind), cancel one.
- :mod:`~app.domain.runs.progress`: read runs (always scoped to a project) and their progress;
  reads never write.
- :mod:`~app.domain.runs.lifecycle`: the worker's transitions (claim, heartbeat, succeed, fail,
  cancel), fenced by the claim's attempt number; a finished run sends its queued follow-up.
- :mod:`~app.domain.runs.reaper`: the scheduled reaper (``app.maintenance`` and every worker)
  that re-queues or fails runs whose worker died and re-sends lost jobs.

Imports go one way: ``locks`` <- ``progress`` <- ``requests``; ``locks`` <- ``lifecycle`` <-
``reaper``. The web and API use the names re-exported here; workers import ``lifecycle`` and
``reaper`` directly.
"""

from app.domain.runs.locks import KIND_TASKS, lock_project, schedule_send
from app.domain.runs.progress import (
    RunNotFound,
    RunProgress,
    active_runs,
    get_run,
    list_runs,
    run_progress,
)
from app.domain.runs.requests import (
    RunAlreadyFinished,
    cancel_run,
    request_pool_scoring,
    request_queue_recompute,
    request_retrain,
    request_tapt,
)

__all__ = [
    "KIND_TASKS",
    "RunAlreadyFinished",
    "RunNotFound",
    "RunProgress",
    "active_runs",
    "cancel_run",
    "get_run",
    "list_runs",
    "lock_project",
    "request_pool_scoring",
    "request_queue_recompute",
    "request_retrain",
    "request_tapt",
    "run_progress",
    "schedule_send",
]
