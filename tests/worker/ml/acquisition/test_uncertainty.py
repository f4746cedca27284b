import numpy as np
import pytest

from contract.errors import ConfigError
from tests.worker.ml.acquisition.synthetic import probs_with_confidence
from worker.ml.acquisition import Entropy, LeastConfidence, Margin, PoolView, RandomSampling, top_k
from worker.ml.acquisition.uncertainty import entropy


def test_entropy_picks_the_most_uncertain_rows_in_order() -> None:
    top = np.array([0.99, 0.40, 0.90, 0.34, 0.60, 0.95])
    view = PoolView(probs=probs_with_confidence(top))
    picks = Entropy().select(view, 3)
    assert [p.index for p in picks] == [3, 1, 4]
    assert picks[0].score == pytest.approx(np.log(3), abs=1e-3)
    assert picks[0].reason.startswith("entropy 1.10")


def test_entropy_of_one_hot_is_zero_and_uniform_is_log_k() -> None:
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert entropy(p) == pytest.approx([0.0, np.log(4)])


def test_margin_ranks_by_gap_between_top_two_and_breaks_ties_by_index() -> None:
    probs = np.array(
        [
            [0.50, 0.45, 0.05],  # margin 0.05
            [0.90, 0.05, 0.05],  # 0.85
            [0.40, 0.40, 0.20],  # 0.00
            [0.45, 0.50, 0.05],  # 0.05 (tie with row 0)
            [0.40, 0.20, 0.40],  # 0.00 (tie with row 2)
        ]
    )
    picks = Margin().select(PoolView(probs=probs), 5)
    assert [p.index for p in picks] == [2, 4, 0, 3, 1]
    assert "margin 0.00" in picks[0].reason


def test_margin_differs_from_least_confidence_where_the_runner_up_matters() -> None:
    probs = np.array([[0.5, 0.49, 0.01], [0.4, 0.3, 0.3]])
    view = PoolView(probs=probs)
    assert Margin().select(view, 1)[0].index == 0
    assert LeastConfidence().select(view, 1)[0].index == 1
    assert LeastConfidence().select(view, 1)[0].reason == "confidence 0.40"


def test_uniform_rows_are_picked_in_index_order() -> None:
    view = PoolView(probs=np.full((50, 4), 0.25))
    assert [p.index for p in Entropy().select(view, 5)] == [0, 1, 2, 3, 4]


def test_top_k_matches_a_stable_full_sort_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=500).astype(float)
    expected = np.lexsort((np.arange(500), -scores))
    for k in (1, 7, 100, 499, 500, 800):
        assert top_k(scores, k).tolist() == expected[:k].tolist()


def test_random_is_seeded_distinct_and_covers_the_pool() -> None:
    view = PoolView(probs=np.full((30, 2), 0.5))
    a = [p.index for p in RandomSampling().select(view, 10, seed=1)]
    b = [p.index for p in RandomSampling().select(view, 10, seed=1)]
    c = [p.index for p in RandomSampling().select(view, 10, seed=2)]
    assert a == b and a != c and len(set(a)) == 10
    assert sorted(p.index for p in RandomSampling().select(view, 99)) == list(range(30))


def test_query_size_must_be_positive_and_caps_at_the_pool() -> None:
    view = PoolView(probs=np.full((3, 2), 0.5))
    with pytest.raises(ConfigError, match="at least 1"):
        Entropy().select(view, 0)
    assert len(Entropy().select(view, 10)) == 3


def test_strategy_names_the_missing_view() -> None:
    view = PoolView(embeddings=np.eye(3))
    with pytest.raises(ConfigError, match="needs probs"):
        Entropy().select(view, 1)
