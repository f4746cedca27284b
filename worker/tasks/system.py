"""``system.ping``: proof that a real worker picked up a real message from the real broker.

It writes ``<data_dir>/pings/<nonce>`` (the worker's settings decide the data dir). The Celery smoke
test and operators (``tapestry worker --ping``) send one and wait for the file to appear.
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

from app.config import get_settings
from worker.celery_app import celery_app

TASK_PING = "system.ping"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ping_path(data_dir: Path, nonce: str) -> Path:
    if not _NONCE.match(nonce):
        raise ValueError("A ping nonce is 1-64 characters of A-Z, a-z, 0-9, '_' or '-'.")
    return data_dir / "pings" / nonce


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
