"""Small synthetic pools where the right pick is known by construction."""

from __future__ import annotations

import numpy as np


def blobs(
    n_blobs: int, per_blob: int, dim: int = 8, spread: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Tight, well-separated unit-norm clusters: returns (embeddings, blob id per row)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_blobs] if n_blobs <= dim else rng.normal(size=(n_blobs, dim))
    ids = np.repeat(np.arange(n_blobs), per_blob)
    x = centres[ids] + spread * rng.normal(size=(ids.shape[0], dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, ids


def probs_with_confidence(top: np.ndarray, k: int = 3) -> np.ndarray:
    """Rows whose top class (class 0) has probability ``top``; the rest is spread evenly."""
    p = np.empty((top.shape[0], k))
    p[:, 0] = top
    p[:, 1:] = ((1.0 - top) / (k - 1))[:, None]
    return p
