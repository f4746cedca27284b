import pytest

from contract.budget import BatchPlan, BudgetPlan, Phase
from contract.errors import ConfigError


def test_defaults_hold_back_fifteen_percent_for_polish() -> None:
    plan = BudgetPlan(2000)
    assert (plan.batch_size, plan.reserve, plan.main_budget) == (100, 300, 1700)
    assert plan.next_batch(100) == BatchPlan(100, Phase.ACQUIRE)
    assert plan.next_batch(1650) == BatchPlan(50, Phase.ACQUIRE)  # never crosses into the reserve
    assert plan.next_batch(1700) == BatchPlan(100, Phase.POLISH)
    assert plan.next_batch(1950) == BatchPlan(50, Phase.POLISH)
    assert plan.next_batch(2000) == BatchPlan(0, Phase.DONE)
    assert plan.next_batch(2300) == BatchPlan(0, Phase.DONE)


def test_schedule_spends_the_budget_exactly() -> None:
    plans = BudgetPlan(1000, batch_size=150, reserve_fraction=0.2).schedule(labels_used=120)
    assert sum(p.size for p in plans) == 880
    assert [p.phase for p in plans].count(Phase.POLISH) == 2  # 200 reserve in 150 + 50
    assert plans[-1] == BatchPlan(50, Phase.POLISH)
    assert all(p.size > 0 for p in plans)


def test_zero_reserve_has_no_polish_phase() -> None:
    plans = BudgetPlan(300, batch_size=100, reserve_fraction=0.0).schedule(0)
    assert [p.phase for p in plans] == [Phase.ACQUIRE] * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be at least 1"),
        ({"budget": 100, "batch_size": 0}, "suggests 50-200"),
        ({"budget": 100, "reserve_fraction": 0.8}, "reserve_fraction must be in"),
    ],
)
def test_impossible_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BudgetPlan(**kwargs)


def test_advice_flags_settings_outside_the_playbook_ranges() -> None:
    assert BudgetPlan(1000).advice() == []
    notes = BudgetPlan(1000, batch_size=10, reserve_fraction=0.4).advice()
    assert len(notes) == 2 and "outside 50-200" in notes[0]


def test_negative_usage_is_an_error() -> None:
    with pytest.raises(ConfigError):
        BudgetPlan(100).next_batch(-1)


def test_a_projects_stored_settings_are_clamped_into_range() -> None:
    assert BudgetPlan.for_project(0, 0, 0.9) == BudgetPlan(1, 1, 0.5)
    assert BudgetPlan.for_project(500, 40, -0.1) == BudgetPlan(500, 40, 0.0)
    assert BudgetPlan.for_project(500, 40, 0.2) == BudgetPlan(500, 40, 0.2)
    plan = BudgetPlan.for_project(10, 5, 0.0)
    assert not plan.spent(9) and plan.spent(10) and plan.spent(11)
