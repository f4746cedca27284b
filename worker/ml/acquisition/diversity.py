"""Diversity strategies over embeddings: core-set, and the cluster-then-uncertain hybrid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import (
    EMBEDDINGS,
    LABELED_EMBEDDINGS,
    PROBS,
    FloatArray,
    Pick,
    PoolView,
    QueryStrategy,
)
from worker.ml.acquisition.geometry import DenseSpace, greedy_k_center, kmeans, min_sqdist_to_set
from worker.ml.acquisition.uncertainty import describe_uncertainty, entropy, top_two

UncertaintyMeasure = Literal["entropy", "margin", "least_confidence"]


def uncertainty(probs: FloatArray, measure: UncertaintyMeasure) -> FloatArray:
    """Higher = more uncertain, for any of the three classic measures."""
    if measure == "entropy":
        return entropy(probs)
    if measure == "margin":
        first, second = top_two(probs)
        return 1.0 - (first - second)
    return 1.0 - probs.max(axis=1)


@dataclass(frozen=True)
class CoreSet(QueryStrategy):
    """Greedy k-center (Sener & Savarese 2018): cover the embedding space, labelled items included.

    Each pick is the pool item farthest from every labelled item and every earlier pick, so the
    batch spreads over regions the labelled set does not reach yet.
    """

    name = "coreset"
    needs = frozenset({EMBEDDINGS})
    optional = frozenset({LABELED_EMBEDDINGS})

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        assert view.embeddings is not None
        x = view.embeddings
        initial = None
        if view.labeled_embeddings is not None and view.labeled_embeddings.shape[0] > 0:
            initial = min_sqdist_to_set(x, view.labeled_embeddings)
        rows, dists = greedy_k_center(DenseSpace(x), n, initial)
        return [
            Pick(int(i), float(d) if np.isfinite(d) else 0.0, _coverage_reason(d))
            for i, d in zip(rows, dists, strict=True)
        ]


def _coverage_reason(dist: float) -> str:
    if not np.isfinite(dist):
        return "first centre: the item nearest the pool's centroid"
    return f"distance {dist:.2f} to the nearest labelled or picked item"


@dataclass(frozen=True)
class ClusterThenUncertain(QueryStrategy):
    """Diversity first, then uncertainty: k-means on embeddings, the most uncertain per cluster.

    With ``n_clusters`` = 0 there are as many clusters as picks. No cluster gives a second item
    before every non-empty cluster has given one (round robin, most uncertain first). Margin is
    the default measure: entropy over-weights the long tail of many-class distributions.
    """

    name = "cluster_uncertain"
    needs = frozenset({PROBS, EMBEDDINGS})
    n_clusters: int = 0
    measure: UncertaintyMeasure = "margin"  # beat entropy on R8 and 20NG (docs/results.md)

    def __post_init__(self) -> None:
        if self.n_clusters < 0:
            raise ConfigError("n_clusters must be >= 0 (0 means one cluster per pick)")
        if self.measure not in ("entropy", "margin", "least_confidence"):
            raise ConfigError(f"unknown uncertainty measure {self.measure!r}")

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        assert view.embeddings is not None and view.probs is not None
        k = self.n_clusters or n
        clusters = kmeans(view.embeddings, k, rng).assign
        u = uncertainty(view.probs, self.measure)
        k = int(clusters.max()) + 1
        rows = round_robin(clusters, u, n)
        return [
            Pick(
                int(i),
                float(u[i]),
                f"{describe_uncertainty(self.measure, float(u[i]))}, "
                f"cluster {clusters[i] + 1} of {k}",
            )
            for i in rows
        ]



def round_robin(groups: np.ndarray, scores: FloatArray, n: int) -> list[int]:
    """Take the best row of every group, then the second best of every group, and so on.

    Within each pass, groups are visited in order of the score of the row they offer, so the
    ranking stays "most informative first" without ever taking two rows of one group early.
    """
    order = np.lexsort((np.arange(scores.shape[0]), -scores, groups))  # by group, best first
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    rank_in_group = np.arange(order.shape[0]) - np.repeat(
        starts, np.diff(np.r_[starts, len(order)])
    )
    final = np.lexsort((order, -scores[order], rank_in_group))[:n]
    return [int(i) for i in order[final]]
