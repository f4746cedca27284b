"""Label budgets: how big the next query batch is, and when the polish phase starts.

A share of the budget (the reserve, 10-20 % in the playbook) is held back for a final polish
phase: the model's blind spots often surface late, and by then the dev set shows which classes
are weakest, so the reserve is spent with minority focus on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contract.errors import ConfigError

DEFAULT_BATCH_SIZE = 100
DEFAULT_RESERVE_FRACTION = 0.15
RECOMMENDED_BATCH_SIZE = (50, 200)
RECOMMENDED_RESERVE_FRACTION = (0.10, 0.20)
MAX_RESERVE_FRACTION = 0.5
DEFAULT_LABEL_BUDGET = 1000
MAX_LABEL_BUDGET = 10_000_000
MAX_BATCH_SIZE = 10_000
DEFAULT_STOP_THRESHOLD = 0.2
MAX_STOP_THRESHOLD = 100.0
"""The stop threshold is a dev gain in percentage points per 100 labels."""


class Phase(StrEnum):
    """Which part of the budget the next batch draws from."""

    ACQUIRE = "acquire"  # the main budget: the project's chosen strategy
    POLISH = "polish"  # the reserve: minority focus on the classes with the worst dev F1
    DONE = "done"  # budget spent


@dataclass(frozen=True)
class BatchPlan:
    size: int
    phase: Phase


@dataclass(frozen=True)
class BudgetPlan:
    """A label budget split into a main phase and a reserve for the polish phase.

    Seed labels count against the budget like any other label.
    """

    budget: int
    batch_size: int = DEFAULT_BATCH_SIZE
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"budget must be at least 1 label, got {self.budget}")
        if self.batch_size < 1:
            raise ConfigError(
                f"batch_size must be at least 1, got {self.batch_size} "
                f"(the playbook suggests {RECOMMENDED_BATCH_SIZE[0]}-{RECOMMENDED_BATCH_SIZE[1]})"
            )
        if not 0.0 <= self.reserve_fraction <= MAX_RESERVE_FRACTION:
            raise ConfigError(
                f"reserve_fraction must be in [0, {MAX_RESERVE_FRACTION}], got "
                f"{self.reserve_fraction} (the playbook suggests 0.10-0.20)"
            )

    @classmethod
    def for_project(cls, label_budget: int, batch_size: int, reserve_fraction: float) -> BudgetPlan:
        """The plan for a project's stored settings, clamped into the valid ranges (settings are
        validated when saved; the clamp keeps an old or hand-edited row from breaking a page or
        a worker)."""
        return cls(
            budget=max(1, label_budget),
            batch_size=max(1, batch_size),
            reserve_fraction=min(max(reserve_fraction, 0.0), MAX_RESERVE_FRACTION),
        )

    def spent(self, labels_used: int) -> bool:
        """No label is left to ask for."""
        return labels_used >= self.budget

    @property
    def reserve(self) -> int:
        """Labels held back for the polish phase."""
        return round(self.budget * self.reserve_fraction)

    @property
    def main_budget(self) -> int:
        return self.budget - self.reserve

    def next_batch(self, labels_used: int) -> BatchPlan:
        """Size and phase of the next query, given how many labels exist already."""
        if labels_used < 0:
            raise ConfigError(f"labels_used cannot be negative, got {labels_used}")
        if labels_used >= self.budget:
            return BatchPlan(0, Phase.DONE)
        if labels_used < self.main_budget:
            return BatchPlan(min(self.batch_size, self.main_budget - labels_used), Phase.ACQUIRE)
        return BatchPlan(min(self.batch_size, self.budget - labels_used), Phase.POLISH)

    def schedule(self, labels_used: int) -> list[BatchPlan]:
        """Every remaining batch if each is labelled in full (for the lead's budget page)."""
        plans: list[BatchPlan] = []
        while (plan := self.next_batch(labels_used)).phase is not Phase.DONE:
            plans.append(plan)
            labels_used += plan.size
        return plans

    def advice(self) -> list[str]:
        """Settings outside the playbook's ranges; allowed, but worth a second look."""
        notes = []
        low, high = RECOMMENDED_BATCH_SIZE
        if not low <= self.batch_size <= high:
            notes.append(
                f"batch size {self.batch_size} is outside {low}-{high}: too big dilutes the "
                "signal, too small wastes a retrain per few labels"
            )
        low_r, high_r = RECOMMENDED_RESERVE_FRACTION
        if not low_r <= self.reserve_fraction <= high_r:
            notes.append(
                f"reserve {self.reserve_fraction:.0%} is outside {low_r:.0%}-{high_r:.0%} of the "
                "budget held back for the polish phase"
            )
        return notes
