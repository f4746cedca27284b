"""The background run ``score_pool``: the current adapter scores the pool items its round left out.

A large pool's queue rebuild scores only a candidate set (:mod:`worker.tasks.candidates`); this
run, requested by that rebuild's swap, scores the rest in chunks and merges each chunk into the
version's stored probabilities (``save_adapter_probs``), so the live refit can serve the adapter
over the whole pool once it is covered. It is chunked and interruptible:

* it stops at once when its version is no longer the project's current one;
* after each chunk (never before the first, so every run makes progress), it stops when a
  retrain, queue rebuild or TAPT run of the project is waiting: annotators' rounds go first. It
  then asks for itself again, so it resumes behind them if its version is still current.

What a stopped run scored stays stored; nothing is half-written (each merge replaces the files
atomically). When the pool is covered it asks for a live refit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_QUEUE,
    RUN_QUEUED,
    RUN_RETRAIN,
    RUN_TAPT,
    Project,
    TrainingRun,
)
from worker.tasks.project_data import load_snapshot, queueable_items
from worker.tasks.runner import Outcome, RunContext

PHASE = "score"
CHUNK = 256
"""Texts per chunk: a waiting round starts at most one chunk (a few seconds on a CPU) late."""
SAVE_SECONDS = 15.0
"""Scored chunks are merged into the stored probabilities at most this often (and whenever the
run stops): each merge rewrites the version's file, which at 100,000 items is ~5 MB."""
YIELDS_TO = (RUN_RETRAIN, RUN_QUEUE, RUN_TAPT)


def score_pool_body(ctx: RunContext) -> Outcome:
    started = time.perf_counter()
    version_id = int(ctx.claim.params.get("model_version_id") or 0)
    with ctx.session() as session:
        snapshot = load_snapshot(session, ctx.claim.project_id, ctx.settings)
        if snapshot.current_version_id != version_id or snapshot.current_artifact is None:
            return Outcome(f"model version {version_id} is no longer current; nothing to score")
        item_ids, texts = queueable_items(session, snapshot)
    from worker.tasks.live_refit import load_adapter_probs

    stored = load_adapter_probs(ctx.settings, snapshot.id, version_id)
    have = set(stored.ids.tolist()) if stored is not None else set()
    todo = [r for r, i in enumerate(item_ids) if i not in have]
    number = snapshot.current_version_number
    if not todo:
        return Outcome(f"model v{number} has already scored the pool", publish=_ask_refit)
    scored, why_stopped = _score(ctx, snapshot, version_id, todo, item_ids, texts)
    timings = {"total_seconds": round(time.perf_counter() - started, 3)}
    metrics = {"scored": scored, "left": len(todo) - scored, "pool": len(item_ids)}
    if why_stopped:
        return Outcome(
            f"model v{number} scored {scored:,} of the {len(todo):,} pool items left, then "
            f"stopped: {why_stopped}",
            publish=_ask_again(version_id) if why_stopped != _SUPERSEDED else None,
            metrics=metrics, timings=timings,
        )
    return Outcome(
        f"model v{number} scored the {scored:,} pool items its queue rebuild left out "
        f"({len(item_ids):,} in the pool)",
        publish=_ask_refit, metrics=metrics, timings=timings,
    )


_SUPERSEDED = "a newer model version is current"


def _score(
    ctx: RunContext, snapshot: Any, version_id: int, todo: list[int], item_ids: list[int],
    texts: list[str],
) -> tuple[int, str]:
    """Score ``todo`` (rows of the pool) chunk by chunk; returns (items scored, why it stopped
    early or "")."""
    from worker.ml.artifacts import load_artifact
    from worker.ml.layer_cache import shared_cache
    from worker.ml.progress import check_cancelled
    from worker.ml.scoring import length_order
    from worker.tasks.live_refit import save_adapter_probs

    ctx.reporter.report(phase="load", step=0, total=1, message="loading the current model")
    classifier = load_artifact(Path(snapshot.current_artifact))
    classifier.use_layer_cache(shared_cache())
    order = [todo[i] for i in length_order([texts[r] for r in todo])]
    total = -(-len(order) // CHUNK)
    scored = 0
    pending_ids: list[int] = []
    pending: list[np.ndarray] = []
    saved_at = time.monotonic()

    def save() -> None:
        nonlocal saved_at
        if pending_ids:
            save_adapter_probs(
                ctx.settings, snapshot.id, version_id, pending_ids, np.concatenate(pending)
            )
        pending_ids.clear()
        pending.clear()
        saved_at = time.monotonic()

    try:
        for step, start in enumerate(range(0, len(order), CHUNK), start=1):
            rows = order[start : start + CHUNK]
            pending.append(np.asarray(classifier.predict_proba([texts[r] for r in rows])))
            pending_ids.extend(item_ids[r] for r in rows)
            scored += len(rows)
            if time.monotonic() - saved_at >= SAVE_SECONDS:
                save()
            ctx.reporter.report(phase=PHASE, step=step, total=total, metrics={"items": scored})
            check_cancelled(ctx.reporter, PHASE)
            if scored < len(order):
                why = _should_stop(ctx, snapshot.id, version_id)
                if why:
                    return scored, why
        return scored, ""
    finally:
        save()  # what was scored is kept, whether the run finished, yielded or was cancelled


def _should_stop(ctx: RunContext, project_id: int, version_id: int) -> str:
    with ctx.session() as session:
        current = session.scalar(
            select(Project.current_model_version_id).where(Project.id == project_id)
        )
        if current != version_id:
            return _SUPERSEDED
        waiting = session.scalar(
            select(TrainingRun.kind)
            .where(
                TrainingRun.project_id == project_id,
                TrainingRun.kind.in_(YIELDS_TO),
                TrainingRun.status == RUN_QUEUED,
            )
            .limit(1)
        )
    return f"a {waiting} run is waiting; scoring resumes after it" if waiting else ""


def _ask_again(version_id: int) -> Any:
    def publish(session: Session, run: TrainingRun) -> int | None:
        from app.domain.runs import request_pool_scoring

        request_pool_scoring(
            session, run.project_id, version_id, reason="resuming after a waiting run"
        )
        return None

    return publish


def _ask_refit(session: Session, run: TrainingRun) -> int | None:
    """The pool is covered: the live refit may now serve the adapter over all of it."""
    from app.domain.live_head import request_live_refit

    request_live_refit(session, run.project_id)
    return None
