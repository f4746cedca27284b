"""Data manager at 100,000 items: search and each filter against a plain primary-key lookup.

    python -m tests.benchmarks.bench_data_manager               # SQLite and Postgres
    python -m tests.benchmarks.bench_data_manager --items 20000 --only sqlite

Items are real texts (20 Newsgroups and Reuters R8, train and test, from ``_data.py``), repeated
with a numbered suffix until there are ``--items`` of them (texts capped at 2,000 characters).
About 30 % are labelled by one of three annotators with their data set label, 3 % carry a second,
different label (disagreement), 10 % are dev and 5 % test, 2 % are excluded from training, and the
current queue holds 2,000 items with predictions. On Postgres the search index is built after the
load (the app's own DDL) and the database VACUUM ANALYZEd (autovacuum does that in a
deployment); SQLite is not ANALYZEd (nothing runs ANALYZE there).

For each filter the figures are medians over ``--repeat`` runs, in a fresh session each time, of:
the first page as the browser loads it (``browse``: the page query plus its votes and
predictions, 50 rows), a page deep in the list (``after_id`` at 90 % of the ids: keyset, so it
should cost the same), and the count of matching items as the page shows it (the select-all
checkbox; counted up to ``COUNT_CAP`` = 10,000, then shown as "10,000+"). The baseline,
measured in the same run and the same way, is ``session.get(Item, id)`` of a random item: a plain
indexed lookup. Results go to ``tests/benchmarks/results/data_manager.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"
BUDGET_MS = 100.0
MAX_CHARS = 2000
POSTGRES_URL = os.environ.get(
    "TAPESTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# (name, filters). Search words: very common, common, rare in these corpora.
CASES: list[tuple[str, dict[str, str]]] = [
    ("no filter", {}),
    ("search: 'the' (very common)", {"q": "the"}),
    ("search: 'government'", {"q": "government"}),
    ("search: 'space shuttle'", {"q": "space shuttle"}),
    ("search: 'nasa' prefix 'na'", {"q": "na"}),
    ("search: rare word", {"q": "zyxel"}),
    ("label", {"label": "sci.space"}),
    ("annotator", {"annotator": "ANNOTATOR"}),
    ("split = dev", {"split": "dev"}),
    ("labelled = yes", {"labelled": "yes"}),
    ("labelled = no", {"labelled": "no"}),
    ("disagreement = yes", {"disagreement": "yes"}),
    ("excluded = yes", {"excluded": "yes"}),
    ("predicted", {"predicted": "earn"}),
    ("confidence 0.4-0.6", {"min_confidence": "0.4", "max_confidence": "0.6"}),
    ("search + labelled + split", {"q": "government", "labelled": "yes", "split": "pool"}),
]


def corpus(n: int) -> tuple[list[str], list[str]]:
    from worker.simulate.benchmark_data import load_dataset

    texts: list[str] = []
    labels: list[str] = []
    for name in ("20ng", "r8"):
        for split in ("train", "test"):
            t, y = load_dataset(name, split)  # type: ignore[arg-type]
            texts += [x[:MAX_CHARS] for x in t]
            labels += y
    out_t: list[str] = []
    out_y: list[str] = []
    seen: set[str] = set()
    copy = 0
    while len(out_t) < n:
        for t, y in zip(texts, labels, strict=True):
            if len(out_t) >= n:
                break
            text_ = t if copy == 0 else f"{t} copy {copy}"
            if text_ in seen:  # the corpora repeat a few texts
                continue
            seen.add(text_)
            out_t.append(text_)
            out_y.append(y)
        copy += 1
    return out_t, out_y


def load(engine: Engine, n: int) -> dict[str, Any]:
    """Create the schema and one project of ``n`` items; returns ids the cases need."""
    from app.db import fulltext
    from app.db.base import Base
    from app.db.models import Annotation, Item, Label, QueueEntry, User
    from app.domain.imports import content_hash
    from app.domain.projects import ProjectSettings, create_project

    texts, gold = corpus(n)
    names = sorted(set(gold))
    rng = random.Random(7)
    Base.metadata.create_all(engine)
    postgres = engine.dialect.name == "postgresql"
    if postgres:  # bulk-build the GIN index after the load (row by row took over 10 minutes)
        with engine.begin() as connection:
            connection.execute(text(f"DROP INDEX {fulltext.PG_INDEX}"))
    started = time.perf_counter()
    with Session(engine) as db:
        lead = User(email="lead@example.org", password_hash="x", role="lead")
        annotators = [User(email=f"a{i}@example.org", password_hash="x") for i in range(3)]
        db.add_all([lead, *annotators])
        db.flush()
        project = create_project(db, creator=lead,
                                 settings=ProjectSettings(name="bench", labels=tuple(names)))
        label_ids: dict[str, int] = {
            name: label_id for name, label_id in db.execute(
                select(Label.name, Label.id).where(Label.project_id == project.id))
        }
        now = datetime.now(UTC)
        batch = 5000
        for start in range(0, n, batch):
            rows = []
            for i in range(start, min(n, start + batch)):
                r = rng.random()
                rows.append({
                    "project_id": project.id, "text": texts[i],
                    "content_hash": content_hash(texts[i]), "meta": {}, "created_at": now,
                    "split": "dev" if r < 0.10 else "test" if r < 0.15 else "pool",
                    "excluded": rng.random() < 0.02,
                })
            db.execute(insert(Item), rows)
        ids = list(db.scalars(select(Item.id).where(Item.project_id == project.id)
                              .order_by(Item.id)))
        annotations = []
        for position, item_id in enumerate(ids):
            if rng.random() < 0.30:
                who = annotators[position % 3].id
                annotations.append({"project_id": project.id, "item_id": item_id,
                                    "annotator_id": who, "label_id": label_ids[gold[position]],
                                    "source": "ui", "deleted": False, "created_at": now})
                if rng.random() < 0.10:
                    other = rng.choice([x for x in names if x != gold[position]])
                    annotations.append({"project_id": project.id, "item_id": item_id,
                                        "annotator_id": annotators[(position + 1) % 3].id,
                                        "label_id": label_ids[other], "source": "ui",
                                        "deleted": False, "created_at": now})
        for start in range(0, len(annotations), batch):
            db.execute(insert(Annotation), annotations[start:start + batch])
        project.queue_version = 1
        queued = rng.sample(ids, 2000)
        db.execute(insert(QueueEntry), [
            {"project_id": project.id, "queue_version": 1, "item_id": item_id, "rank": rank,
             "score": 0.5, "strategy": "bench", "reason": "", "neighbours": [],
             "predicted": [{"label": rng.choice(names), "prob": round(rng.random(), 4)}]}
            for rank, item_id in enumerate(queued)
        ])
        db.commit()
        info = {"project_id": project.id, "annotator": annotators[0].id, "ids": ids,
                "annotations": len(annotations)}
    if postgres:
        with engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.execute(text(fulltext.PG_CREATE[-1]))
            autocommit.execute(text("VACUUM ANALYZE"))
    info["load_seconds"] = round(time.perf_counter() - started, 1)
    return info


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm: caches, prepared plans
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def measure(engine: Engine, info: dict[str, Any], repeat: int) -> dict[str, Any]:
    from app.db.models import Item, Project
    from app.domain import data_manager as dm

    ids = info["ids"]
    deep = ids[int(len(ids) * 0.9)]
    rng = random.Random(11)

    def in_session(work: Callable[[Session], object]) -> Callable[[], object]:
        def run() -> object:
            with Session(engine) as db:
                return work(db)
        return run

    def lookup(db: Session) -> object:
        return db.get(Item, rng.choice(ids))

    baseline = median_ms(in_session(lookup), repeat)
    cases = []
    for name, raw in CASES:
        raw = {k: (str(info["annotator"]) if v == "ANNOTATOR" else v) for k, v in raw.items()}
        filters = dm.parse_filters(raw, strict=True)

        def first(db: Session, filters: dict[str, Any] = filters) -> object:
            project = db.get(Project, info["project_id"])
            assert project is not None
            return dm.browse(db, project, filters)

        def deep_page(db: Session, filters: dict[str, Any] = filters) -> object:
            project = db.get(Project, info["project_id"])
            assert project is not None
            return dm.browse(db, project, filters, after_id=deep)

        def count(db: Session, filters: dict[str, Any] = filters) -> object:
            project = db.get(Project, info["project_id"])
            assert project is not None
            return dm.count_matching(db, project, filters, cap=dm.COUNT_CAP)

        def exact(db: Session, filters: dict[str, Any] = filters) -> int:
            project = db.get(Project, info["project_id"])
            assert project is not None
            return dm.count_matching(db, project, filters, cap=None).value

        matches = in_session(exact)()
        row = {
            "case": name, "filters": raw, "matches": matches,
            "first_page_ms": median_ms(in_session(first), repeat),
            "deep_page_ms": median_ms(in_session(deep_page), repeat),
            "count_ms": median_ms(in_session(count), repeat),
        }
        row["worst_ms"] = max(row["first_page_ms"], row["deep_page_ms"], row["count_ms"])
        row["ratio_to_lookup"] = round(row["worst_ms"] / baseline, 1) if baseline else None
        row["within_budget"] = row["worst_ms"] <= BUDGET_MS
        cases.append(row)
        print(f"  {name:32} {matches:7} matches  page {row['first_page_ms']:7.1f}  deep "
              f"{row['deep_page_ms']:7.1f}  count {row['count_ms']:7.1f} ms", flush=True)
    with Session(engine) as db:
        items = db.scalar(select(func.count()).select_from(Item))
    return {"items": items, "annotations": info["annotations"],
            "load_seconds": info["load_seconds"], "lookup_ms": baseline, "cases": cases}


def run_sqlite(n: int, repeat: int) -> dict[str, Any]:
    from app.db.session import make_engine

    folder = Path(tempfile.mkdtemp(prefix="bench-data-manager-"))
    engine = make_engine(f"sqlite:///{folder / 'bench.sqlite'}")  # the app's pragmas
    try:
        info = load(engine, n)
        print(f"sqlite: loaded {n} items in {info['load_seconds']} s", flush=True)
        return measure(engine, info, repeat)
    finally:
        engine.dispose()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def run_postgres(n: int, repeat: int) -> dict[str, Any]:
    from app.db.session import make_engine

    name = f"tapestry_bench_dm_{secrets.token_hex(4)}"
    admin = make_engine(make_url(POSTGRES_URL).set(database="postgres")
                        .render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(POSTGRES_URL).set(database=name)
                         .render_as_string(hide_password=False))
    try:
        info = load(engine, n)
        print(f"postgres: loaded {n} items in {info['load_seconds']} s", flush=True)
        return measure(engine, info, repeat)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_manager.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Data manager at 100,000 items",
        "",
        f"Run {results['when']} on {results['machine']}, in {results['seconds']} s; "
        f"`python -m tests.benchmarks.bench_data_manager` (medians of {results['repeat']} runs, "
        "each in a fresh session). Budget: search and each filter ≤ "
        f"{BUDGET_MS:.0f} ms. 'worst' is the slowest of first page (50 rows with votes and "
        "predictions), a page at 90 % of the ids (keyset) and the count of matches as the page "
        f"shows it (up to {results['count_cap']:,}, then '{results['count_cap']:,}+'); 'matches' "
        "is exact; the ratio "
        "is worst ÷ a primary-key lookup measured in the same run.",
        "",
    ]
    for dialect, block in results["dialects"].items():
        lines += [
            f"## {dialect}: {block['items']:,} items, {block['annotations']:,} annotations "
            f"(loaded in {block['load_seconds']} s); primary-key lookup {block['lookup_ms']} ms",
            "",
            "| case | matches | first page ms | deep page ms | count ms | worst ÷ lookup "
            "| ≤ 100 ms |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
        for c in block["cases"]:
            lines.append(
                f"| {c['case']} | {c['matches']:,} | {c['first_page_ms']} | {c['deep_page_ms']} "
                f"| {c['count_ms']} | {c['ratio_to_lookup']} | "
                f"{'yes' if c['within_budget'] else '**no**'} |"
            )
        lines.append("")
    (RESULTS / "data_manager.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    dialects: dict[str, Any] = {}
    if args.only in (None, "sqlite"):
        dialects["sqlite"] = run_sqlite(args.items, args.repeat)
    if args.only in (None, "postgres"):
        dialects["postgres"] = run_postgres(args.items, args.repeat)
    results = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), "
                   f"Python {platform.python_version()}",
        "seconds": round(time.perf_counter() - started),
        "repeat": args.repeat,
        "budget_ms": BUDGET_MS,
        "count_cap": _count_cap(),
        "dialects": dialects,
    }
    if not args.no_write:
        write_results(results)
    print(json.dumps({d: [(c["case"], c["worst_ms"]) for c in b["cases"]]
                      for d, b in dialects.items()}))


def _count_cap() -> int:
    from app.domain import data_manager as dm

    return dm.COUNT_CAP


if __name__ == "__main__":
    main()
