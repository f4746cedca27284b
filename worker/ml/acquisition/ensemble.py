"""Disagreement between adapter variants (e.g. LoRA r=8 and r=16) trained on the same labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import (
    VARIANT_PROBS,
    FloatArray,
    Pick,
    PoolView,
    QueryStrategy,
    top_k,
)


def vote_entropy(variant_probs: tuple[FloatArray, ...]) -> FloatArray:
    """Entropy of the members' hard votes per row (0 when all agree)."""
    k = variant_probs[0].shape[1]
    votes = np.stack([p.argmax(axis=1) for p in variant_probs], axis=1)
    counts = np.zeros((votes.shape[0], k))
    for m in range(votes.shape[1]):
        counts[np.arange(votes.shape[0]), votes[:, m]] += 1.0
    share = counts / votes.shape[1]
    return -(share * np.log(np.where(share > 0, share, 1.0))).sum(axis=1)


def kl_from_consensus(variant_probs: tuple[FloatArray, ...]) -> FloatArray:
    """Mean KL(p_m || consensus) over members (McCallum & Nigam 1998)."""
    stacked = np.clip(np.stack(variant_probs), 1e-12, 1.0)
    consensus = stacked.mean(axis=0)
    return (stacked * (np.log(stacked) - np.log(consensus)[None])).sum(axis=2).mean(axis=0)


@dataclass(frozen=True)
class EnsembleDisagreement(QueryStrategy):
    """Items where the variants disagree: by KL from the consensus, or by vote entropy first.

    ``measure="vote"`` ranks by vote entropy and breaks its many ties (with two members it takes
    only two values) by KL; ``"kl"`` ranks by KL alone, which also sees soft disagreement.
    """

    name = "ensemble_disagreement"
    needs = frozenset({VARIANT_PROBS})
    measure: Literal["vote", "kl"] = "vote"

    def __post_init__(self) -> None:
        if self.measure not in ("vote", "kl"):
            raise ConfigError(f"measure must be 'vote' or 'kl', got {self.measure!r}")

    def _select(self, view: PoolView, n: int, rng: np.random.Generator) -> list[Pick]:
        assert view.variant_probs is not None
        kl = kl_from_consensus(view.variant_probs)
        ve = vote_entropy(view.variant_probs)
        if self.measure == "kl":
            score, rows = kl, top_k(kl, n)
        else:  # vote entropy, ties by KL, then by index
            score, rows = ve, np.lexsort((np.arange(len(view)), -kl, -ve))[:n]
        votes = [p.argmax(axis=1) for p in view.variant_probs]
        return [
            Pick(int(i), float(score[i]), _reason(view, votes, int(i), ve[i], kl[i])) for i in rows
        ]


def _reason(view: PoolView, votes: list[np.ndarray], i: int, ve: float, kl: float) -> str:
    names = " vs ".join(view.class_name(int(v[i])) for v in votes)
    agree = "variants agree" if ve == 0 else f"variants vote {names}"
    return f"{agree}, KL from consensus {kl:.2f}"
