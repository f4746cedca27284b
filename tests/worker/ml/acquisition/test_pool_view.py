from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from contract.errors import ConfigError
from worker.ml.acquisition import PoolView, build_pool_view, get_strategy


def test_rows_must_agree_across_views() -> None:
    with pytest.raises(ConfigError, match="same pool items"):
        PoolView(probs=np.full((4, 2), 0.5), embeddings=np.ones((5, 3)))


def test_nan_scores_are_rejected_with_advice() -> None:
    probs = np.full((3, 2), 0.5)
    probs[1, 0] = np.nan
    with pytest.raises(ConfigError, match="re-score"):
        PoolView(probs=probs)


def test_empty_view_and_single_variant_are_rejected() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        PoolView()
    with pytest.raises(ConfigError, match="two adapter variants"):
        PoolView(variant_probs=(np.full((3, 2), 0.5),))


def test_class_error_must_match_the_classes() -> None:
    with pytest.raises(ConfigError, match="3 classes"):
        PoolView(probs=np.full((3, 2), 0.5), class_error=np.array([0.1, 0.2, 0.3]))


def test_take_keeps_rows_aligned() -> None:
    view = PoolView(probs=np.arange(10.0).reshape(5, 2), embeddings=np.arange(15.0).reshape(5, 3))
    sub = view.take(np.array([4, 1]))
    assert len(sub) == 2
    assert sub.probs is not None and sub.embeddings is not None
    assert sub.probs[0].tolist() == [8.0, 9.0] and sub.embeddings[1].tolist() == [3.0, 4.0, 5.0]


@dataclass
class Scored:
    probs: np.ndarray
    embeddings: np.ndarray


class FakeModel:
    """Probabilities and embeddings derived from text length, so rows are checkable."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append("predict_proba")
        p = np.array([[len(t) / 10, 1 - len(t) / 10] for t in texts])
        return p

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append("embed")
        return np.array([[len(t), 1.0] for t in texts]) / 10

    def score(self, texts: Sequence[str]) -> Scored:
        self.calls.append("score")
        return Scored(self.predict_proba(texts), self.embed(texts))


def test_build_pool_view_scores_once_and_embeds_the_labelled_set() -> None:
    model = FakeModel()
    strategy = get_strategy("coreset")
    view = build_pool_view(model, ["a", "bbb"], requires=strategy.requires, labeled_texts=["bbbb"])
    assert model.calls[0] == "score"
    assert view.probs is not None and view.probs[1, 0] == pytest.approx(0.3)
    assert view.labeled_embeddings is not None and view.labeled_embeddings.shape == (1, 2)
    assert [p.index for p in strategy.select(view, 2)] == [0, 1]


def test_build_pool_view_explains_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="cold start"):
        build_pool_view(None, ["a"], requires=frozenset({"probs"}))
    with pytest.raises(ConfigError, match="two trained adapter variants"):
        build_pool_view(FakeModel(), ["a"], requires=frozenset({"variant_probs"}))
    with pytest.raises(ConfigError, match="surprisal"):
        build_pool_view(None, ["a"], requires=frozenset({"surprisal_embeddings"}))
    view = build_pool_view(
        FakeModel(),
        ["a", "bb"],
        requires=frozenset({"variant_probs"}),
        variants=[FakeModel(), FakeModel()],
    )
    assert view.variant_probs is not None and len(view.variant_probs) == 2
