"""The factory that builds a strategy from a name and params (names: ``contract.strategies``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from contract.errors import ConfigError
from contract.strategies import STRATEGIES
from worker.ml.acquisition.badge import Badge
from worker.ml.acquisition.base import QueryStrategy
from worker.ml.acquisition.cold_start import AlpsColdStart
from worker.ml.acquisition.diversity import ClusterThenUncertain, CoreSet
from worker.ml.acquisition.ensemble import EnsembleDisagreement
from worker.ml.acquisition.minority import MinorityFocus
from worker.ml.acquisition.uncertainty import Entropy, LeastConfidence, Margin, RandomSampling
from worker.ml.acquisition.wrappers import Deduplicated, Subsampled

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

if tuple(_CLASSES) != STRATEGIES:  # the catalogue the web lists is exactly what is built here
    raise ImportError(
        f"contract.strategies lists {STRATEGIES}, the registry builds {tuple(_CLASSES)}"
    )


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
