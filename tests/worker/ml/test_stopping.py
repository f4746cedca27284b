import numpy as np
import pytest

from contract.errors import ConfigError
from worker.ml.stopping import (
    RoundRecord,
    StoppingConfig,
    cohen_kappa,
    evaluate_stopping,
    topk_agreement,
)


def by_rule(history: list[RoundRecord], **config: object) -> dict:
    recs = evaluate_stopping(history, StoppingConfig(**config))  # type: ignore[arg-type]
    return {r.rule: r for r in recs}


def curve(scores: list[float], start: int = 100, step: int = 100) -> list[RoundRecord]:
    return [RoundRecord(labels=start + i * step, dev_score=s) for i, s in enumerate(scores)]


def test_dev_gain_fires_on_a_plateau_and_not_while_climbing() -> None:
    climbing = curve([0.50, 0.60, 0.66, 0.70, 0.73])  # last 4 points: +4.3 per 100 labels
    rec = by_rule(climbing)["dev_gain"]
    assert not rec.fire and rec.values["gain_per_100"] == pytest.approx(4.3, abs=1e-6)
    plateau = curve([0.50, 0.70, 0.801, 0.802, 0.803, 0.804])  # +0.1 points per 100
    rec = by_rule(plateau)["dev_gain"]
    assert rec.fire and rec.values["gain_per_100"] == pytest.approx(0.1, abs=1e-6)
    assert "+0.10 points per 100 labels" in rec.evidence and "threshold 0.20" in rec.evidence


def test_dev_gain_scales_with_the_label_spacing() -> None:
    # +1 point per round but rounds are 1,000 labels apart: 0.1 points per 100 labels
    rec = by_rule(curve([0.70, 0.71, 0.72, 0.73], step=1000))["dev_gain"]
    assert rec.fire
    assert not by_rule(curve([0.70, 0.71, 0.72, 0.73], step=100))["dev_gain"].fire


def test_dev_gain_waits_for_enough_rounds() -> None:
    rec = by_rule(curve([0.8, 0.8]))["dev_gain"]
    assert not rec.fire and "needs 4 rounds" in rec.evidence


def test_budget_rule() -> None:
    history = curve([0.5, 0.6])
    assert not by_rule(history)["budget"].fire
    assert not by_rule(history, budget=300)["budget"].fire
    rec = by_rule(history, budget=200)["budget"]
    assert rec.fire and rec.evidence.startswith("200 of 200 labels used")


def test_agreement_rule_fires_when_overlap_stops_moving() -> None:
    moving = [RoundRecord(labels=i * 100, agreement=a) for i, a in enumerate([0.1, 0.3, 0.5])]
    assert not by_rule(moving)["acquisition_agreement"].fire
    settled = moving + [
        RoundRecord(labels=400 + i * 100, agreement=a) for i, a in enumerate([0.61, 0.63, 0.62])
    ]
    rec = by_rule(settled)["acquisition_agreement"]
    assert rec.fire and rec.values["spread"] == pytest.approx(0.02)


def test_topk_agreement_is_jaccard() -> None:
    assert topk_agreement([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(2 / 6)
    assert topk_agreement([1, 2], [2, 1]) == 1.0


def test_cohen_kappa_known_values() -> None:
    a = np.array([0, 0, 1, 1])
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(a, 1 - a) == pytest.approx(-1.0)
    # observed 0.75, expected 0.5 -> 0.5
    assert cohen_kappa(a, np.array([0, 1, 1, 1])) == pytest.approx(0.5)
    assert cohen_kappa(np.zeros(5), np.zeros(5)) == 1.0
    with pytest.raises(ConfigError):
        cohen_kappa(a, a[:3])


def test_stabilizing_predictions_needs_kappa_above_threshold_over_the_window() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4, size=1000)

    def flipped(n: int) -> np.ndarray:
        p = base.copy()
        p[:n] = (p[:n] + 1) % 4
        return p

    unstable = [RoundRecord(labels=i * 100, predictions=flipped(50 - 10 * i)) for i in range(4)]
    rec = by_rule(unstable)["stabilizing_predictions"]
    assert not rec.fire and "kappa" in rec.evidence
    stable = [RoundRecord(labels=i * 100, predictions=flipped(max(0, 3 - i))) for i in range(4)]
    rec = by_rule(stable)["stabilizing_predictions"]
    assert rec.fire and rec.values["mean_kappa"] > 0.99
    assert "1000 stop-set items" in rec.evidence


def test_every_rule_reports_even_without_data() -> None:
    recs = evaluate_stopping([])
    assert [r.rule for r in recs] == [
        "dev_gain",
        "budget",
        "acquisition_agreement",
        "stabilizing_predictions",
    ]
    assert not any(r.fire for r in recs)


def test_history_must_be_in_round_order_and_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="round order"):
        evaluate_stopping(curve([0.5, 0.6], start=500, step=-100))
    with pytest.raises(ConfigError, match="gain_window"):
        StoppingConfig(gain_window=0)
