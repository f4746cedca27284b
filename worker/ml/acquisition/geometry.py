"""Distance-based building blocks shared by core-set, BADGE, the hybrid and the ALPS cold start.

Pools reach 100,000 rows, so nothing here builds an N x N (or even N x k at once) matrix:
distances to one new centre are one matrix-vector product, and row-by-centre distances are
computed in row chunks. Extra memory stays a small fraction of the embedding matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.ml.acquisition.base import FloatArray, IntArray

ROW_CHUNK = 8192


class Space:
    """Points that expose squared norms and dot products with one of their own rows."""

    sqnorms: FloatArray

    def __len__(self) -> int:
        return int(self.sqnorms.shape[0])

    def dots_with(self, j: int) -> FloatArray:
        raise NotImplementedError

    def sqdist_to(self, j: int) -> FloatArray:
        """Squared Euclidean distance of every row to row ``j``, clipped at 0 (rounding)."""
        d = self.sqnorms + self.sqnorms[j] - 2.0 * self.dots_with(j)
        return np.maximum(d, 0.0, out=d)


class DenseSpace(Space):
    """Rows of a dense matrix (embeddings, or materialised gradient embeddings)."""

    def __init__(self, x: FloatArray) -> None:
        self.x = x
        self.sqnorms = np.einsum("ij,ij->i", x, x)

    def dots_with(self, j: int) -> FloatArray:
        return self.x @ self.x[j]


class OuterSpace(Space):
    """Rows ``a_i (outer) h_i`` without materialising them (BADGE's last-layer gradients).

    For a linear head, the loss gradient w.r.t. the weights for item i with pseudo-label y is
    ``(p_i - e_y) h_i^T``; its inner product factorises as ``(a_i . a_j) (h_i . h_j)``, so the
    (n, k*d) gradient matrix never needs to exist.
    """

    def __init__(self, a: FloatArray, h: FloatArray) -> None:
        self.a, self.h = a, h
        self.sqnorms = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)

    def dots_with(self, j: int) -> FloatArray:
        return (self.a @ self.a[j]) * (self.h @ self.h[j])


def min_sqdist_to_set(x: FloatArray, centres: FloatArray) -> FloatArray:
    """For every row of ``x``, the squared distance to its nearest row of ``centres`` (chunked)."""
    out = np.full(x.shape[0], np.inf, dtype=np.float64)
    if centres.shape[0] == 0:
        return out
    c_sq = np.einsum("ij,ij->i", centres, centres)
    for start in range(0, x.shape[0], ROW_CHUNK):
        rows = x[start : start + ROW_CHUNK]
        d = np.einsum("ij,ij->i", rows, rows)[:, None] + c_sq[None, :] - 2.0 * (rows @ centres.T)
        out[start : start + ROW_CHUNK] = np.maximum(d.min(axis=1), 0.0)
    return out


def greedy_k_center(
    space: Space, n: int, initial: FloatArray | None = None
) -> tuple[IntArray, FloatArray]:
    """Farthest-first traversal: each pick is the row farthest from all centres so far.

    ``initial`` holds each row's squared distance to existing centres (the labelled set); with
    none, the first pick is the row nearest the pool's centroid. Returns picks and the distance
    (not squared) each had to its nearest centre when picked.
    """
    if initial is None:
        first = _nearest_to_centroid(space)
        mind = space.sqdist_to(first).astype(np.float64)
        picks, dists = [first], [float("nan")]
    else:
        mind = initial.astype(np.float64, copy=True)
        picks, dists = [], []
    for i in picks:
        mind[i] = -1.0
    while len(picks) < n:
        j = int(np.argmax(mind))
        picks.append(j)
        dists.append(float(np.sqrt(max(mind[j], 0.0))))
        np.minimum(mind, space.sqdist_to(j), out=mind)
        mind[picks] = -1.0
    return np.asarray(picks, dtype=np.int64), np.asarray(dists)


def _nearest_to_centroid(space: Space) -> int:
    if isinstance(space, DenseSpace):
        centroid = space.x.mean(axis=0)
        d = space.sqnorms - 2.0 * (space.x @ centroid)
        return int(np.argmin(d))
    return int(np.argmax(space.sqnorms))


def kmeanspp_seeds(
    space: Space, n: int, rng: np.random.Generator, first: int | None = None
) -> tuple[IntArray, FloatArray]:
    """k-means++ seeding (D^2 sampling): far rows are likely, but outliers are not guaranteed.

    BADGE uses it in gradient space: large gradients (uncertain rows) sit far from the origin,
    and D^2 sampling spreads the picks. Returns picks and each pick's distance when sampled.
    """
    start = int(np.argmax(space.sqnorms)) if first is None else first
    picks, dists = [start], [float(np.sqrt(space.sqnorms[start]))]
    mind = space.sqdist_to(start).astype(np.float64)
    mind[start] = 0.0
    while len(picks) < n:
        total = mind.sum()
        if total <= 0.0:  # every remaining row coincides with a centre: take the next unpicked
            j = int(np.flatnonzero(~np.isin(np.arange(len(space)), picks))[0])
        else:
            j = int(rng.choice(len(space), p=mind / total))
        picks.append(j)
        dists.append(float(np.sqrt(mind[j])))
        np.minimum(mind, space.sqdist_to(j), out=mind)
        mind[picks] = 0.0
    return np.asarray(picks, dtype=np.int64), np.asarray(dists)


@dataclass(frozen=True)
class Clustering:
    centres: FloatArray  # (k, d)
    assign: IntArray  # (n,) cluster of each row
    sqdist: FloatArray  # (n,) squared distance of each row to its centre


def assign_to_centres(x: FloatArray, centres: FloatArray) -> tuple[IntArray, FloatArray]:
    """Nearest centre and its squared distance for every row, in row chunks."""
    assign = np.empty(x.shape[0], dtype=np.int64)
    sqd = np.empty(x.shape[0], dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", centres, centres)
    for start in range(0, x.shape[0], ROW_CHUNK):
        rows = x[start : start + ROW_CHUNK]
        d = c_sq[None, :] - 2.0 * (rows @ centres.T)
        a = d.argmin(axis=1)
        assign[start : start + ROW_CHUNK] = a
        r_sq = np.einsum("ij,ij->i", rows, rows)
        sqd[start : start + ROW_CHUNK] = np.maximum(d[np.arange(len(a)), a] + r_sq, 0.0)
    return assign, sqd


def kmeans(
    x: FloatArray,
    k: int,
    rng: np.random.Generator,
    *,
    max_iter: int = 25,
    fit_sample: int = 20_000,
    tol: float = 1e-4,
) -> Clustering:
    """Lloyd's k-means with k-means++ seeding, fitted on at most ``fit_sample`` rows.

    Fitting the centres on a random sample and assigning every row once keeps large pools fast;
    on pools of up to ``fit_sample`` rows it is exact Lloyd.
    """
    k = min(k, x.shape[0])
    fit = x
    if x.shape[0] > fit_sample:
        fit = x[np.sort(rng.choice(x.shape[0], size=fit_sample, replace=False))]
    seeds, _ = kmeanspp_seeds(DenseSpace(fit), k, rng, first=int(rng.integers(fit.shape[0])))
    centres = fit[seeds].copy()  # same dtype as x: mixed-dtype matmuls skip BLAS
    for _ in range(max_iter):
        assign, _ = assign_to_centres(fit, centres)
        moved = _update_centres(fit, assign, centres)
        if moved <= tol:
            break
    assign, sqd = assign_to_centres(x, centres)
    return Clustering(centres=centres, assign=assign, sqdist=sqd)


def _update_centres(x: FloatArray, assign: IntArray, centres: FloatArray) -> float:
    """Move centres to their members' mean in place; empty clusters keep their centre."""
    k = centres.shape[0]
    sums = np.zeros(centres.shape, dtype=np.float64)
    for start in range(0, x.shape[0], ROW_CHUNK):
        a = assign[start : start + ROW_CHUNK]
        onehot = np.zeros((a.shape[0], k), dtype=x.dtype)
        onehot[np.arange(a.shape[0]), a] = 1.0
        sums += onehot.T @ x[start : start + ROW_CHUNK]
    counts = np.bincount(assign, minlength=k)
    filled = counts > 0
    new = centres.copy()
    new[filled] = (sums[filled] / counts[filled, None]).astype(centres.dtype)
    moved = float(np.sqrt(((new - centres) ** 2).sum(axis=1)).max())
    centres[:] = new
    return moved


def l2_normalise(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
