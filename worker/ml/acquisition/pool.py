"""Score the pool once with a model, producing the PoolView any strategy can run on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from contract.errors import ConfigError
from worker.ml.acquisition.base import (
    EMBEDDINGS,
    GRAD_EMBEDDINGS,
    PROBS,
    SURPRISAL_EMBEDDINGS,
    VARIANT_PROBS,
    FloatArray,
    PoolView,
)


@runtime_checkable
class ScoringModel(Protocol):
    """What acquisition needs from a classifier (``worker.ml.classifier.TextClassifier`` fits)."""

    def predict_proba(self, texts: Sequence[str]) -> FloatArray: ...

    def embed(self, texts: Sequence[str]) -> FloatArray: ...


def _probs_and_embeddings(
    model: ScoringModel, texts: Sequence[str], need_probs: bool, need_emb: bool
) -> tuple[FloatArray | None, FloatArray | None]:
    score = getattr(model, "score", None)
    if need_probs and need_emb and callable(score):  # one forward pass gives both
        scored = score(texts)
        return np.asarray(scored.probs), np.asarray(scored.embeddings)
    probs = np.asarray(model.predict_proba(texts)) if need_probs else None
    emb = np.asarray(model.embed(texts)) if need_emb else None
    return probs, emb


def build_pool_view(
    model: ScoringModel | None,
    pool_texts: Sequence[str],
    *,
    requires: frozenset[str],
    labeled_texts: Sequence[str] = (),
    variants: Sequence[ScoringModel] = (),
    surprisal_embeddings: FloatArray | None = None,
    class_error: FloatArray | None = None,
    label_names: Sequence[str] | None = None,
) -> PoolView:
    """Compute exactly the views ``requires`` names (plus probs and embeddings, which are cheap
    together), so the worker can store them and switch strategy without another forward pass."""
    need_model = bool(requires & {PROBS, EMBEDDINGS, GRAD_EMBEDDINGS})
    if model is None and need_model:
        raise ConfigError("this strategy needs a trained classifier; use 'alps' for a cold start")
    probs = emb = labeled = grads = None
    if model is not None:
        probs, emb = _probs_and_embeddings(model, pool_texts, True, True)
        if labeled_texts:
            labeled = np.asarray(model.embed(labeled_texts))
        if GRAD_EMBEDDINGS in requires:
            head_grads = getattr(model, "head_gradient_embeddings", None)
            if head_grads is None:
                raise ConfigError("this model cannot produce head-gradient embeddings")
            grads = np.asarray(head_grads(pool_texts))
    variant_probs = None
    if VARIANT_PROBS in requires:
        if len(variants) < 2:
            raise ConfigError("ensemble disagreement needs two trained adapter variants")
        variant_probs = tuple(np.asarray(v.predict_proba(pool_texts)) for v in variants)
    if SURPRISAL_EMBEDDINGS in requires and surprisal_embeddings is None:
        raise ConfigError("the ALPS cold start needs surprisal embeddings from the TAPT model")
    return PoolView(
        probs=probs,
        embeddings=emb,
        labeled_embeddings=labeled,
        variant_probs=variant_probs,
        grad_embeddings=grads,
        surprisal_embeddings=surprisal_embeddings,
        class_error=class_error,
        label_names=tuple(label_names) if label_names is not None else None,
    )
