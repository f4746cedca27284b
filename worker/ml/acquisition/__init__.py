"""Active-learning acquisition: strategies over a precomputed pool view.

Typical use in the worker::

    strategy = get_strategy("cluster_uncertain", dedup_threshold=0.95)
    view = build_pool_view(classifier, pool_texts, requires=strategy.requires,
                           labeled_texts=labeled_texts)
    picks = strategy.select(view, 100)   # [Pick(index, score, reason), ...] best first
"""

from contract.strategies import DEFAULT_STRATEGY, DESCRIPTIONS, STRATEGIES
from worker.ml.acquisition.badge import Badge
from worker.ml.acquisition.base import Pick, PoolView, QueryStrategy, ScoreStrategy, top_k
from worker.ml.acquisition.cold_start import AlpsColdStart
from worker.ml.acquisition.diversity import ClusterThenUncertain, CoreSet
from worker.ml.acquisition.ensemble import EnsembleDisagreement
from worker.ml.acquisition.minority import MinorityFocus
from worker.ml.acquisition.pool import ScoringModel, build_pool_view
from worker.ml.acquisition.registry import get_strategy
from worker.ml.acquisition.uncertainty import Entropy, LeastConfidence, Margin, RandomSampling
from worker.ml.acquisition.wrappers import Deduplicated, Subsampled

__all__ = [
    "DEFAULT_STRATEGY",
    "DESCRIPTIONS",
    "STRATEGIES",
    "AlpsColdStart",
    "Badge",
    "ClusterThenUncertain",
    "CoreSet",
    "Deduplicated",
    "EnsembleDisagreement",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "MinorityFocus",
    "Pick",
    "PoolView",
    "QueryStrategy",
    "RandomSampling",
    "ScoreStrategy",
    "ScoringModel",
    "Subsampled",
    "build_pool_view",
    "get_strategy",
    "top_k",
]
