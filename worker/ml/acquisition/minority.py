"""Minority focus for the polish phase: spend the batch on the classes the dev set finds worst."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import (
    CLASS_ERROR,
    PROBS,
    FloatArray,
    Pick,
    PoolView,
    QueryStrategy,
    top_k,
)


def largest_remainder(weights: FloatArray, n: int) -> np.ndarray:
    """Split ``n`` into integer quotas proportional to ``weights`` (Hamilton's method)."""
    raw = weights / weights.sum() * n
    quota = np.floor(raw).astype(np.int64)
    short = n - int(quota.sum())
    order = np.lexsort((np.arange(raw.shape[0]), -(raw - quota)))
    quota[order[:short]] += 1
    return quota


@dataclass(frozen=True)
class MinorityFocus(QueryStrategy):
    """Class-balanced acquisition weighted by dev-set error (1 - per-class F1).

    Each class gets a share of the batch proportional to its error (at least ``floor`` of the
    average share, so no class is starved). A class fills its share with the items whose
    one-vs-rest probability ``p_c`` is most uncertain (``4 p_c (1 - p_c)``): the members the
    model half-recognises, where a rare class's missed recall usually hides.
    """

    name = "minority_focus"
    needs = frozenset({PROBS, CLASS_ERROR})
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ConfigError(f"floor must be in [0, 1] (share of an even split), got {self.floor}")

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        assert view.probs is not None and view.class_error is not None
        err = np.asarray(view.class_error, dtype=np.float64)
        k = err.shape[0]
        weights = err / err.sum() if err.sum() > 0 else np.full(k, 1.0 / k)
        weights = np.maximum(weights, self.floor / k)
        quota = largest_remainder(weights, n)
        ovr = 4.0 * view.probs * (1.0 - view.probs)
        taken: dict[int, int] = {}
        for c in np.lexsort((np.arange(k), -weights)):
            want = int(quota[c])
            if want == 0:
                continue
            for i in top_k(ovr[:, c], want + len(taken)):
                if want == 0:
                    break
                if int(i) not in taken:
                    taken[int(i)] = int(c)
                    want -= 1
        rows = np.fromiter(taken, dtype=np.int64)
        cls = np.fromiter(taken.values(), dtype=np.int64)
        score = weights[cls] * ovr[rows, cls]
        order = np.lexsort((rows, -score))
        return [
            Pick(int(rows[j]), float(score[j]), _reason(view, int(rows[j]), int(cls[j])))
            for j in order
        ]


def _reason(view: PoolView, i: int, c: int) -> str:
    assert view.probs is not None and view.class_error is not None
    name = view.class_name(c)
    f1 = 1.0 - float(view.class_error[c])
    return f"p({name}) {view.probs[i, c]:.2f}, dev F1 of {name} {f1:.2f} (minority focus)"
