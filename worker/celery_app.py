"""The Celery application. Importing it must stay cheap: the web process uses it to enqueue by name.

Queues: ``gpu`` (TAPT, adapter training, pool scoring), ``default`` (import/export, light
jobs), ``inference`` (predict with a resident base model) and ``live`` (live-head refits after
labels; run it on a worker process that adapter rounds do not block). Task state lives in the
database, never in Celery results; the one exception is ``inference.predict``, whose result IS the
/predict response.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import Settings, get_settings
from app.security.files import restrict_new_files
from contract.tasks import QUEUE_DEFAULT, QUEUES, TASK_ROUTES


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    restrict_new_files()  # artifacts, tapt checkpoints and broker files: 0600, directories 0700
    if settings.broker_url.startswith("sqla+sqlite"):
        settings.ensure_dirs()
    app = Celery(
        "tapestry",
        broker=settings.broker_url,
        backend=settings.result_backend_url,  # read only by /predict (its task stores a result)
        include=["worker.tasks"],
    )
    app.conf.update(
        task_default_queue=QUEUE_DEFAULT,
        task_queues=[Queue(name) for name in QUEUES],
        task_routes=TASK_ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_expires=3600,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
    )
    return app


def broker_transport_options(settings: Settings) -> dict[str, float | int]:
    """Transport options the configured broker understands.

    kombu's SQLAlchemy transport (the embedded default) passes every transport option straight to
    ``create_engine``, which rejects unknown keywords, so it gets none: it polls once a second and
    has no visibility timeout (a message taken by a killed worker stays hidden; the stale-run
    reaper re-sends the run instead). Redis gets a visibility timeout above the longest job.
    """
    if settings.broker_url.startswith("sqla+"):
        _poll_sqla_faster()
        return {}
    return {"visibility_timeout": settings.visibility_timeout_seconds, "polling_interval": 0.5}


SQLA_POLLING_INTERVAL = 0.2
"""Seconds between polls of an empty queue on the embedded (SQLAlchemy) broker. kombu's default
is 1 s, which alone adds ~0.5 s on average to the live head's label -> queue latency (a target
of about a second); each poll is one indexed SELECT per queue on the broker's SQLite file."""


def _poll_sqla_faster() -> None:
    """kombu reads the interval from the transport class (its transport options go to
    ``create_engine``, which rejects unknown keys), so set it there."""
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = SQLA_POLLING_INTERVAL


celery_app = make_celery()
