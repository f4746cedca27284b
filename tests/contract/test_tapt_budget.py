"""TAPT's pool-scaled step budget: epochs over the training blocks, within bounds."""

from __future__ import annotations

import pytest

from contract.tapt_budget import CHARS_PER_TOKEN, estimated_units, planned_steps


def test_epochs_scale_the_steps_with_the_pool_within_the_bounds() -> None:
    plan = dict(max_steps=20_000, epochs=3.0, min_steps=3_000, batch_size=32)
    assert planned_steps(**plan, units=100_000) == 9_375  # 3 x 100,000 / 32
    assert planned_steps(**plan, units=500) == 3_000  # a small pool: the floor
    assert planned_steps(**plan, units=1_000_000) == 20_000  # a huge one: the cap
    assert planned_steps(**plan, units=0) == 3_000


def test_no_epochs_is_the_fixed_budget_and_the_cap_wins_over_the_floor() -> None:
    assert planned_steps(max_steps=200, batch_size=16, units=10**6) == 200
    assert planned_steps(max_steps=500, epochs=3.0, min_steps=3_000, batch_size=32,
                         units=100_000) == 500  # a lead's smaller cap is kept
    assert planned_steps(max_steps=50, epochs=0.5, batch_size=8, units=3) == 1  # never 0


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(batch_size=0), dict(epochs=-1.0),
                                 dict(min_steps=-1), dict(units=-5)])
def test_impossible_budgets_are_refused(bad: dict[str, float]) -> None:
    plan = dict(max_steps=10, epochs=1.0, min_steps=0, batch_size=4, units=8) | bad
    with pytest.raises(ValueError, match=">= "):
        planned_steps(**plan)  # type: ignore[arg-type]


def test_units_are_packed_blocks_estimated_from_characters_or_texts_without_packing() -> None:
    characters = int(128 * CHARS_PER_TOKEN * 10)  # ten blocks of 128 tokens
    assert estimated_units(characters, 128, packing=True, texts=40) == 10
    assert estimated_units(characters + 1, 128, packing=True, texts=40) == 11
    assert estimated_units(characters, 128, packing=False, texts=40) == 40
    assert estimated_units(0, 128, packing=True, texts=0) == 0
