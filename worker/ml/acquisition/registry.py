"""Strategy names for the UI dropdown and a factory that builds one from a name and params."""

from __future__ import annotations

import dataclasses
from typing import Any

from worker.ml.acquisition.badge import Badge
from worker.ml.acquisition.base import QueryStrategy
from worker.ml.acquisition.cold_start import AlpsColdStart
from worker.ml.acquisition.diversity import ClusterThenUncertain, CoreSet
from worker.ml.acquisition.ensemble import EnsembleDisagreement
from worker.ml.acquisition.minority import MinorityFocus
from worker.ml.acquisition.uncertainty import Entropy, LeastConfidence, Margin, RandomSampling
from worker.ml.acquisition.wrappers import Deduplicated, Subsampled
from worker.ml.errors import ConfigError

_CLASSES: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling,
        LeastConfidence,
        Margin,
        Entropy,
        CoreSet,
        ClusterThenUncertain,
        EnsembleDisagreement,
        Badge,
        MinorityFocus,
        AlpsColdStart,
    )
}

STRATEGIES: tuple[str, ...] = tuple(_CLASSES)
"""Every strategy name, in the order the UI lists them."""

DESCRIPTIONS: dict[str, str] = {
    "random": "Random sampling (baseline)",
    "least_confidence": "Least confidence",
    "margin": "Smallest margin between the top two classes",
    "entropy": "Highest predictive entropy",
    "coreset": "Core-set: cover the embedding space (greedy k-center)",
    "cluster_uncertain": "Hybrid: k-means clusters, smallest-margin item per cluster (default)",
    "ensemble_disagreement": "Disagreement between two adapter variants",
    "badge": "BADGE: diverse gradient embeddings (uncertain and diverse)",
    "minority_focus": "Minority focus: classes with the worst dev F1 (polish phase)",
    "alps": "Cold start (ALPS): representative items before any label",
}

DEFAULT_STRATEGY = "cluster_uncertain"
"""k-means clusters, then the smallest-margin item per cluster: the best area under the learning
curve on both R8 (imbalanced, 8 classes) and 20NG (balanced, 20 classes) in the strategy study,
where every single-criterion strategy lost on at least one of them (docs/results.md)."""


def get_strategy(
    name: str,
    *,
    max_pool: int | None = None,
    dedup_threshold: float | None = None,
    **params: Any,
) -> QueryStrategy:
    """Build strategy ``name`` with ``params``; optionally wrap it in subsampling and dedup.

    ``max_pool`` runs the strategy on a random subset of a larger pool; ``dedup_threshold``
    drops picks within that cosine similarity of an earlier pick or a labelled item.
    """
    cls = _CLASSES.get(name)
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    accepted = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - accepted)
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise ConfigError(
            f"strategy {name!r} has no parameter {', '.join(unknown)}; it takes: {allowed}"
        )
    strategy: QueryStrategy = cls(**params)
    if dedup_threshold is not None:
        strategy = Deduplicated(strategy, threshold=dedup_threshold)
    if max_pool is not None:
        strategy = Subsampled(strategy, max_pool=max_pool)
    return strategy
