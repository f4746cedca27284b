"""Stopping rules for active learning: each returns a recommendation with its evidence.

The lead decides; the rules only say whether more labels still look worth their cost, and why:
- ``dev_gain``: the dev score rises by less than a threshold per 100 labels over a window;
- ``budget``: the label budget is spent;
- ``acquisition_agreement``: the overlap between two acquisition functions' top-k picks has
  stopped changing (their disagreement converged);
- ``stabilizing_predictions``: with no dev set, the model's predictions on a fixed stop set no
  longer change between rounds (Cohen's kappa > 0.99 over 3 rounds; Bloodgood & Vijay-Shanker,
  "A method for stopping active learning based on stabilizing predictions", CoNLL 2009).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.errors import ConfigError


@dataclass(frozen=True)
class RoundRecord:
    """What one active-learning round left behind."""

    labels: int
    """Labels used when this round's model was trained."""
    dev_score: float | None = None
    """Dev macro-F1 (or accuracy) in [0, 1]; None without a dev set."""
    predictions: np.ndarray | None = None
    """Predicted class per item of a fixed stop set: the same items in the same order each round."""
    agreement: float | None = None
    """Jaccard overlap of two acquisition functions' top-k picks this round (``topk_agreement``)."""


@dataclass(frozen=True)
class StoppingConfig:
    min_gain_points: float = 0.2
    """Dev gain per 100 labels, in percentage points, below which labelling stops paying off."""
    gain_window: int = 3
    """Rounds over which the gain is measured (a least-squares slope over window + 1 points)."""
    metric: str = "macro-F1"
    budget: int | None = None
    agreement_window: int = 3
    agreement_tolerance: float = 0.05
    """Largest change in top-k agreement across the window that still counts as converged."""
    kappa_threshold: float = 0.99
    kappa_window: int = 3

    def __post_init__(self) -> None:
        for name in ("gain_window", "agreement_window", "kappa_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 round, got {getattr(self, name)}")
        if self.min_gain_points < 0:
            raise ConfigError("min_gain_points must be >= 0 (percentage points per 100 labels)")
        if not 0.0 <= self.agreement_tolerance <= 1.0:
            raise ConfigError("agreement_tolerance is a change in Jaccard overlap, in [0, 1]")
        if not -1.0 < self.kappa_threshold <= 1.0:
            raise ConfigError(
                "kappa_threshold must be in (-1, 1]; Bloodgood & Vijay-Shanker use 0.99"
            )
        if self.budget is not None and self.budget < 1:
            raise ConfigError(f"budget must be at least 1 label, got {self.budget}")


@dataclass(frozen=True)
class StopRecommendation:
    rule: str
    fire: bool
    evidence: str
    values: dict[str, float] = field(default_factory=dict)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two labelings beyond chance; 1.0 for identical labelings."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ConfigError("kappa needs two non-empty 1-D prediction arrays over the same items")
    observed = float(np.mean(a == b))
    classes = np.union1d(a, b)
    pa = np.array([np.mean(a == c) for c in classes])
    pb = np.array([np.mean(b == c) for c in classes])
    expected = float(pa @ pb)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def topk_agreement(picks_a: Sequence[int], picks_b: Sequence[int]) -> float:
    """Jaccard overlap of two acquisition functions' picks (1.0 = the same items)."""
    a, b = set(picks_a), set(picks_b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def dev_gain_rule(history: Sequence[RoundRecord], config: StoppingConfig) -> StopRecommendation:
    scored = [r for r in history if r.dev_score is not None]
    need = config.gain_window + 1
    if len(scored) < need:
        return StopRecommendation(
            "dev_gain", False, f"needs {need} rounds with a dev score, has {len(scored)}"
        )
    recent = scored[-need:]
    x = np.array([r.labels for r in recent], dtype=float) / 100.0
    y = np.array([r.dev_score for r in recent], dtype=float) * 100.0
    if np.ptp(x) == 0:
        return StopRecommendation("dev_gain", False, "the window holds no new labels")
    slope = float(np.polyfit(x, y, 1)[0])
    fire = slope < config.min_gain_points
    evidence = (
        f"{config.metric} changed {slope:+.2f} points per 100 labels over the last "
        f"{config.gain_window} rounds ({recent[0].labels}->{recent[-1].labels} labels, "
        f"{y[0]:.1f}->{y[-1]:.1f}); threshold {config.min_gain_points:.2f}"
    )
    return StopRecommendation("dev_gain", fire, evidence, {"gain_per_100": slope})


def budget_rule(history: Sequence[RoundRecord], config: StoppingConfig) -> StopRecommendation:
    if config.budget is None:
        return StopRecommendation("budget", False, "no label budget set")
    used = history[-1].labels if history else 0
    fire = used >= config.budget
    evidence = f"{used} of {config.budget} labels used ({used / config.budget:.0%})"
    return StopRecommendation("budget", fire, evidence, {"used": used, "budget": config.budget})


def agreement_rule(history: Sequence[RoundRecord], config: StoppingConfig) -> StopRecommendation:
    values = [r.agreement for r in history if r.agreement is not None]
    need = config.agreement_window
    if len(values) < need:
        return StopRecommendation(
            "acquisition_agreement", False, f"needs {need} rounds of agreement, has {len(values)}"
        )
    recent = np.array(values[-need:], dtype=float)
    spread = float(np.ptp(recent))
    fire = spread <= config.agreement_tolerance
    evidence = (
        f"top-k agreement of the two acquisition functions moved {spread:.2f} over the last "
        f"{need} rounds ({', '.join(f'{v:.2f}' for v in recent)}); "
        f"converged below {config.agreement_tolerance:.2f}"
    )
    return StopRecommendation(
        "acquisition_agreement", fire, evidence, {"spread": spread, "last": float(recent[-1])}
    )


def stabilizing_predictions_rule(
    history: Sequence[RoundRecord], config: StoppingConfig
) -> StopRecommendation:
    preds = [r.predictions for r in history if r.predictions is not None]
    need = config.kappa_window + 1
    if len(preds) < need:
        return StopRecommendation(
            "stabilizing_predictions",
            False,
            f"needs {need} rounds of stop-set predictions, has {len(preds)}",
        )
    recent = preds[-need:]
    kappas = [cohen_kappa(a, b) for a, b in zip(recent[:-1], recent[1:], strict=True)]
    mean = float(np.mean(kappas))
    fire = mean > config.kappa_threshold
    evidence = (
        f"Cohen's kappa between successive rounds on {len(recent[-1])} stop-set items: "
        f"{', '.join(f'{k:.3f}' for k in kappas)} (mean {mean:.3f}, threshold "
        f"{config.kappa_threshold})"
    )
    return StopRecommendation("stabilizing_predictions", fire, evidence, {"mean_kappa": mean})


RULES = (dev_gain_rule, budget_rule, agreement_rule, stabilizing_predictions_rule)


def evaluate_stopping(
    history: Sequence[RoundRecord], config: StoppingConfig | None = None
) -> list[StopRecommendation]:
    """Every rule's recommendation for the rounds so far (oldest first), in a fixed order."""
    config = config or StoppingConfig()
    labels = [r.labels for r in history]
    if labels != sorted(labels):
        raise ConfigError("history must be in round order: labels never decrease")
    return [rule(history, config) for rule in RULES]
