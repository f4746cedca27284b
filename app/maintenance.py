"""Background upkeep of the web process, on its own schedule: the stale-run reaper and the
token-use writer.

A run whose worker was killed must look dead within two minutes even when no worker is alive to
notice (the workers' own reaper loop dies with them) and even when nobody reads the run. So the web
process runs one maintenance pass at start-up and then every
:func:`~app.domain.runs.reaper.reaper_interval` seconds (15 s by default), as an asyncio task in the
FastAPI lifespan that hands the database work to a thread. A pass:

1. writes the remembered API-token uses (``last_used_at``; see
   :func:`app.domain.users.flush_token_touches`), so authenticating never writes;
2. reaps: a running run silent for ``stale_run_seconds`` is re-queued or failed, and a lost queued
   run is re-sent (:func:`app.domain.runs.reaper.reap_stale_runs`).

Several web processes (``--workers 4``) do not fight: on Postgres a pass takes a transaction-level
advisory lock first and skips the reap when another process holds it; on SQLite a pass only reads
unless some run is stale, and its writes queue on the process write lock, then re-check the run
under the project lock. Disabled with ``TAPESTRY_WEB_MAINTENANCE=false`` (the tests do, and
drive passes directly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.domain.runs.reaper import ReapReport, reap_stale_runs, reaper_interval
from app.domain.users import flush_token_touches

log = logging.getLogger(__name__)

REAPER_LOCK_KEY = 0x7461705F72656170  # "tap_reap": one reaper pass at a time per deployment


def maintenance_pass(sessions: sessionmaker[Session], settings: Settings) -> ReapReport | None:
    """One pass, each part in its own short transaction; ``None`` when another process reaps."""
    with sessions() as session:
        flush_token_touches(session)
        session.commit()
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            free = session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                  {"key": REAPER_LOCK_KEY})
            if not free:
                return None
        report = reap_stale_runs(session, settings=settings)
        session.commit()  # jobs it scheduled (re-queued runs) are sent after this commit
    if report.changed:
        log.warning("reaper (web): %s", report.summary())
    return report


async def maintenance_loop(app: FastAPI) -> None:
    """Run :func:`maintenance_pass` now and then every reaper interval, until cancelled."""
    while True:
        settings: Settings = app.state.settings
        try:
            await run_in_threadpool(maintenance_pass, app.state.session_factory, settings)
        except Exception:  # the database may be briefly unavailable; try again next period
            log.exception("web maintenance pass failed")
        await asyncio.sleep(reaper_interval(settings))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = (
        asyncio.create_task(maintenance_loop(app), name="tapestry-maintenance")
        if app.state.settings.web_maintenance
        else None
    )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The last token uses, on a clean shutdown.
            with contextlib.suppress(Exception), app.state.session_factory() as session:
                flush_token_touches(session)
                session.commit()
