"""Score a pool in chunks so the run row shows progress and a cancel takes effect quickly.

``build_pool_view`` scores the whole pool in one call; wrapping the classifier in
:class:`ChunkedScorer` keeps that API while reporting ``score`` progress every chunk and checking
for cancellation between chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.ml.classifier import PoolScores, TextClassifier
from worker.ml.progress import ProgressReporter, check_cancelled

PHASE = "score"
CHUNK = 256


class ChunkedScorer:
    """A ``ScoringModel`` over a TextClassifier that reports progress per chunk of texts."""

    def __init__(
        self, classifier: TextClassifier, reporter: ProgressReporter, *, chunk: int = CHUNK
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 text, got {chunk}")
        self.classifier = classifier
        self.reporter = reporter
        self.chunk = chunk

    def score(self, texts: Sequence[str]) -> PoolScores:
        probs, embeddings = [], []
        total = max(1, -(-len(texts) // self.chunk))
        for step, start in enumerate(range(0, len(texts), self.chunk), start=1):
            part = self.classifier.score(texts[start : start + self.chunk])
            probs.append(part.probs)
            embeddings.append(part.embeddings)
            self.reporter.report(
                phase=PHASE, step=step, total=total, metrics={"items": start + len(part.probs)}
            )
            check_cancelled(self.reporter, PHASE)
        if not probs:
            width = self.classifier.num_labels
            return PoolScores(probs=np.zeros((0, width), np.float32), embeddings=np.zeros((0, 0)))
        return PoolScores(probs=np.concatenate(probs), embeddings=np.concatenate(embeddings))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.score(texts).probs)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classifier.embed(texts))

    def head_gradient_embeddings(self, texts: Sequence[str]) -> Any:
        return self.classifier.head_gradient_embeddings(texts)
