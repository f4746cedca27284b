"""Wrappers that compose with any strategy: pool subsampling and near-duplicate removal."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import EMBEDDINGS, LABELED_EMBEDDINGS, Pick, PoolView, QueryStrategy
from worker.ml.acquisition.geometry import l2_normalise


@dataclass(frozen=True)
class Subsampled(QueryStrategy):
    """Run ``inner`` on a random subset of at most ``max_pool`` rows of a very large pool.

    Scoring cost (k-means, k-center, BADGE) then stops growing with the pool; picks are mapped
    back to the full pool's indices.
    """

    inner: QueryStrategy
    max_pool: int = 20_000

    name = "subsampled"

    def __post_init__(self) -> None:
        if self.max_pool < 1:
            raise ConfigError(f"max_pool must be >= 1, got {self.max_pool}")

    @property
    def requires(self) -> frozenset[str]:
        return self.inner.requires

    @property
    def wants(self) -> frozenset[str]:
        return self.inner.wants

    def missing_views(self, view: PoolView) -> list[str]:
        return self.inner.missing_views(view)

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        if len(view) <= self.max_pool:
            return self.inner._select(view, n, rng)
        rows = np.sort(rng.choice(len(view), size=max(self.max_pool, n), replace=False))
        picks = self.inner._select(view.take(rows), n, rng)
        return [Pick(int(rows[p.index]), p.score, p.reason) for p in picks]


@dataclass(frozen=True)
class Deduplicated(QueryStrategy):
    """Drop picks whose embedding is within cosine ``threshold`` of an earlier pick.

    Uncertainty sampling loves near-duplicates (templated mails, reposts): each costs a label
    and teaches nothing new. With ``against_labeled`` items too close to a labelled one are
    dropped as well. The inner strategy is asked for more candidates until ``n`` survive; when
    the pool runs out, fewer than ``n`` picks are returned.
    """

    inner: QueryStrategy
    threshold: float = 0.95
    against_labeled: bool = True
    oversample: float = 1.5

    name = "deduplicated"

    def __post_init__(self) -> None:
        if not -1.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold is a cosine similarity in (-1, 1), got {self.threshold}")
        if self.oversample < 1.0:
            raise ConfigError(f"oversample must be >= 1, got {self.oversample}")

    @property
    def requires(self) -> frozenset[str]:
        return self.inner.requires | {EMBEDDINGS}

    @property
    def wants(self) -> frozenset[str]:
        labeled = {LABELED_EMBEDDINGS} if self.against_labeled else set()
        return self.inner.wants | {EMBEDDINGS} | labeled

    def missing_views(self, view: PoolView) -> list[str]:
        own = [] if view.has(EMBEDDINGS) else [EMBEDDINGS]
        return sorted(set(own) | set(self.inner.missing_views(view)))

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        assert view.embeddings is not None
        want = min(len(view), math.ceil(n * self.oversample))
        while True:
            seed = int(rng.integers(2**31))
            candidates = self.inner._select(view, want, np.random.default_rng(seed))
            kept = self._filter(view, candidates, n)
            if len(kept) >= n or want >= len(view):
                return kept
            want = min(len(view), want * 2)

    def _filter(self, view: PoolView, candidates: list[Pick], n: int) -> list[Pick]:
        assert view.embeddings is not None
        x = l2_normalise(view.embeddings[[p.index for p in candidates]])
        blocked = np.zeros(len(candidates), dtype=bool)
        labeled = view.labeled_embeddings
        if self.against_labeled and labeled is not None and labeled.shape[0] > 0:
            blocked |= (x @ l2_normalise(labeled).T).max(axis=1) > self.threshold
        kept: list[Pick] = []
        kept_rows: list[int] = []
        for j, pick in enumerate(candidates):
            if blocked[j]:
                continue
            if kept_rows and float((x[kept_rows] @ x[j]).max()) > self.threshold:
                continue
            kept.append(pick)
            kept_rows.append(j)
            if len(kept) == n:
                break
        return kept
