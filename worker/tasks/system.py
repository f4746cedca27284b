"""``system.ping``: proof that a real worker picked up a real message from the real broker.

It writes ``<data_dir>/pings/<nonce>`` (the worker's settings decide the data dir). The Celery smoke
test and operators (``tapestry worker --ping``) send one and wait for the file to appear.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

from app.config import get_settings
from contract.tasks import TASK_PING, ping_path
from worker.celery_app import celery_app


@celery_app.task(name=TASK_PING)
def ping(nonce: str) -> str:
    """Record who ran the ping and when; idempotent (a redelivery rewrites the same file)."""
    path = ping_path(get_settings().data_dir, nonce)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"nonce": nonce, "host": socket.gethostname(), "pid": os.getpid(),
              "at": datetime.now(UTC).isoformat()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return nonce
