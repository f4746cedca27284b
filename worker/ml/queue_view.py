"""What the annotator sees next to a queued item: the top predictions and the nearest labelled
exemplars (cosine similarity of pooled embeddings). Pure numpy, no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

NEIGHBOURS = 3
"""Nearest labelled exemplars shown next to each queued item."""
TOP_PREDICTIONS = 3


class Labelled(Protocol):
    """The labelled items, aligned: ``item_ids[i]`` carries label index ``labels[i]``."""

    @property
    def item_ids(self) -> Sequence[int]: ...

    @property
    def labels(self) -> Sequence[int]: ...

    def __len__(self) -> int: ...


def top_predictions(probs: np.ndarray, label_names: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """The most likely labels per row, best first: ``[{"label", "prob"}, ...]``."""
    k = min(TOP_PREDICTIONS, probs.shape[1]) if probs.ndim == 2 else 0
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([{"label": label_names[i], "prob": round(float(row[i]), 4)} for i in order])
    return out


def nearest_labelled(
    embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None,
    labelled: Labelled,
    label_names: tuple[str, ...],
    k: int = NEIGHBOURS,
) -> list[list[dict[str, Any]]]:
    """For each row, the ``k`` most similar labelled items by cosine similarity."""
    if labelled_embeddings is None or len(labelled) == 0 or len(embeddings) == 0:
        return [[] for _ in range(len(embeddings))]
    a = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    b = labelled_embeddings / np.maximum(
        np.linalg.norm(labelled_embeddings, axis=1, keepdims=True), 1e-12
    )
    sims = a @ b.T
    k = min(k, sims.shape[1])
    out = []
    for row in sims:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append(
            [
                {
                    "item_id": labelled.item_ids[j],
                    "label": label_names[labelled.labels[j]],
                    "similarity": round(float(row[j]), 4),
                }
                for j in top
            ]
        )
    return out
