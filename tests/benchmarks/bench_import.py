"""Import memory and speed: the streaming importer vs. a load-everything baseline, 10k vs 100k rows.

    python -m tests.benchmarks.bench_import            # writes tests/benchmarks/results/import.*

Every measurement runs in a fresh subprocess on a fresh SQLite file, so peak RSS means something.
The claim under test is "memory stays flat": the streaming importer's peak memory at 100k rows
should be close to its peak at 10k rows, while the baseline (read the whole file, build every ORM
object, flush once) grows with the file. Figures are medians; memory is reported as the increase of
peak RSS over the process's RSS just before the import, and as tracemalloc's peak (separate run,
because tracing slows everything down).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"
LABELS = ("billing", "bug", "feature", "question")
SIZES = (10_000, 100_000)
METHODS = ("streaming", "baseline")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for i in range(rows):
            label = LABELS[i % len(LABELS)] if i % 5 == 0 else ""
            writer.writerow([f"r{i}", f"Ticket {i}: the {LABELS[i % 4]} page shows error "
                             f"E{i % 997} for customer {i * 7919 % 100_003} since yesterday.",
                             label])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_once(method: str, csv_path: Path, trace: bool) -> dict[str, Any]:
    """Run one import in this (fresh) process and return its figures."""
    from sqlalchemy.orm import Session

    from app.db.base import Base
    from app.db.models import User
    from app.db.session import make_engine
    from app.domain.imports import ColumnMapping, ImportOptions, import_items
    from app.domain.projects import ProjectSettings, create_project

    workdir = Path(tempfile.mkdtemp(prefix="bench-import-"))
    engine = make_engine(f"sqlite:///{workdir / 'bench.sqlite'}")  # the app's SQLite pragmas
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        user = User(email="bench@example.org", password_hash="x", role="lead")
        session.add(user)
        session.flush()
        project = create_project(session, creator=user,
                                 settings=ProjectSettings(name="bench", labels=LABELS))
        session.commit()
        rss_before = _rss_mb()
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        if method == "streaming":
            options = ImportOptions(format="csv",
                                    mapping=ColumnMapping(text="text", label="label", id="id"))
            with csv_path.open("rb") as source:
                report = import_items(session, project=project, user=user, source=source,
                                      options=options)
            created = report.created
        else:
            created = _baseline_import(session, project.id, user.id, csv_path)
        session.commit()
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
        if trace:
            tracemalloc.stop()
    engine.dispose()
    return {"method": method, "created": created, "seconds": seconds,
            "rss_increase_mb": _rss_mb() - rss_before, "traced_peak_mb": traced_peak}


def _baseline_import(session: Any, project_id: int, user_id: int, csv_path: Path) -> int:
    """What a first implementation does: read it all, build every object, flush once."""
    from sqlalchemy import select

    from app.db.models import Annotation, Item, Label
    from app.domain.imports import content_hash

    labels = dict(session.execute(select(Label.name, Label.id)
                                  .where(Label.project_id == project_id)).tuples().all())
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    items = [Item(project_id=project_id, external_id=r["id"], text=r["text"],
                  content_hash=content_hash(r["text"]), meta={}) for r in rows]
    session.add_all(items)
    session.flush()
    session.add_all([Annotation(project_id=project_id, item_id=item.id, annotator_id=user_id,
                                label_id=labels[r["label"]], source="seed")
                     for item, r in zip(items, rows, strict=True) if r["label"]])
    session.flush()
    return len(items)


def run_child(method: str, csv_path: Path, trace: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_import", "--one", method,
               str(csv_path)] + (["--trace"] if trace else [])
    output = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONHASHSEED="0"))
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def main(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {"repeats": repeats, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            path = Path(tmp) / f"rows-{size}.csv"
            write_csv(path, size)
            for method in METHODS:
                timed = [run_child(method, path, trace=False) for _ in range(repeats)]
                traced = run_child(method, path, trace=True)
                key = f"{method}@{size}"
                results["runs"][key] = {
                    "rows": size,
                    "file_mb": round(path.stat().st_size / 2**20, 2),
                    "seconds_median": round(statistics.median(r["seconds"] for r in timed), 3),
                    "rows_per_second": round(size / statistics.median(r["seconds"]
                                                                      for r in timed)),
                    "rss_increase_mb_median": round(
                        statistics.median(r["rss_increase_mb"] for r in timed), 1),
                    "traced_peak_mb": round(traced["traced_peak_mb"], 1),
                }
                print(key, results["runs"][key], flush=True)
    runs = results["runs"]
    small, large = SIZES
    results["ratios"] = {
        "streaming_traced_peak_100k_over_10k": round(
            runs[f"streaming@{large}"]["traced_peak_mb"]
            / runs[f"streaming@{small}"]["traced_peak_mb"], 2),
        "baseline_traced_peak_100k_over_10k": round(
            runs[f"baseline@{large}"]["traced_peak_mb"]
            / runs[f"baseline@{small}"]["traced_peak_mb"], 2),
        "streaming_over_baseline_traced_peak_at_100k": round(
            runs[f"streaming@{large}"]["traced_peak_mb"]
            / runs[f"baseline@{large}"]["traced_peak_mb"], 3),
        "streaming_over_baseline_seconds_at_100k": round(
            runs[f"streaming@{large}"]["seconds_median"]
            / runs[f"baseline@{large}"]["seconds_median"], 2),
    }
    return results


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "import.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Import benchmark (SQLite, medians of "
             f"{results['repeats']} runs; memory: one tracemalloc run)", "",
             "| run | rows | file MB | seconds | rows/s | peak RSS increase MB | "
             "tracemalloc peak MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, run in results["runs"].items():
        lines.append(f"| {key} | {run['rows']} | {run['file_mb']} | {run['seconds_median']} | "
                     f"{run['rows_per_second']} | {run['rss_increase_mb_median']} | "
                     f"{run['traced_peak_mb']} |")
    lines += ["", "Ratios:", ""]
    lines += [f"- {name}: {value}" for name, value in results["ratios"].items()]
    (RESULTS / "import.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_once(args.one[0], Path(args.one[1]), args.trace)))
    else:
        summary = main(args.repeats)
        write_results(summary)
        print(json.dumps(summary["ratios"], indent=2))
