"""BADGE (Ash et al. 2020): k-means++ seeding on the gradient embeddings of the head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.ml.acquisition.base import (
    EMBEDDINGS,
    GRAD_EMBEDDINGS,
    PROBS,
    FloatArray,
    Pick,
    PoolView,
    QueryStrategy,
)
from worker.ml.acquisition.geometry import DenseSpace, OuterSpace, Space, kmeanspp_seeds


def pseudo_label_residual(probs: FloatArray) -> FloatArray:
    """``p - onehot(argmax p)``: the head's loss gradient w.r.t. its logits at the pseudo-label."""
    a = probs.astype(np.float64, copy=True)
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    return a


@dataclass(frozen=True)
class Badge(QueryStrategy):
    """Uncertain and diverse at once: gradient magnitude carries uncertainty, D^2 sampling spreads.

    Uses the classifier's head-gradient embeddings when the view has them; otherwise the
    factorised ``(p - e_yhat) (outer) h`` with the sentence embedding as ``h`` (exact for a linear
    head on that embedding), which never materialises the (n, k*d) matrix.
    """

    name = "badge"
    needs = frozenset({PROBS, EMBEDDINGS})
    optional = frozenset({GRAD_EMBEDDINGS})

    def missing_views(self, view: PoolView) -> list[str]:
        return [] if view.has(GRAD_EMBEDDINGS) else super().missing_views(view)

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        space = self._space(view)
        rows, dists = kmeanspp_seeds(space, n, rng)
        norms = np.sqrt(space.sqnorms)
        return [
            Pick(
                int(i),
                float(d),
                f"gradient norm {norms[i]:.2f}, distance {d:.2f} from earlier picks"
                if k
                else f"largest gradient norm {norms[i]:.2f}",
            )
            for k, (i, d) in enumerate(zip(rows, dists, strict=True))
        ]

    @staticmethod
    def _space(view: PoolView) -> Space:
        if view.grad_embeddings is not None:
            return DenseSpace(view.grad_embeddings)
        assert view.probs is not None and view.embeddings is not None
        return OuterSpace(pseudo_label_residual(view.probs), view.embeddings)
