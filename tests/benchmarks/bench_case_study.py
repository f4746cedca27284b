"""The playbook's case study at full size: 100,000 texts in 12 categories, against 10,000.

For each stack (``--stacks``: ``sqlite`` = the embedded defaults, SQLite + kombu's SQLAlchemy
broker; ``postgres`` = Postgres + Redis) and each pool size (``--sizes``, default 10,000 and
100,000), a fresh database and a fresh artifact directory, then what a lead and an annotator do,
through the product's own processes: a real uvicorn web process and the two Celery workers
``tapestry worker`` starts (``-Q gpu`` for adapter rounds, ``-Q live,inference,default``), the
offline MiniLM as the base model, all settings at their defaults.

1. **import**: one CSV through ``POST /items`` (``label`` and ``split`` columns): the pool, of
   which ``--labels`` rows carry their category, and a labelled dev set of ``--dev`` rows;
2. **first queue served**: from the end of the import to the live head's first queue, which needs
   the sentence embedding of every item (**embedding**, the live worker's own timing);
3. **label -> refreshed queue**: ``--samples`` labels through ``POST /annotations``, one at a
   time, each timed until the live head's state shows it (the queue is swapped in the same
   transaction);
4. **adapter round**: a retrain through ``POST /runs``, timed until the queue is rebuilt from the
   new adapter version (the pool items outside its candidate set are scored afterwards, in the
   background, and are not in this figure);
5. **peak RSS** of the web process and of each worker (``VmHWM``), read before the stack stops.

Texts: ``tests/benchmarks/case_study_data.py`` (passages of 50 words of the two dev corpora, 12
categories); the 10,000-item project's texts are the first 10,000 of the 100,000-item one's.
Growth ratios (100k / 10k) are computed within one stack, in one run.

Usage: ``.venv/bin/python -m tests.benchmarks.bench_case_study [--sizes 10000,100000]
[--stacks sqlite,postgres]``. Results: ``tests/benchmarks/results/case_study.{json,md}``.
Postgres (``TAPESTRY_TEST_POSTGRES_URL``, default the local server) and Redis
(``TAPESTRY_TEST_REDIS_URL``) must be running for the ``postgres`` stack.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_live_head import (
    Stack,
    _healthy,
    _summary,
    adapter_queue_done,
    free_port,
    wait,
)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"
POSTGRES = os.environ.get("TAPESTRY_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("TAPESTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PROCESSES = ("web", "gpu", "live")


def make_csv(texts: list[str], labels: list[str], n_labelled: int, n_dev: int) -> bytes:
    """The pool (``len - n_dev`` rows, the first ``n_labelled`` labelled), then the dev rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label", "split"])
    pool = len(texts) - n_dev
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        dev = i >= pool
        writer.writerow([text, label if dev or i < n_labelled else "", "dev" if dev else "pool"])
    return out.getvalue().encode("utf-8")


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``), in MiB; None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None


def first_embed_seconds(log: Path) -> float | None:
    """The embedding time of the live worker's first refit (its logged timings)."""
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r"live head project .*'embed': ([0-9.]+)", line)
        if found:
            return round(float(found.group(1)), 1)
    return None


class Databases:
    """A fresh database and broker for one cell of the benchmark."""

    def __init__(self, stack: str, work: Path) -> None:
        self.stack, self.work = stack, work
        self.pg_name = f"bench_case_{uuid.uuid4().hex[:10]}"

    def urls(self) -> tuple[str, str, str]:
        """(database, broker, result backend)."""
        if self.stack == "sqlite":
            return (f"sqlite:///{self.work / 'data' / 'tapestry.sqlite'}",
                    f"sqla+sqlite:///{self.work / 'broker.sqlite'}",
                    f"db+sqlite:///{self.work / 'results.sqlite'}")
        from sqlalchemy.engine import make_url

        database = make_url(POSTGRES).set(database=self.pg_name)
        return (database.render_as_string(hide_password=False), REDIS, REDIS)

    def create(self) -> None:
        if self.stack == "sqlite":
            (self.work / "data").mkdir(parents=True, exist_ok=True)
            return
        import redis

        self._admin(f'CREATE DATABASE "{self.pg_name}"')
        redis.Redis.from_url(REDIS).flushdb()

    def drop(self) -> None:
        if self.stack == "postgres":
            self._admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()


def admin_token(database_url: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.db.models import ROLE_ADMIN, User
    from app.domain.users import create_token

    engine = create_engine(database_url)
    try:
        with Session(engine) as db:
            user = User(email="lead@example.org", password_hash="x", role=ROLE_ADMIN)
            db.add(user)
            db.flush()
            token = create_token(db, user=user, name="bench", scopes=["read", "annotate", "admin"])
            db.commit()
            return str(token.plaintext)
    finally:
        engine.dispose()


def run_cell(stack_name: str, size: int, texts: list[str], labels: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from sqlalchemy import create_engine, select, text

    from app.db.migrate import upgrade
    from app.db.models import LiveHeadState

    work = Path(tempfile.mkdtemp(prefix=f"bench-case-{stack_name}-{size}-"))
    databases = Databases(stack_name, work)
    databases.create()
    database_url, broker_url, backend_url = databases.urls()
    cell: dict[str, Any] = {"stack": stack_name, "pool": size, "labels": args.labels,
                            "dev": args.dev, "load_average_start": os.getloadavg()}
    engine = create_engine(database_url)
    stack: Stack | None = None
    try:
        t = time.perf_counter()
        upgrade(database_url)
        cell["migrate_seconds"] = round(time.perf_counter() - t, 2)
        token = admin_token(database_url)
        low, high = (int(p) for p in args.ports.split("-"))
        port = free_port(low, high + 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
        env |= {"TAPESTRY_DATA_DIR": str(work / "data"), "TAPESTRY_DATABASE_URL": database_url,
                "TAPESTRY_BROKER_URL": broker_url, "TAPESTRY_RESULT_BACKEND_URL": backend_url,
                "TAPESTRY_SECRET_KEY": secrets.token_hex(24),
                "TAPESTRY_WRITE_RATE_LIMIT_PER_MINUTE": "100000",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        stack = Stack(work, env, port)
        stack.up()
        headers = {"Authorization": f"Bearer {token}"}
        api = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(timeout=3600) as client:
            wait(lambda: _healthy(client, port), "the web server", stack, 120, 0.2)
            r = client.post(f"{api}/projects", headers=headers, json={
                "name": f"case study {size:,}", "labels": sorted(set(labels)),
                "label_budget": 5000, "batch_size": 100})
            r.raise_for_status()
            pid = int(r.json()["id"])
            base = f"{api}/projects/{pid}"
            body = make_csv(texts[: size + args.dev], labels[: size + args.dev], args.labels,
                            args.dev)
            cell["csv_mb"] = round(len(body) / 2**20, 1)
            t = time.perf_counter()
            r = client.post(f"{base}/items", headers=headers,
                            params={"label_column": "label", "split_column": "split"},
                            files={"file": ("case.csv", body, "text/csv")})
            r.raise_for_status()
            cell["import_seconds"] = round(time.perf_counter() - t, 2)
            report = r.json()
            cell["import_report"] = {k: report.get(k)
                                     for k in ("rows", "created", "annotations", "by_split")}
            if args.import_only:
                cell["peak_rss_mb"] = {"web": peak_rss_mb(stack.processes["web"].pid)}
                cell["load_average_end"] = os.getloadavg()
                return cell
            with engine.connect() as c:
                rows = c.execute(text(
                    "select id, text from items where project_id=:p and split='pool' "
                    "order by id"), {"p": pid}).all()
            label_of = dict(zip(texts[:size], labels[:size], strict=True))
            gold = {int(i): label_of[t_] for i, t_ in rows}
            with engine.connect() as c:
                done = {int(i) for (i,) in c.execute(text(
                    "select distinct item_id from annotations where project_id=:p"), {"p": pid})}
            unlabelled = [i for i in gold if i not in done]

            def labels_seen() -> int:
                with engine.connect() as c:
                    row = c.execute(select(LiveHeadState.labels_used)
                                    .where(LiveHeadState.project_id == pid)).first()
                return -1 if row is None else int(row[0])

            n = args.labels
            t = time.perf_counter()
            wait(lambda: labels_seen() >= n, "the first queue", stack, args.first_timeout, 0.5)
            cell["first_queue_seconds"] = round(time.perf_counter() - t, 2)
            cell["embed_seconds"] = first_embed_seconds(work / "live.log")
            cell["load_average_after_first_queue"] = os.getloadavg()

            samples = []
            for item in unlabelled[: args.samples]:
                n += 1
                t = time.perf_counter()
                client.post(f"{base}/annotations", headers=headers, json={
                    "annotations": [{"item_id": item, "label": gold[item]}]}).raise_for_status()
                wait(lambda want=n: labels_seen() >= want, f"a refit with {n} labels", stack,
                     600)
                samples.append(time.perf_counter() - t)
            cell["label_to_queue"] = _summary(samples)
            cell["label_to_queue_samples"] = [round(s, 3) for s in samples]

            t = time.perf_counter()
            client.post(f"{base}/runs", headers=headers, json={
                "kind": "retrain", "reason": "case-study benchmark", "force": True},
            ).raise_for_status()
            wait(lambda: adapter_queue_done(engine, pid), "the adapter round's queue", stack,
                 args.round_timeout, 0.5)
            cell["adapter_round_seconds"] = round(time.perf_counter() - t, 2)
            cell["round_note"] = _round_note(engine, pid)
        cell["peak_rss_mb"] = {name: peak_rss_mb(stack.processes[name].pid)
                               for name in PROCESSES}
        cell["load_average_end"] = os.getloadavg()
    finally:
        if stack is not None:
            stack.down()
        engine.dispose()
        databases.drop()
        shutil.rmtree(work, ignore_errors=True)
    return cell


def _round_note(engine: Any, pid: int) -> str:
    from sqlalchemy import text

    with engine.connect() as c:
        row = c.execute(text(
            "select message from training_runs where project_id=:p and kind='recompute_queue' "
            "and status='succeeded' order by id desc limit 1"), {"p": pid}).first()
    return str(row[0]) if row else ""


def growth(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """100k / 10k (largest / smallest pool) per stack and figure."""
    out = []
    for stack in sorted({c["stack"] for c in cells}):
        mine = sorted((c for c in cells if c["stack"] == stack), key=lambda c: c["pool"])
        if len({c["pool"] for c in mine}) < 2:
            continue
        small = _median_cell([c for c in mine if c["pool"] == mine[0]["pool"]])
        large = _median_cell([c for c in mine if c["pool"] == mine[-1]["pool"]])
        row: dict[str, Any] = {"stack": stack, "from": small["pool"], "to": large["pool"]}
        for key, value in _figures(small).items():
            other = _figures(large).get(key)
            if value and other is not None:
                row[key] = round(other / value, 2)
        out.append(row)
    return out


def _median_cell(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell of repeats with the median of each timing (a single cell as it is)."""
    if len(cells) == 1:
        return cells[0]
    out = dict(cells[0])
    for key in ("import_seconds", "embed_seconds", "first_queue_seconds",
                "adapter_round_seconds"):
        values = [c[key] for c in cells if c.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def _figures(cell: dict[str, Any]) -> dict[str, float]:
    figures = {k: cell[k] for k in ("import_seconds", "embed_seconds", "first_queue_seconds",
                                     "adapter_round_seconds") if cell.get(k) is not None}
    if cell.get("label_to_queue", {}).get("n"):
        figures["label_to_queue_median"] = cell["label_to_queue"]["median"]
    for name, mb in (cell.get("peak_rss_mb") or {}).items():
        if mb is not None:
            figures[f"peak_rss_{name}_mb"] = mb
    return figures


def markdown(report: dict[str, Any]) -> str:
    if report.get("import_only"):
        return _import_markdown(report)
    cells = report["cells"]
    lines = [
        "# The case study at full size: 10,000 vs 100,000 items",
        "",
        f"12 categories, passages of 50 words of 20 Newsgroups and Reuters R8; "
        f"{report['labels']:,} labelled pool items and {report['dev']} dev items imported with "
        f"the pool; offline MiniLM, every setting at its default; real uvicorn + the two Celery "
        f"workers; {report['cpus']} CPUs. Command: `{report['command']}`.",
        "",
        "| stack | pool | import s | embedding s | first queue s | label -> queue median s "
        "(p90) | adapter round s | peak RSS web / gpu worker / live worker MiB | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in cells:
        q = c.get("label_to_queue", {})
        rss = c.get("peak_rss_mb", {})
        lines.append(
            f"| {c['stack']} | {c['pool']:,} | {c.get('import_seconds')} | "
            f"{c.get('embed_seconds')} | {c.get('first_queue_seconds')} | "
            f"{q.get('median')} ({q.get('p90')}) | {c.get('adapter_round_seconds')} | "
            f"{' / '.join(str(rss.get(n)) for n in PROCESSES)} | "
            f"{c['load_average_start'][0]:.1f} → {c.get('load_average_end', [0])[0]:.1f} |")
    rows = report.get("growth", [])
    if rows:
        keys = [k for k in rows[0] if k not in ("stack", "from", "to")]
        lines += ["", "Cost growth, largest pool over smallest, same stack, same run:", "",
                  "| stack | " + " | ".join(keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        for row in rows:
            lines.append(f"| {row['stack']} | " + " | ".join(
                f"{row.get(k, '')}×" if row.get(k) is not None else "" for k in keys) + " |")
    notes = [f"- {c['stack']} {c['pool']:,}: {c['round_note']}" for c in cells
             if c.get("round_note")]
    if notes:
        lines += ["", "What each adapter round's queue rebuild scored:", "", *notes]
    return "\n".join(lines) + "\n"


def _import_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The case study's import: 10,000 vs 100,000 items",
        "",
        f"One CSV through `POST /items` into a fresh database with the real web process and "
        f"workers running: the pool ({report['labels']:,} of its rows labelled) and a "
        f"{report['dev']}-row dev set; {report['cpus']} CPUs. Command: `{report['command']}`.",
        "",
        "| stack | pool | import s (each repeat) | median | peak RSS web MiB | load avg |",
        "|---|---:|---|---:|---:|---|",
    ]
    keys = sorted({(c["stack"], c["pool"]) for c in report["cells"]})
    for stack, pool in keys:
        cells = [c for c in report["cells"] if (c["stack"], c["pool"]) == (stack, pool)]
        runs = [c["import_seconds"] for c in cells]
        rss = max(c.get("peak_rss_mb", {}).get("web") or 0 for c in cells)
        load = f"{cells[0]['load_average_start'][0]:.1f} → {cells[-1]['load_average_end'][0]:.1f}"
        lines.append(f"| {stack} | {pool:,} | {' / '.join(str(r) for r in runs)} | "
                     f"{statistics.median(runs):.2f} | {rss} | {load} |")
    rows = report.get("growth", [])
    if rows:
        lines += ["", "Growth of the median import time, largest pool over smallest: " + ", ".join(
            f"{row['stack']} {row.get('import_seconds')}×" for row in rows) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--stacks", default="sqlite,postgres")
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--ports", default="18400-18499")
    parser.add_argument("--first-timeout", type=float, default=4 * 3600.0)
    parser.add_argument("--round-timeout", type=float, default=3600.0)
    parser.add_argument("--out", default="case_study")
    parser.add_argument("--import-only", action="store_true",
                        help="measure the import alone (each cell stops after it)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every cell this many times; growth uses the medians")
    args = parser.parse_args()
    from tests.benchmarks.case_study_data import case_study_rows

    sizes = [int(s) for s in args.sizes.split(",")]
    corpus = case_study_rows(max(sizes) + args.dev)
    # the dev rows are the last ``dev`` of the corpus for every size: move them to the front so
    # that texts[:size + dev] is the size's pool followed by the same dev set
    dev_texts, dev_labels = corpus.texts[-args.dev:], corpus.labels[-args.dev:]
    report: dict[str, Any] = {
        "import_only": args.import_only,
        "labels": args.labels, "dev": args.dev, "cpus": os.cpu_count(), "cells": [],
        "command": "python -m tests.benchmarks.bench_case_study " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k in ("sizes", "stacks", "labels", "dev", "samples", "repeats"))
        + (" --import-only" if args.import_only else ""),
    }
    started = time.perf_counter()
    for stack_name, size, _repeat in itertools.product(
            args.stacks.split(","), sizes, range(args.repeats)):
        texts = corpus.texts[:size] + dev_texts
        labels = corpus.labels[:size] + dev_labels
        print(f"[case study] {stack_name} {size:,} ...", flush=True)
        cell = run_cell(stack_name, size, texts, labels, args)
        print(json.dumps(cell), flush=True)
        report["cells"].append(cell)
        report["growth"] = growth(report["cells"])
        _write(report, args.out)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    _write(report, args.out)
    print(markdown(report))


def _write(report: dict[str, Any], out: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{out}.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
