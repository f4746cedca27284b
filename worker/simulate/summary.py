"""Learning-curve summaries: labels to reach a share of the ceiling, savings, area under curve."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.simulate.config import ArmSpec
from worker.simulate.results import ArmRun

TARGETS = (0.95, 0.98, 1.00)
METRICS = ("macro_f1", "accuracy")


@dataclass(frozen=True)
class MeanCurve:
    """Mean and standard deviation over seeds at each label count."""

    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: int


def mean_curve(runs: list[ArmRun], metric: str) -> MeanCurve:
    """Average the seeds' curves point by point; label grids match because batches are fixed."""
    by_labels: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for p in run.points:
            by_labels[p.labels].append(float(getattr(p, metric)))
    labels = np.array(sorted(by_labels))
    values = [np.array(by_labels[n]) for n in labels]
    return MeanCurve(
        labels=labels,
        mean=np.array([v.mean() for v in values]),
        std=np.array([v.std(ddof=1) if v.shape[0] > 1 else 0.0 for v in values]),
        seeds=len({r.seed for r in runs}),
    )


def labels_to_reach(curve: MeanCurve, target: float) -> int | None:
    """Fewest labels at which the mean curve reaches ``target`` (None: never within budget)."""
    hit = np.flatnonzero(curve.mean >= target - 1e-12)
    return int(curve.labels[hit[0]]) if hit.size else None


def area_under_curve(curve: MeanCurve) -> float:
    """Normalised AULC: the trapezoid area divided by the label span (a mean score)."""
    if curve.labels.shape[0] < 2:
        return float(curve.mean[0]) if curve.mean.size else float("nan")
    x, y = curve.labels.astype(float), curve.mean
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / float(x[-1] - x[0])


@dataclass
class ArmSummary:
    dataset: str
    arm: str
    metric: str
    seeds: int
    final_mean: float
    final_std: float
    final_labels: int
    aulc: float
    labels_to: dict[float, int | None] = field(default_factory=dict)
    saving_vs_random: dict[float, str] = field(default_factory=dict)
    share_of_full: dict[float, float | None] = field(default_factory=dict)


def summarise(
    runs: list[ArmRun],
    metric: str,
    pool_sizes: dict[str, int],
    known_ceiling: float | None = None,
) -> tuple[list[ArmSummary], dict[str, float | None]]:
    """Per (dataset, arm) summaries, and the ceiling per data set: ``known_ceiling`` when given,
    else 'full:all', else the best 'all' arm, else None (then the "labels to reach" figures
    cannot exist and stay empty)."""
    grouped: dict[tuple[str, str], list[ArmRun]] = defaultdict(list)
    for run in runs:
        grouped[(run.dataset, run.arm)].append(run)
    curves = {key: mean_curve(group, metric) for key, group in grouped.items()}
    ceilings: dict[str, float | None] = {}
    for dataset in sorted({d for d, _ in grouped}):
        full = curves.get((dataset, "full:all"))
        others = [c for (d, a), c in curves.items() if d == dataset and ArmSpec.parse(a).is_ceiling]
        best = max((float(c.mean[-1]) for c in others), default=None)
        ceilings[dataset] = float(full.mean[-1]) if full is not None else best
        if known_ceiling is not None:
            ceilings[dataset] = known_ceiling
    summaries = []
    for (dataset, arm), curve in curves.items():
        summary = ArmSummary(
            dataset=dataset,
            arm=arm,
            metric=metric,
            seeds=curve.seeds,
            final_mean=float(curve.mean[-1]),
            final_std=float(curve.std[-1]),
            final_labels=int(curve.labels[-1]),
            aulc=area_under_curve(curve),
        )
        ceiling = ceilings[dataset]
        if ceiling is not None and not ArmSpec.parse(arm).is_ceiling:
            twin = curves.get((dataset, ArmSpec.parse(arm).random_twin))
            for target in TARGETS:
                needed = labels_to_reach(curve, target * ceiling)
                summary.labels_to[target] = needed
                pool = pool_sizes.get(dataset)
                summary.share_of_full[target] = needed / pool if needed and pool else None
                if twin is not None and twin is not curve:
                    summary.saving_vs_random[target] = saving_factor(
                        needed, labels_to_reach(twin, target * ceiling), int(twin.labels[-1])
                    )
        summaries.append(summary)
    return summaries, ceilings


def saving_factor(arm_labels: int | None, random_labels: int | None, random_budget: int) -> str:
    """Random's labels / the arm's labels to reach the same score, as text (may be a bound)."""
    if arm_labels is None:
        return "n/a (not reached)" if random_labels is None else "< 1 (random reached it)"
    if random_labels is None:
        return f"> {random_budget / arm_labels:.2f}x (random never reached it)"
    return f"{random_labels / arm_labels:.2f}x"


def _value_at(runs: list[ArmRun], labels: int, metric: str) -> list[float]:
    """Per seed, the score of the last point with at most ``labels`` labels (what a lead has
    after spending that many); seeds whose curve starts later give nothing."""
    values = []
    for run in runs:
        eligible = [p for p in run.points if p.labels <= labels]
        if eligible:
            values.append(float(getattr(max(eligible, key=lambda p: p.labels), metric)))
    return values


def budget_table(
    runs: list[ArmRun],
    pool_size: int,
    n_classes: int,
    fractions: tuple[float, ...],
    metric: str = "macro_f1",
) -> list[dict[str, object]]:
    """Rows (budget, arm): mean +- std of ``metric`` at 1/2/5/10/20 % of the pool and at the
    seed-set point (a product arm's first point, dev labels counted), and the gap to the best
    cheap baseline at the same number of labels. Baselines are scored at exactly these counts."""
    from worker.simulate.baselines import fraction_budgets

    grouped: dict[str, list[ArmRun]] = defaultdict(list)
    for run in runs:
        grouped[run.arm].append(run)
    products = [a for a in grouped if not ArmSpec.parse(a).baseline]
    baselines = [a for a in grouped if ArmSpec.parse(a).baseline]
    points: list[tuple[str, int]] = []
    for arm in products:
        if not ArmSpec.parse(arm).is_ceiling:
            first = min(p.labels for r in grouped[arm] for p in r.points[:1])
            if first not in [n for _, n in points]:
                points.append((f"seed set ({arm})", first))
    for f, n in zip(fractions, fraction_budgets(pool_size, n_classes, fractions), strict=True):
        points.append((f"{f:.0%}", n))
    rows: list[dict[str, object]] = []
    for budget, labels in points:
        best: tuple[float, str] | None = None
        for arm in baselines:
            exact = [
                float(getattr(p, metric))
                for r in grouped[arm]
                for p in r.points
                if p.labels == labels
            ]
            if exact and (best is None or np.mean(exact) > best[0]):
                best = (float(np.mean(exact)), arm)
        for arm in products + baselines:
            if ArmSpec.parse(arm).is_ceiling:
                continue
            values = _value_at(grouped[arm], labels, metric)
            mean = float(np.mean(values)) if values else None
            dev = sum(p.dev_labels for p in grouped[arm][0].points[:1])
            rows.append(
                {
                    "budget": budget,
                    "labels": labels,
                    "arm": arm,
                    "seeds": len(values),
                    "mean": mean,
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "dev_labels": dev,
                    "dev_share": dev / labels if labels else None,
                    "best_baseline": best[1] if best else None,
                    "gap_to_best_baseline": (
                        mean - best[0] if mean is not None and best is not None else None
                    ),
                }
            )
    return rows


@dataclass
class SimulationReport:
    """Everything a run measured; ``worker.simulate.outputs`` turns it into files."""

    config: dict[str, Any]
    data: str
    dataset: str
    pool_size: int
    runs: list[ArmRun]
    summaries: dict[str, list[ArmSummary]] = field(default_factory=dict)
    """metric -> one summary per arm."""
    ceilings: dict[str, float | None] = field(default_factory=dict)
    """metric -> ceiling score (full fine-tuning on all pool labels)."""
    tapt: dict[str, Any] | None = None
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    """Each arm's mean +- std macro-F1 at the budget fractions and the seed-set point, with the
    gap to the best cheap baseline at the same number of labels."""
