import numpy as np
import pytest

from contract.errors import ConfigError
from tests.worker.ml.acquisition.synthetic import blobs
from worker.ml.acquisition import AlpsColdStart, MinorityFocus, PoolView
from worker.ml.acquisition.minority import largest_remainder


def test_largest_remainder_sums_to_n_and_is_proportional() -> None:
    q = largest_remainder(np.array([0.5, 0.3, 0.2]), 7)
    assert q.sum() == 7 and q.tolist() == [4, 2, 1]


def test_minority_focus_spends_most_of_the_batch_on_the_worst_class() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=300)
    view = PoolView(
        probs=probs, class_error=np.array([0.05, 0.70, 0.25]), label_names=("a", "b", "c")
    )
    picks = MinorityFocus().select(view, 20)
    assert len({p.index for p in picks}) == 20
    focus = [p for p in picks if "p('b')" in p.reason]
    assert len(focus) == 14  # 0.70 / 1.00 of the batch
    assert "dev F1 of 'b' 0.30" in focus[0].reason
    # the picks for 'b' are the rows where membership in 'b' is most uncertain
    ovr = 4 * probs[:, 1] * (1 - probs[:, 1])
    assert min(ovr[p.index] for p in focus) >= np.sort(ovr)[-14] - 1e-12


def test_minority_focus_without_errors_splits_evenly_and_needs_class_error() -> None:
    probs = np.random.default_rng(1).dirichlet([1, 1], size=50)
    picks = MinorityFocus().select(PoolView(probs=probs, class_error=np.zeros(2)), 10)
    assert sum("class 0" in p.reason for p in picks) == 5
    with pytest.raises(ConfigError, match="class_error"):
        MinorityFocus().select(PoolView(probs=probs), 10)


def test_alps_picks_the_item_nearest_each_centre() -> None:
    x, ids = blobs(4, 50, dim=6, spread=0.05, seed=2)
    big = np.concatenate([x, x[ids == 2]])  # blob 2 twice as large
    big_ids = np.concatenate([ids, ids[ids == 2]])
    picks = AlpsColdStart().select(PoolView(surprisal_embeddings=big), 4)
    rows = [p.index for p in picks]
    assert sorted(big_ids[rows].tolist()) == [0, 1, 2, 3]
    assert big_ids[rows[0]] == 2  # the biggest cluster comes first
    for r in rows:
        members = np.flatnonzero(big_ids == big_ids[r])
        centre = big[members].mean(axis=0)
        centre /= np.linalg.norm(centre)
        best = np.linalg.norm(big[members] - centre, axis=1).min()
        assert np.linalg.norm(big[r] - centre) == pytest.approx(best, abs=1e-9)
    assert "of 4" in picks[0].reason and "surprisal" in picks[0].reason


def test_alps_needs_surprisal_unless_told_to_use_embeddings() -> None:
    x, _ = blobs(3, 10)
    with pytest.raises(ConfigError, match="surprisal_embeddings"):
        AlpsColdStart().select(PoolView(embeddings=x), 3)
    assert len(AlpsColdStart(source="embeddings").select(PoolView(embeddings=x), 3)) == 3
