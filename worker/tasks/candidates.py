"""Which pool items an adapter round scores: a bounded candidate set on a large pool.

Scoring every pool item with the new adapter is most of a round on a large pool (issue 17: 160 s
of a 304 s naive round at 10,000 items on 2 cores). A pool larger than :func:`candidate_budget`
is scored only where the round needs it:

* the items the live head (refit on every label, over the stored sentence embeddings, about a
  second) is least sure of, by the margin between its two most likely classes: the region any
  uncertainty or hybrid strategy picks from;
* a uniform random sample of the rest (``RANDOM_SHARE`` of the set), so the picks are never
  confined to the head's view of the pool, and the adapter's probabilities (kept for the live
  refit and the stop rule's agreement) cover the whole pool in miniature.

Without a usable live head (none fitted yet, a label set that changed since, a missing stored
embedding) the set is a uniform random sample: the ``Subsampled`` wrapper's rule. The pool items
left out are scored after the queue swap by the background ``score_pool`` run
(:mod:`worker.tasks.pool_scoring`), which a new round interrupts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import LiveHeadState

log = logging.getLogger(__name__)

CANDIDATE_MIN = 1000
"""A pool of at most this many items is always scored whole."""
CANDIDATES_PER_PICK = 10
"""Candidates per queued item above the minimum (a queue of 400 scores 4,000 candidates)."""
RANDOM_SHARE = 0.25
"""Share of the candidate set drawn uniformly from the pool rather than from the head's doubts."""


def candidate_budget(n_picks: int) -> int:
    """How many pool items a round scores to queue ``n_picks`` of them."""
    return max(CANDIDATE_MIN, CANDIDATES_PER_PICK * max(n_picks, 0))


@dataclass(frozen=True)
class Candidates:
    rows: np.ndarray  # ascending positions in the queueable list
    source: str  # "live head" or "random"
    pool_size: int

    def describe(self) -> str:
        return (
            f"scored {len(self.rows):,} of {self.pool_size:,} pool items "
            f"(candidates by {self.source}); the rest is scored in the background"
        )


def choose_candidates(
    pool_size: int, n_picks: int, margins: np.ndarray | None, *, seed: int
) -> Candidates | None:
    """The rows to score, or None when the whole pool fits the budget.

    ``margins`` (one per pool row, smaller = less sure) come from the live head; without them the
    set is a uniform random sample."""
    budget = candidate_budget(n_picks)
    if pool_size <= budget:
        return None
    rng = np.random.default_rng(seed)
    if margins is None:
        rows = rng.choice(pool_size, size=budget, replace=False)
        return Candidates(np.sort(rows), "random", pool_size)
    if len(margins) != pool_size:
        raise ValueError(f"{len(margins)} margins for a pool of {pool_size}")
    n_random = int(round(RANDOM_SHARE * budget))
    n_doubt = budget - n_random
    doubt = np.argpartition(np.asarray(margins), n_doubt - 1)[:n_doubt]
    rest = np.setdiff1d(np.arange(pool_size), doubt, assume_unique=True)
    extra = rng.choice(rest, size=min(n_random, len(rest)), replace=False)
    return Candidates(np.sort(np.concatenate([doubt, extra])), "live head", pool_size)


@dataclass(frozen=True)
class LiveSpace:
    """The project's live head and its stored sentence embeddings (either may be missing)."""

    head: Any = None
    stored: Any = None  # worker.ml.embedding_store.StoredEmbeddings
    tfidf_dir: Path | None = None  # the live refit's TF-IDF rows (worker.tasks.live_tfidf)

    def vectors(self, item_ids: Sequence[int]) -> np.ndarray | None:
        """Stored embeddings of ``item_ids`` (None unless every one is stored)."""
        if self.stored is None:
            return None
        try:
            return np.asarray(self.stored.take(item_ids))
        except KeyError:
            return None

    def _tfidf_rows(self, item_ids: Sequence[int]) -> Any:
        """The cached TF-IDF rows of a hybrid head's items (None: the head transforms texts)."""
        if self.head is None or self.head.features_used != "hybrid" or self.tfidf_dir is None:
            return None
        from worker.tasks.live_tfidf import load_space

        space = load_space(self.tfidf_dir)
        if (space is None or space.missing(list(item_ids))
                or self.head.selection.get("tfidf_space") != space.fingerprint):
            return None  # rebuilt since the head was fitted: its vocabulary differs
        return space.take(list(item_ids))

    def margins(self, item_ids: Sequence[int], texts: Sequence[str]) -> np.ndarray | None:
        """Top-1 minus top-2 probability of the live head for each item, or None."""
        from contract.errors import MLError
        from worker.ml.acquisition.uncertainty import top_two

        vectors = self.vectors(item_ids) if self.head is not None else None
        if vectors is None:
            return None
        try:
            probs = self.head.predict_proba(vectors, list(texts),
                                            tfidf_rows=self._tfidf_rows(item_ids))
        except (MLError, ValueError) as exc:
            log.info("candidates without the live head: %s", exc)
            return None
        first, second = top_two(np.asarray(probs))
        return np.asarray(first - second)


def live_space(
    session: Session, settings: Settings, project_id: int, n_classes: int
) -> LiveSpace:
    """The live refit's head (when it was fitted on this label set) and the embeddings stored
    for its encoder; an empty space when there is neither."""
    from contract.errors import MLError
    from worker.ml.embedding_store import EmbeddingStore
    from worker.ml.live_head import LiveHead
    from worker.tasks.live_refit import live_dir

    row = session.execute(
        select(LiveHeadState.artifact_path, LiveHeadState.encoder_key)
        .where(LiveHeadState.project_id == project_id)
    ).first()
    if row is None or not row.encoder_key:
        return LiveSpace()
    directory = live_dir(settings, project_id) / "embeddings" / row.encoder_key
    try:
        stored = EmbeddingStore(directory).load() if directory.exists() else None
    except (OSError, ValueError) as exc:
        log.info("no stored embeddings: %s", exc)
        stored = None
    head = None
    if row.artifact_path and Path(row.artifact_path).exists():
        try:
            head = LiveHead.load(row.artifact_path)
        except (MLError, OSError, ValueError, KeyError) as exc:
            log.info("live head unreadable: %s", exc)
        if head is not None and head.n_classes != n_classes:
            head = None  # fitted on another label set
    from worker.tasks.live_tfidf import space_dir

    return LiveSpace(head, stored, space_dir(live_dir(settings, project_id)))
