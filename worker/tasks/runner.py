"""The one wrapper every run-backed task goes through: reap, claim, run the body, publish, finish.

A body does the slow work outside any transaction (training, scoring, writing artifact files)
and returns an :class:`Outcome`. Its ``publish`` callback then runs inside the *same* transaction
that marks the run succeeded, after re-checking that this attempt still owns the run. So either
everything becomes visible together (new model version, current pointer, round metrics, run
status, the follow-up jobs) or, after a crash or a lost claim, nothing does.

Failures end the run ``failed`` with the traceback (for admins); ``Cancelled`` from the ML core (or
a cancel seen by the reporter) ends it ``cancelled``. A worker killed outright writes nothing:
its heartbeat stops and the reaper takes over.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db.models import TrainingRun
from app.db.session import get_engine, session_factory
from app.domain.runs.lifecycle import (
    Claim,
    LostOwnership,
    cancel_claimed_run,
    claim_run,
    fail_run,
    owned_run,
    succeed_run,
)
from app.domain.runs.reaper import reap_stale_runs
from worker.tasks.reporter import Heartbeat, RunReporter, capture_logs

log = logging.getLogger(__name__)

ERROR_CHARS = 20_000

Publish = Callable[[Session, TrainingRun], int | None]
"""Writes a body's results in the final transaction; returns the model version id, if any."""


@dataclass
class Outcome:
    """What a body achieved; ``publish`` runs in the transaction that ends the run."""

    message: str
    publish: Publish | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    after_commit: Callable[[], None] | None = None


@dataclass
class RunContext:
    """Everything a body needs: the claim, a reporter, settings and short sessions."""

    claim: Claim
    reporter: RunReporter
    settings: Settings
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short unit of work (commit on success) for reads or small writes in a body."""
        with self.sessions() as session:
            yield session
            session.commit()


class RunCancelled(Exception):
    """Raised by task code (outside the ML core) when the reporter says stop."""


Body = Callable[[RunContext], Outcome]


def execute_run(
    run_id: int,
    kind: str,
    body: Body,
    *,
    task_id: str | None = None,
    settings: Settings | None = None,
) -> str:
    """Run ``body`` for run ``run_id`` if this message may claim it; return a one-line summary."""
    settings = settings or get_settings()
    sessions = session_factory(get_engine(settings))
    with sessions() as session:
        reaped = reap_stale_runs(session, settings=settings)
        session.commit()
    if reaped.changed:
        log.warning("reaper: %s", reaped.summary())
    with sessions() as session:
        result = claim_run(session, run_id, kind=kind, task_id=task_id)
        session.commit()
    if result.claim is None:
        log.info("%s run %s not started: %s", kind, run_id, result.reason)
        return f"skipped: {result.reason}"
    claim = result.claim
    reporter = RunReporter(claim, sessions, min_interval=settings.heartbeat_seconds / 2)
    context = RunContext(claim, reporter, settings, sessions)
    with Heartbeat(reporter, settings.heartbeat_seconds), capture_logs(reporter):
        return _run_body(context, body)


def _run_body(context: RunContext, body: Body) -> str:
    claim, sessions = context.claim, context.sessions
    from contract.errors import Cancelled  # the ML core's error; imported lazily (torch-free)

    try:
        outcome = body(context)
        if context.reporter.cancelled():
            raise RunCancelled("cancel requested")
        with sessions() as session:
            run = owned_run(session, claim)
            version_id = outcome.publish(session, run) if outcome.publish else None
            succeed_run(
                session,
                claim,
                message=outcome.message,
                model_version_id=version_id,
                metrics=outcome.metrics,
                timings=outcome.timings,
            )
            session.commit()
    except (Cancelled, RunCancelled) as exc:
        return _end_cancelled(context, exc)
    except LostOwnership as exc:
        log.warning("%s", exc)
        return f"lost: {exc}"
    except Exception as exc:
        log.exception("%s run %s failed", claim.kind, claim.run_id)
        with sessions() as session:
            fail_run(
                session,
                claim,
                error=traceback.format_exc()[-ERROR_CHARS:],
                message=f"failed: {type(exc).__name__}: {exc}"[:2000],
            )
            session.commit()
        return f"failed: {exc}"
    if outcome.after_commit is not None:
        try:
            outcome.after_commit()
        except Exception:  # housekeeping only (old queue rows, orphan dirs); the run succeeded
            log.exception("after-commit step of %s run %s failed", claim.kind, claim.run_id)
    return f"succeeded: {outcome.message}"


def _end_cancelled(context: RunContext, exc: BaseException) -> str:
    if context.reporter.lost:
        return "lost: the run was re-queued or ended elsewhere"
    with context.sessions() as session:
        cancel_claimed_run(session, context.claim, message=f"cancelled: {exc}")
        session.commit()
    return "cancelled"
