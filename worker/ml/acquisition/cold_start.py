"""ALPS cold start (Yuan et al. 2020): pick representative items before any label exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import (
    EMBEDDINGS,
    SURPRISAL_EMBEDDINGS,
    Pick,
    PoolView,
    QueryStrategy,
)
from worker.ml.acquisition.diversity import round_robin
from worker.ml.acquisition.geometry import kmeans, l2_normalise


@dataclass(frozen=True)
class AlpsColdStart(QueryStrategy):
    """k-means on MLM surprisal embeddings, then the item nearest each centre.

    Surprisal embeddings (the TAPT model's masked-LM loss per token, see
    ``worker.ml.tapt.mlm_surprisal_embeddings``) need no classifier, so this works with zero
    labels. Larger clusters come first: their nearest item stands for more of the pool.
    ``source="embeddings"`` clusters sentence embeddings instead, when there is no TAPT model.
    """

    name = "alps"
    source: Literal["surprisal", "embeddings"] = "surprisal"

    def __post_init__(self) -> None:
        if self.source not in ("surprisal", "embeddings"):
            raise ConfigError(f"source must be 'surprisal' or 'embeddings', got {self.source!r}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({SURPRISAL_EMBEDDINGS if self.source == "surprisal" else EMBEDDINGS})

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        x = view.surprisal_embeddings if self.source == "surprisal" else view.embeddings
        assert x is not None
        clustering = kmeans(l2_normalise(x), n, rng)
        assign = clustering.assign
        k = clustering.centres.shape[0]
        sizes = np.bincount(assign, minlength=k)
        # Within a cluster rank by closeness to its centre; across clusters big ones go first.
        # Unit vectors are at most 2 apart, so 4 per member outweighs any distance difference.
        closeness = 4.0 * sizes[assign] - np.sqrt(clustering.sqdist)
        rows = round_robin(assign, closeness, n)
        return [
            Pick(
                int(i),
                float(sizes[assign[i]] / len(view)),
                f"near the centre of cluster {assign[i] + 1} of {k} "
                f"({sizes[assign[i]] / len(view):.0%} of the pool, {self.source})",
            )
            for i in rows
        ]
