"""The candidate set a large pool's round scores (:mod:`worker.tasks.candidates`)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.tasks import candidates
from worker.tasks.candidates import candidate_budget, choose_candidates


def test_a_pool_within_the_budget_is_scored_whole() -> None:
    budget = candidate_budget(10)
    assert budget == candidates.CANDIDATE_MIN
    assert choose_candidates(budget, 10, None, seed=0) is None
    assert candidate_budget(1000) == 1000 * candidates.CANDIDATES_PER_PICK


def test_the_live_heads_least_certain_items_are_all_candidates_plus_a_random_share() -> None:
    rng = np.random.default_rng(0)
    size, picks = 20_000, 150
    margins = rng.random(size)
    chosen = choose_candidates(size, picks, margins, seed=1)
    assert chosen is not None and chosen.source == "live head"
    budget = candidate_budget(picks)
    rows = chosen.rows
    assert len(rows) == budget and len(np.unique(rows)) == budget
    assert np.all(np.diff(rows) > 0)  # ascending, as the pool is ordered
    n_random = round(candidates.RANDOM_SHARE * budget)
    doubt = np.argsort(margins)[: budget - n_random]
    assert set(doubt.tolist()) <= set(rows.tolist())
    # the random share reaches confident items too, well beyond the doubtful cut
    cut = np.sort(margins)[budget - n_random - 1]
    assert (margins[rows] > cut).sum() == n_random
    assert np.median(margins[rows][margins[rows] > cut]) > 0.5
    again = choose_candidates(size, picks, margins, seed=1)
    assert again is not None and np.array_equal(again.rows, rows)
    assert "scored 1,500 of 20,000 pool items (candidates by live head)" in chosen.describe()


def test_without_a_live_head_the_candidates_are_a_uniform_sample() -> None:
    chosen = choose_candidates(50_000, 10, None, seed=3)
    assert chosen is not None and chosen.source == "random"
    assert len(chosen.rows) == candidates.CANDIDATE_MIN
    # spread over the whole pool, not its start
    assert chosen.rows.min() < 5_000 and chosen.rows.max() > 45_000
    other = choose_candidates(50_000, 10, None, seed=4)
    assert other is not None and not np.array_equal(other.rows, chosen.rows)


def test_margins_must_match_the_pool() -> None:
    with pytest.raises(ValueError, match="margins for a pool"):
        choose_candidates(5_000, 10, np.zeros(10), seed=0)
