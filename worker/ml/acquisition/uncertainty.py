"""Random sampling and the three classic uncertainty scores over class probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.ml.acquisition.base import (
    PROBS,
    FloatArray,
    Pick,
    PoolView,
    QueryStrategy,
    ScoreStrategy,
)


def entropy(probs: FloatArray) -> FloatArray:
    """Shannon entropy in nats per row; 0 * log 0 counts as 0."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(p)).sum(axis=1)


def top_two(probs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The largest and second largest probability per row (a partial sort, not a full one)."""
    if probs.shape[1] < 2:
        ones = np.ones(probs.shape[0], dtype=probs.dtype)
        return ones, np.zeros_like(ones)
    part = np.partition(probs, probs.shape[1] - 2, axis=1)
    return part[:, -1], part[:, -2]


def describe_uncertainty(measure: str, score: float) -> str:
    """An uncertainty score as the annotator reads it: margin and confidence are ``1 - score``."""
    if measure == "margin":
        return f"margin {1.0 - score:.2f} between the top two classes"
    if measure == "least_confidence":
        return f"confidence {1.0 - score:.2f}"
    return f"entropy {score:.2f}"


@dataclass(frozen=True)
class RandomSampling(QueryStrategy):
    """Uniform random picks: the baseline every other strategy must beat."""

    name = "random"
    needs = frozenset()

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        rows = rng.choice(len(view), size=n, replace=False)
        return [Pick(int(i), 0.0, "random draw") for i in rows]


@dataclass(frozen=True)
class LeastConfidence(ScoreStrategy):
    """Items whose most likely class has the lowest probability."""

    name = "least_confidence"
    needs = frozenset({PROBS})

    def scores(self, view: PoolView) -> FloatArray:
        assert view.probs is not None
        return 1.0 - view.probs.max(axis=1)

    def describe(self, view: PoolView, scores: FloatArray, index: int) -> str:
        return describe_uncertainty(self.name, float(scores[index]))


@dataclass(frozen=True)
class Margin(ScoreStrategy):
    """Smallest gap between the two most likely classes first; ties go to the lower index."""

    name = "margin"
    needs = frozenset({PROBS})

    def scores(self, view: PoolView) -> FloatArray:
        assert view.probs is not None
        first, second = top_two(view.probs)
        return 1.0 - (first - second)

    def describe(self, view: PoolView, scores: FloatArray, index: int) -> str:
        return describe_uncertainty(self.name, float(scores[index]))


@dataclass(frozen=True)
class Entropy(ScoreStrategy):
    """Items whose predicted class distribution has the highest entropy."""

    name = "entropy"
    needs = frozenset({PROBS})

    def scores(self, view: PoolView) -> FloatArray:
        assert view.probs is not None
        return entropy(view.probs)

    def describe(self, view: PoolView, scores: FloatArray, index: int) -> str:
        return describe_uncertainty(self.name, float(scores[index]))
