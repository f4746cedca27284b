import numpy as np
import pytest

from tests.worker.ml.acquisition.synthetic import blobs, probs_with_confidence
from worker.ml.acquisition import ClusterThenUncertain, CoreSet, PoolView
from worker.ml.acquisition.geometry import (
    DenseSpace,
    OuterSpace,
    greedy_k_center,
    kmeans,
    min_sqdist_to_set,
)


def naive_k_center(x: np.ndarray, n: int, labeled: np.ndarray) -> list[int]:
    """Reference: the full distance matrix, as textbooks write it."""
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    mind = np.linalg.norm(x[:, None, :] - labeled[None, :, :], axis=2).min(axis=1)
    picks: list[int] = []
    for _ in range(n):
        j = int(np.argmax(mind))
        picks.append(j)
        mind = np.minimum(mind, d[j])
    return picks


def test_coreset_covers_every_separated_cluster_first() -> None:
    x, ids = blobs(5, 40)
    picks = CoreSet().select(PoolView(embeddings=x), 5)
    assert sorted(ids[[p.index for p in picks]].tolist()) == [0, 1, 2, 3, 4]
    assert picks[0].reason.startswith("first centre")


def test_coreset_skips_clusters_the_labelled_set_already_covers() -> None:
    x, ids = blobs(5, 40)
    labeled = x[[0, 1, 40]]  # two items of blob 0, one of blob 1
    picks = CoreSet().select(PoolView(embeddings=x, labeled_embeddings=labeled), 3)
    assert sorted(ids[[p.index for p in picks]].tolist()) == [2, 3, 4]
    assert all(p.score > 1.0 for p in picks)  # blob centres are sqrt(2) apart
    assert "distance 1.4" in picks[0].reason


def test_coreset_matches_the_full_distance_matrix_reference() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 6))
    labeled = rng.normal(size=(4, 6))
    ours = CoreSet().select(PoolView(embeddings=x, labeled_embeddings=labeled), 25)
    assert [p.index for p in ours] == naive_k_center(x, 25, labeled)


def test_chunked_min_distance_matches_dense() -> None:
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(20_000, 5)), rng.normal(size=(7, 5))
    dense = ((x[:, None, :] - c[None]) ** 2).sum(axis=2).min(axis=1)
    assert min_sqdist_to_set(x, c) == pytest.approx(dense, rel=1e-9, abs=1e-9)


def test_factorised_outer_space_equals_the_materialised_one() -> None:
    rng = np.random.default_rng(2)
    a, h = rng.normal(size=(50, 3)), rng.normal(size=(50, 4))
    g = np.einsum("ik,id->ikd", a, h).reshape(50, 12)
    outer, dense = OuterSpace(a, h), DenseSpace(g)
    assert outer.sqnorms == pytest.approx(dense.sqnorms)
    assert outer.sqdist_to(7) == pytest.approx(dense.sqdist_to(7), abs=1e-9)
    start = np.full(50, np.inf)
    assert (
        greedy_k_center(outer, 10, start)[0].tolist()
        == greedy_k_center(dense, 10, start)[0].tolist()
    )


def test_kmeans_recovers_separated_blobs_even_when_fitted_on_a_sample() -> None:
    x, ids = blobs(6, 500)
    for fit_sample in (20_000, 600):
        assign = kmeans(x, 6, np.random.default_rng(0), fit_sample=fit_sample).assign
        # each blob maps to exactly one cluster and vice versa
        pairs = {(int(a), int(b)) for a, b in zip(assign, ids, strict=True)}
        assert len(pairs) == 6


def test_hybrid_takes_one_item_per_cluster_before_any_second_one() -> None:
    x, ids = blobs(4, 30, seed=3)
    rng = np.random.default_rng(4)
    top = np.asarray(rng.uniform(0.4, 0.99, size=x.shape[0]))
    top[ids == 0] = rng.uniform(0.34, 0.36, size=30)  # blob 0 is by far the most uncertain
    probs = probs_with_confidence(top)
    hybrid = ClusterThenUncertain(n_clusters=4, measure="entropy")
    picks = hybrid.select(PoolView(probs=probs, embeddings=x), 10)
    chosen = ids[[p.index for p in picks]]
    assert sorted(chosen[:4].tolist()) == [0, 1, 2, 3]
    assert sorted(chosen[4:8].tolist()) == [0, 1, 2, 3]
    for blob in range(4):  # inside each cluster the first pick is its most uncertain row
        members = np.flatnonzero(ids == blob)
        first = next(p.index for p in picks if ids[p.index] == blob)
        assert first == members[np.argmin(top[members])]
    assert picks[0].reason.startswith("entropy 1.1") and "of 4" in picks[0].reason


def test_hybrid_with_one_cluster_per_pick_never_repeats_a_blob() -> None:
    x, ids = blobs(5, 20, seed=5)
    probs = probs_with_confidence(np.random.default_rng(0).uniform(0.34, 1.0, size=100))
    picks = ClusterThenUncertain().select(PoolView(probs=probs, embeddings=x), 5)
    assert sorted(ids[[p.index for p in picks]].tolist()) == [0, 1, 2, 3, 4]


def test_hybrid_versus_plain_entropy_on_a_skewed_pool() -> None:
    """Plain entropy would spend the whole batch in the one uncertain blob."""
    x, ids = blobs(3, 50, seed=6)
    top = np.where(ids == 0, 0.34, 0.9) + np.linspace(0, 0.01, 150)
    view = PoolView(probs=probs_with_confidence(top), embeddings=x)
    hybrid = ClusterThenUncertain(n_clusters=3).select(view, 3)
    assert len(set(ids[[p.index for p in hybrid]])) == 3


def test_hybrid_reason_states_the_margin_itself_not_one_minus_it() -> None:
    """A near-tie reads "margin 0.0x", as the plain margin strategy says it."""
    x, ids = blobs(2, 10, seed=7)
    probs = np.tile([0.48, 0.46, 0.06], (20, 1))
    picks = ClusterThenUncertain(n_clusters=2).select(PoolView(probs=probs, embeddings=x), 2)
    assert picks[0].reason.startswith("margin 0.02 between the top two classes")
    assert picks[0].score == pytest.approx(0.98)
