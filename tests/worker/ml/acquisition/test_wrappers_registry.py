import numpy as np
import pytest

from contract.errors import ConfigError
from tests.worker.ml.acquisition.synthetic import blobs, probs_with_confidence
from worker.ml.acquisition import (
    STRATEGIES,
    Deduplicated,
    Entropy,
    PoolView,
    Subsampled,
    get_strategy,
)


def test_dedup_drops_near_duplicates_of_earlier_picks() -> None:
    x, _ = blobs(6, 1, dim=8)
    emb = np.concatenate([np.repeat(x[:1], 5, axis=0), x[1:]])  # rows 0-4 identical
    top = np.array([0.34, 0.35, 0.36, 0.37, 0.38, 0.5, 0.6, 0.7, 0.8, 0.9])
    view = PoolView(probs=probs_with_confidence(top), embeddings=emb)
    assert [p.index for p in Entropy().select(view, 3)] == [0, 1, 2]
    picks = Deduplicated(Entropy()).select(view, 3)
    assert [p.index for p in picks] == [0, 5, 6]


def test_dedup_also_skips_items_already_labelled() -> None:
    x, _ = blobs(4, 1, dim=8)
    view = PoolView(
        probs=probs_with_confidence(np.array([0.4, 0.5, 0.6, 0.7])),
        embeddings=x,
        labeled_embeddings=x[:1],
    )
    assert [p.index for p in Deduplicated(Entropy()).select(view, 2)] == [1, 2]
    keep = Deduplicated(Entropy(), against_labeled=False).select(view, 2)
    assert [p.index for p in keep] == [0, 1]


def test_dedup_returns_fewer_picks_when_the_pool_is_all_duplicates() -> None:
    emb = np.ones((20, 4))
    view = PoolView(probs=np.full((20, 2), 0.5), embeddings=emb)
    assert len(Deduplicated(Entropy()).select(view, 5)) == 1


def test_subsampled_maps_picks_back_to_pool_indices() -> None:
    top = np.linspace(0.34, 0.99, 1000)
    view = PoolView(probs=probs_with_confidence(top))
    picks = Subsampled(Entropy(), max_pool=100).select(view, 10, seed=3)
    rows = [p.index for p in picks]
    assert len(set(rows)) == 10 and max(rows) < 1000
    # every pick is genuinely scored by entropy on the full pool
    full = Entropy().scores(view)
    assert all(full[p.index] == pytest.approx(p.score) for p in picks)
    assert rows != list(range(10))  # not the global top: it ran on a subset
    assert Subsampled(Entropy(), max_pool=5000).select(view, 3)[0].index == 0


def test_every_registered_strategy_builds_and_runs() -> None:
    x, _ = blobs(4, 10, dim=6)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=40)
    view = PoolView(
        probs=probs,
        embeddings=x,
        labeled_embeddings=x[:2],
        variant_probs=(probs, rng.dirichlet([1, 1, 1], size=40)),
        surprisal_embeddings=x,
        class_error=np.array([0.1, 0.5, 0.2]),
    )
    for name in STRATEGIES:
        picks = get_strategy(name, dedup_threshold=0.999, max_pool=30).select(view, 5)
        assert 1 <= len(picks) <= 5 and len({p.index for p in picks}) == len(picks), name
        assert all(p.reason for p in picks), name


def test_registry_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ConfigError, match="choose one of random"):
        get_strategy("magic")
    with pytest.raises(ConfigError, match="takes: measure, n_clusters"):
        get_strategy("cluster_uncertain", clusters=3)
    with pytest.raises(ConfigError, match="uncertainty measure"):
        get_strategy("cluster_uncertain", measure="gini")
    assert get_strategy("ensemble_disagreement", measure="kl").requires == {"variant_probs"}


def test_wants_lists_optional_views_worth_computing() -> None:
    assert "labeled_embeddings" in get_strategy("coreset").wants
    assert "labeled_embeddings" not in get_strategy("coreset").requires
    assert get_strategy("entropy").wants == {"probs"}
    assert get_strategy("entropy", dedup_threshold=0.9).wants == {
        "probs",
        "embeddings",
        "labeled_embeddings",
    }
    assert "grad_embeddings" in get_strategy("badge", max_pool=10).wants
