"""Write a simulation's results as few files: curves CSV, results JSON, summary Markdown, SVGs."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from app.security.spreadsheet import safe_row
from worker.simulate.config import ArmSpec
from worker.simulate.results import CSV_COLUMNS, ArmRun, csv_rows
from worker.simulate.summary import TARGETS, ArmSummary, SimulationReport, mean_curve
from worker.simulate.svg import learning_curve_svg

METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy"}


def write_outputs(reports: list[SimulationReport], out_dir: Path) -> list[str]:
    """Write ``curves.csv``, ``results.json``, ``summary.md`` and one SVG per data set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "curves.csv", out_dir / "results.json", out_dir / "summary.md"]
    with files[0].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for report in reports:
            writer.writerows(safe_row(row) for row in csv_rows(report.runs))
    files[1].write_text(json.dumps({"reports": [report_dict(r) for r in reports]}, indent=1))
    files[2].write_text("\n".join(summary_markdown(r) for r in reports))
    for report in reports:
        for metric, suffix in (("macro_f1", ""), ("accuracy", "-accuracy")):
            svg = out_dir / f"curves-{report.dataset}{suffix}.svg"
            svg.write_text(plot(report, metric))
            files.append(svg)
    return [str(f) for f in files]


def report_dict(report: SimulationReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "data": report.data,
        "config": report.config,
        "tapt": report.tapt,
        "seconds": report.seconds,
        "ceilings": report.ceilings,
        "budgets": report.budgets,
        "summaries": {
            metric: [_summary_dict(s) for s in rows] for metric, rows in report.summaries.items()
        },
        "runs": [run.to_dict() for run in report.runs],
    }


def _summary_dict(summary: ArmSummary) -> dict[str, Any]:
    data = asdict(summary)
    for key in ("labels_to", "saving_vs_random", "share_of_full"):
        data[key] = {f"{int(t * 100)}%": v for t, v in data[key].items()}
    return data


def plot(report: SimulationReport, metric: str) -> str:
    grouped: dict[str, list[ArmRun]] = defaultdict(list)
    for run in report.runs:
        if not ArmSpec.parse(run.arm).is_ceiling:
            grouped[run.arm].append(run)
    curves = {arm: mean_curve(runs, metric) for arm, runs in grouped.items()}
    return learning_curve_svg(
        f"{report.dataset}: {METRIC_NAMES[metric]} on the test split vs labels",
        curves,
        metric=METRIC_NAMES[metric],
        ceiling=report.ceilings.get(metric),
        ceiling_label=_ceiling_label(report, metric),
        x_label="labels (seed + queried + dev)",
    )


def _ceiling_label(report: SimulationReport, metric: str) -> str:
    if metric == "macro_f1" and report.config.get("ceiling") is not None:
        return "given ceiling (--ceiling)"
    return f"full FT, {report.pool_size} labels"


NA = "n/a"


def _labels(value: int | None, ceiling: float | None) -> str:
    """Labels to reach a share of the ceiling: n/a when there is no ceiling to reach."""
    if ceiling is None:
        return NA
    return "not reached" if value is None else str(value)


def _saving(summary: ArmSummary, target: float, ceiling: float | None) -> str:
    """n/a without a ceiling or without the arm's random twin (``--no-baselines``)."""
    if ceiling is None:
        return NA
    return summary.saving_vs_random.get(target, NA)


def _dev_line(report: SimulationReport) -> str:
    dev = report.config.get("dev_size")
    if not dev:
        return (
            "Dev set: none (--dev-size 0); cross-validation of the live head on the labelled "
            "items stands in for it. Labels = seed + queried."
        )
    return (
        f"Dev set: {dev} labelled items, counted on the labels axis (labels = seed + queried + "
        "dev); the budget table gives the dev share."
    )


def summary_markdown(report: SimulationReport) -> str:
    lines = [
        f"## {report.dataset}",
        "",
        f"{report.data}. {report.config.get('budget')} label "
        f"budget; run took {report.seconds / 60:.1f} min.",
        "",
        _dev_line(report),
        "",
    ]
    for metric, rows in report.summaries.items():
        ceiling = report.ceilings.get(metric)
        name = METRIC_NAMES[metric]
        lines += [f"### {name}", ""]
        if metric == "macro_f1" and report.config.get("ceiling") is not None:
            lines.append(f"Ceiling (given with --ceiling): {ceiling:.4f}")
        else:
            lines.append(
                f"Ceiling (full fine-tuning on all {report.pool_size} pool labels): "
                + (f"{ceiling:.4f}" if ceiling is not None else "n/a (not run; give --ceiling)")
            )
        lines += [
            "",
            "| arm | seeds | final (mean ± std) | labels | AULC | to 95% | to 98% | to 100% "
            "| saving vs random @95% | @98% | share of pool @98% |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in sorted(rows, key=lambda r: (ArmSpec.parse(r.arm).is_ceiling, -r.aulc)):
            share = s.share_of_full.get(0.98)
            is_ceiling = ArmSpec.parse(s.arm).is_ceiling
            lines.append(
                f"| {s.arm} | {s.seeds} | {s.final_mean:.4f} ± {s.final_std:.4f} | "
                f"{s.final_labels} | {s.aulc:.4f} | "
                + " | ".join(
                    "-" if is_ceiling else _labels(s.labels_to.get(t), ceiling) for t in TARGETS
                )
                + " | "
                + " | ".join("-" if is_ceiling else _saving(s, t, ceiling) for t in (0.95, 0.98))
                + " | "
                + ("-" if is_ceiling else f"{share:.1%}" if share is not None else NA)
                + " |"
            )
        lines.append("")
    lines += budget_markdown(report.budgets)
    lines += _timing_table(report.runs) + _stopping_table(report.runs)
    return "\n".join(lines) + "\n"


def budget_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Test macro-F1 at each budget (all labels counted, dev included) and the gap to the best
    cheap baseline at the same number of labels."""
    if not rows:
        return []
    lines = [
        "### Test macro-F1 at each budget (labels = seed + queried + dev; baselines: random)",
        "",
        "| budget | labels | arm | seeds | macro-F1 (mean ± std) | dev share "
        "| gap to best baseline |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        mean = (
            "n/a (curve starts later)" if r["mean"] is None else f"{r['mean']:.4f} ± {r['std']:.4f}"
        )
        gap = r["gap_to_best_baseline"]
        gap_text = "n/a" if gap is None else f"{gap:+.4f} vs {r['best_baseline']}"
        share = f"{r['dev_share']:.0%}" if r["dev_labels"] else "0% (no dev set)"
        lines.append(
            f"| {r['budget']} | {r['labels']} | {r['arm']} | {r['seeds']} | {mean} | {share} | "
            f"{gap_text} |"
        )
    return lines + [""]


def _timing_table(runs: list[ArmRun]) -> list[str]:
    grouped: dict[str, list[ArmRun]] = defaultdict(list)
    for run in runs:
        grouped[run.arm].append(run)
    lines = [
        "### Seconds per round (median over rounds and seeds)",
        "",
        "| arm | retrain | score pool | score test | acquire | round total |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm, group in grouped.items():
        points = [p for r in group for p in r.points]
        train = float(np.median([p.train_s for p in points]))
        score = float(np.median([p.score_s for p in points]))
        test = float(np.median([p.test_s for p in points]))
        acquire = float(np.median([p.acquire_s for p in points]))
        total = float(np.median([p.train_s + p.score_s + p.test_s + p.acquire_s for p in points]))
        lines.append(
            f"| {arm} | {train:.1f} | {score:.1f} | {test:.1f} | {acquire:.2f} | {total:.1f} |"
        )
    return lines + [""]


def _stopping_table(runs: list[ArmRun]) -> list[str]:
    rules = ("dev_gain", "acquisition_agreement", "stabilizing_predictions", "budget")
    lines = [
        "### Stopping rules: labels at which each first fired (per seed)",
        "",
        "| arm | " + " | ".join(rules) + " |",
        "|---|" + "---|" * len(rules),
    ]
    grouped: dict[str, list[ArmRun]] = defaultdict(list)
    for run in runs:
        if not ArmSpec.parse(run.arm).is_ceiling:
            grouped[run.arm].append(run)
    for arm, group in grouped.items():
        cells = []
        for rule in rules:
            firsts = [
                next((str(p.labels) for p in r.points if rule in p.stop_rules_fired), "-")
                for r in group
            ]
            cells.append(", ".join(firsts))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines + [""]
