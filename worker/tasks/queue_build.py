"""The queue rebuild: score the pool, pick with the project's strategy, attach neighbours, swap.

The new queue is written as version ``v+1`` and ``project.queue_version`` is switched to it in the
same transaction, so annotators keep drawing from version ``v`` until that instant; old versions
are deleted after the commit. Items labelled or leased while the worker was scoring are filtered
out again inside the swap transaction.

Without a model (cold start) the queue is the ALPS pick when a TAPT model exists (surprisal
embeddings need no labels), else a seeded random draw, so annotators can start at once.

On a pool larger than :func:`worker.tasks.candidates.candidate_budget` the new model scores a
candidate set (the live head's least certain items plus a random sample) rather than the whole
pool, and the swap asks for a background ``score_pool`` run to score the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_QUEUE,
    RUN_SUCCEEDED,
    Project,
    QueueEntry,
    RoundMetric,
    TrainingRun,
)
from app.domain.policy import budget_plan, labels_used
from app.jobs import Job, enqueue_after_commit
from contract.budget import Phase
from contract.strategies import resolve_strategy
from contract.tasks import TASK_LABEL_ISSUES
from worker.ml.queue_view import nearest_labelled, top_predictions
from worker.tasks.candidates import (
    Candidates,
    LiveSpace,
    candidate_budget,
    choose_candidates,
    live_space,
)
from worker.tasks.project_data import (
    LabelledSet,
    ProjectSnapshot,
    blocked_item_ids,
    labelled_set,
    load_snapshot,
    queueable_items,
)
from worker.tasks.runner import Outcome, RunContext
from worker.tasks.stop_rules import evaluate_round

log = logging.getLogger(__name__)

QUEUE_OVERFILL = 2
"""Queue twice the next batch: leases and skips consume items before the next rebuild."""
AGREEMENT_STRATEGY = "entropy"
"""Second acquisition function whose overlap with the project's picks feeds the stop rule."""


@dataclass
class Selection:
    """The picked pool rows with everything the queue entries store."""

    item_ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    predicted: list[list[dict[str, Any]]] = field(default_factory=list)
    neighbours: list[list[dict[str, Any]]] = field(default_factory=list)
    strategy: str = ""
    agreement: float | None = None
    partial: str = ""  # set when only a candidate set was scored: what was scored, for the log


@dataclass(frozen=True)
class QueueInputs:
    snapshot: ProjectSnapshot
    item_ids: list[int]
    texts: list[str]
    labelled: LabelledSet
    class_error: list[float] | None
    queue_version: int
    up_to_date: bool
    labels_used: int  # what the budget counts (policy.labels_used), as the web's stop does


def recompute_queue_body(ctx: RunContext) -> Outcome:
    started = time.perf_counter()
    with ctx.session() as session:
        inputs = _load_inputs(session, ctx)
    snapshot = inputs.snapshot
    if inputs.up_to_date:
        return Outcome(
            f"queue v{inputs.queue_version} is already built from this model and data version"
        )
    size, phase, why_empty = _plan(inputs)
    selection = Selection()
    if why_empty is None:
        n = min(len(inputs.item_ids), size * QUEUE_OVERFILL)
        if snapshot.current_artifact is not None:
            selection = _select_with_model(ctx, inputs, n, phase)
        else:
            selection = _select_cold_start(ctx, inputs, n)
    source = (
        f"model v{snapshot.current_version_number}" if snapshot.current_artifact else "cold start"
    )
    queued = f"{len(selection.item_ids)} items queued by {selection.strategy} ({source})"
    if selection.partial:
        queued += f"; {selection.partial}"
    message = why_empty or queued
    swap = _Swap(ctx, inputs, selection)
    return Outcome(
        message,
        publish=swap,
        metrics={"queued": len(selection.item_ids)},
        timings={"total_seconds": round(time.perf_counter() - started, 3)},
        after_commit=swap.delete_old_versions,
    )


def _load_inputs(session: Session, ctx: RunContext) -> QueueInputs:
    snapshot = load_snapshot(session, ctx.claim.project_id, ctx.settings)
    project = session.get(Project, snapshot.id)
    assert project is not None
    item_ids, texts = queueable_items(session, snapshot)
    labelled = labelled_set(session, snapshot, "pool")
    class_error = None
    if snapshot.current_version_id is not None:
        metric = _round_metric_of(session, snapshot.current_version_id)
        if metric is not None and metric.per_class_f1:
            class_error = [
                1.0 - float(metric.per_class_f1.get(name, 0.0)) for name in snapshot.label_names
            ]
    last = session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.project_id == snapshot.id,
            TrainingRun.kind == RUN_QUEUE,
            TrainingRun.status == RUN_SUCCEEDED,
        )
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).first()
    up_to_date = (
        last is not None
        and last.model_version_id == snapshot.current_version_id
        and last.data_version == ctx.claim.data_version
        and last.metrics.get("queue_version") == project.queue_version
        and project.queue_version > 0
    )
    return QueueInputs(
        snapshot, item_ids, texts, labelled, class_error, project.queue_version, up_to_date,
        labels_used(session, snapshot.id),
    )


def _plan(inputs: QueueInputs) -> tuple[int, str, str | None]:
    snapshot = inputs.snapshot
    if snapshot.stopped:
        return 0, Phase.DONE.value, "the project is stopped; the queue is empty"
    plan = budget_plan(snapshot).next_batch(inputs.labels_used)
    size, phase = plan.size, plan.phase
    if phase is Phase.DONE:
        return 0, phase.value, f"the label budget of {snapshot.label_budget} is spent"
    if not inputs.item_ids:
        return 0, phase.value, "no unlabelled, unleased pool items left"
    return size, phase.value, None


def _select_with_model(ctx: RunContext, inputs: QueueInputs, n: int, phase: str) -> Selection:
    from worker.ml.acquisition import build_pool_view, get_strategy
    from worker.ml.acquisition.base import LABELED_EMBEDDINGS
    from worker.ml.artifacts import load_artifact
    from worker.ml.layer_cache import shared_cache
    from worker.ml.scoring import ChunkedScorer
    from worker.ml.stopping import topk_agreement

    snapshot = inputs.snapshot
    assert snapshot.current_artifact is not None
    ctx.reporter.report(phase="load", step=0, total=1, message="loading the current model")
    classifier = load_artifact(Path(snapshot.current_artifact))
    classifier.use_layer_cache(shared_cache())  # the frozen layers below the adapters, once a text
    name = resolve_strategy(snapshot.strategy)
    if phase == "polish" and inputs.class_error is not None:
        name = "minority_focus"  # the reserve goes to the classes the dev set finds worst
    strategy = get_strategy(name)
    class_error = np.asarray(inputs.class_error) if inputs.class_error is not None else None
    with ctx.session() as session:
        space = live_space(session, ctx.settings, snapshot.id, len(snapshot.label_names))
    candidates = _candidates(ctx, inputs, n, space)
    item_ids, texts = inputs.item_ids, inputs.texts
    if candidates is not None:
        item_ids = [inputs.item_ids[r] for r in candidates.rows]
        texts = [inputs.texts[r] for r in candidates.rows]
    view = build_pool_view(
        ChunkedScorer(classifier, ctx.reporter),
        texts,
        requires=strategy.requires,
        # labelled items through the adapter only for a strategy that reads them (neighbours
        # come from the stored sentence embeddings when there are some: a round's cost should
        # not grow with the labels)
        labeled_texts=inputs.labelled.texts if LABELED_EMBEDDINGS in strategy.wants else (),
        class_error=class_error if name == "minority_focus" else None,
        label_names=snapshot.label_names,
    )
    _keep_adapter_probs(ctx, inputs, classifier, item_ids, view.probs)
    ctx.reporter.report(phase="select", step=0, total=1, message=f"selecting with {name}")
    picks = strategy.select(view, n, seed=inputs.queue_version + 1)
    rows = [p.index for p in picks]
    other = AGREEMENT_STRATEGY if name != AGREEMENT_STRATEGY else "margin"
    other_rows = [p.index for p in get_strategy(other).select(view, n)]
    assert view.probs is not None and view.embeddings is not None
    picked = [item_ids[r] for r in rows]
    pick_vectors = space.vectors(picked)
    labelled_vectors = space.vectors(inputs.labelled.item_ids)
    if pick_vectors is None or labelled_vectors is None:  # no live space: the adapter's own
        pick_vectors = view.embeddings[rows]
        labelled_vectors = view.labeled_embeddings
        if labelled_vectors is None:
            labelled_vectors = np.asarray(classifier.embed(inputs.labelled.texts))
    return Selection(
        item_ids=[item_ids[r] for r in rows],
        scores=[p.score for p in picks],
        reasons=[p.reason[:300] for p in picks],
        predicted=top_predictions(view.probs[rows], snapshot.label_names),
        neighbours=nearest_labelled(
            pick_vectors, labelled_vectors, inputs.labelled, snapshot.label_names
        ),
        strategy=name,
        agreement=topk_agreement(rows, other_rows),
        partial=candidates.describe() if candidates is not None else "",
    )


def _candidates(
    ctx: RunContext, inputs: QueueInputs, n: int, space: LiveSpace
) -> Candidates | None:
    """The pool rows this round scores (None: all of them); see :mod:`worker.tasks.candidates`."""
    size = len(inputs.item_ids)
    if size <= candidate_budget(n):
        return None
    ctx.reporter.report(phase="select", step=0, total=1, message="choosing candidates")
    margins = space.margins(inputs.item_ids, inputs.texts)
    return choose_candidates(size, n, margins, seed=inputs.queue_version + 1)


def _keep_adapter_probs(
    ctx: RunContext, inputs: QueueInputs, classifier: Any, pool_ids: list[int],
    pool_probs: np.ndarray | None,
) -> None:
    """Store this adapter version's pool and dev probabilities for the live refit, which compares
    it with the live head on the dev set and serves the better one (or their average)."""
    from worker.tasks.live_refit import save_adapter_probs

    snapshot = inputs.snapshot
    if snapshot.current_version_id is None or pool_probs is None:
        return
    with ctx.session() as session:
        dev = labelled_set(session, snapshot, "dev")
    ids, probs = list(pool_ids), pool_probs
    if len(dev):
        ids += dev.item_ids
        probs = np.concatenate([pool_probs, classifier.predict_proba(dev.texts)])
    save_adapter_probs(ctx.settings, snapshot.id, snapshot.current_version_id, ids, probs)


def _select_cold_start(ctx: RunContext, inputs: QueueInputs, n: int) -> Selection:
    from worker.ml.acquisition import AlpsColdStart, PoolView, RandomSampling

    snapshot = inputs.snapshot
    if snapshot.tapt_model_path is not None:
        from worker.ml.surprisal import mlm_surprisal_embeddings

        ctx.reporter.report(phase="score", step=0, total=1, message="ALPS surprisal embeddings")
        surprisal = mlm_surprisal_embeddings(snapshot.tapt_model_path, inputs.texts)
        view = PoolView(surprisal_embeddings=np.asarray(surprisal))
        strategy: Any = AlpsColdStart()
    else:
        view = PoolView(embeddings=np.zeros((len(inputs.item_ids), 1), dtype=np.float32))
        strategy = RandomSampling()
    picks = strategy.select(view, n, seed=inputs.queue_version + 1)
    return Selection(
        item_ids=[inputs.item_ids[p.index] for p in picks],
        scores=[p.score for p in picks],
        reasons=[p.reason[:300] for p in picks],
        predicted=[[] for _ in picks],
        neighbours=[[] for _ in picks],
        strategy=strategy.name,
    )


def _round_metric_of(session: Session, model_version_id: int) -> RoundMetric | None:
    return session.scalars(
        select(RoundMetric)
        .where(RoundMetric.model_version_id == model_version_id)
        .order_by(RoundMetric.id.desc())
        .limit(1)
    ).first()


class _Swap:
    """Inserts queue version v+1 and switches the project to it, in the run's final transaction."""

    def __init__(self, ctx: RunContext, inputs: QueueInputs, selection: Selection) -> None:
        self.ctx = ctx
        self.inputs = inputs
        self.selection = selection
        self.new_version: int | None = None

    def __call__(self, session: Session, run: TrainingRun) -> int | None:
        snapshot = self.inputs.snapshot
        project = session.get(Project, snapshot.id, populate_existing=True)
        assert project is not None
        blocked = blocked_item_ids(session, snapshot)
        new_version = project.queue_version + 1
        rank = 0
        sel = self.selection
        for i, item_id in enumerate(sel.item_ids):
            if item_id in blocked:
                continue  # labelled or leased while we were scoring
            session.add(
                QueueEntry(
                    project_id=snapshot.id,
                    queue_version=new_version,
                    item_id=item_id,
                    rank=rank,
                    score=float(sel.scores[i]),
                    strategy=sel.strategy,
                    reason=sel.reasons[i],
                    predicted=sel.predicted[i],
                    neighbours=sel.neighbours[i],
                    model_version_id=snapshot.current_version_id,
                )
            )
            rank += 1
        project.queue_version = new_version
        run.metrics = {**run.metrics, "queue_version": new_version, "strategy": sel.strategy}
        self._record_agreement(session, project)
        if snapshot.current_version_id is not None:
            from app.domain.live_head import request_live_refit

            request_live_refit(session, snapshot.id)  # compare the new adapter with the head
            # Likely label errors, after every model's queue (never ahead of it on one worker).
            enqueue_after_commit(session, Job(TASK_LABEL_ISSUES, (snapshot.id,)))
            if sel.partial:
                from app.domain.runs import request_pool_scoring

                request_pool_scoring(
                    session, snapshot.id, snapshot.current_version_id,
                    reason=f"queue v{new_version} scored candidates only",
                )
        session.flush()
        self.new_version = new_version
        return snapshot.current_version_id

    def _record_agreement(self, session: Session, project: Project) -> None:
        version_id = self.inputs.snapshot.current_version_id
        if self.selection.agreement is None or version_id is None:
            return
        metric = _round_metric_of(session, version_id)
        if metric is None:
            return
        metric.details = {**metric.details, "agreement": self.selection.agreement}
        evaluate_round(session, project, metric)

    def delete_old_versions(self) -> None:
        """After the swap commit: older queue versions are no longer served."""
        if self.new_version is None:
            return
        with self.ctx.session() as session:
            session.execute(
                delete(QueueEntry).where(
                    QueueEntry.project_id == self.inputs.snapshot.id,
                    QueueEntry.queue_version < self.new_version,
                )
            )
