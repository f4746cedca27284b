"""Annotator-view server timings: next-item fragment and label submission under 20 annotators.

Run: ``python -m tests.benchmarks.bench_web [--items 100000] [--annotators 20] [--seconds 20]
[--postgres URL] [--concurrency 0,64] [--workers 1]`` (Postgres runs too when a server answers at
``--postgres``; pass ``none`` to skip). Writes ``tests/benchmarks/results/web.{json,md}``.
``--concurrency`` compares values of ``TAPESTRY_ANNOTATOR_CONCURRENCY`` side by side: 0 (the
shipped default: 1 request at a time on SQLite, 2 on Postgres, in arrival order) against, e.g.,
64 (no limit: every request gets a thread and they share the interpreter lock).

A real uvicorn process (one worker, as ``tapestry serve`` runs it) serves a project with
``--items`` pool items and a 200-entry queue. A load generator (httpx, asyncio) on loopback plays
``--annotators`` signed-in annotators, each looping: fetch the next-item fragment, post a label
(every 100th closes a batch and enqueues a retrain on the embedded broker), and fetch a static
file through the same middleware: the baseline, measured side by side under the same load.
Two phases:

* ``paced``: each annotator thinks 1 s between items (a team far busier than a real one);
* ``saturated``: no think time at all, so latency includes queueing behind the other 19.

Figures are client-side latencies (p50/p95/p99, ms) and requests per second; ratios are medians
against the static file's median in the same phase. The load generator shares the machine's CPUs
with the server, so the saturated figures are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Engine, Table, create_engine, insert, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import Base, utcnow
from app.db.models import Item, Label, Membership, Project, QueueEntry, User
from app.db.session import make_engine
from app.security.passwords import hash_password
from app.security.sessions import SESSION_COOKIE, encode_session_cookie, session_data

RESULTS = Path(__file__).parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_MS = 50.0
QUEUE_SIZE = 200
ITEM_ID = re.compile(rb'data-item-id="(\d+)"')
BASELINE = "static file (baseline)"


@dataclass
class Annotator:
    user_id: int
    cookie: str
    csrf: str
    held: list[int] = field(default_factory=list)


@dataclass
class Phase:
    name: str
    think_seconds: float
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wall: float = 0.0


# --------------------------------------------------------------------------- data


def seed(engine: Engine, items: int, annotators: int, password_hash: str) -> tuple[int, list[int]]:
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        lead = User(email="lead@bench.example", password_hash=password_hash, role="lead")
        db.add(lead)
        db.flush()
        project = Project(name="bench", label_budget=10_000_000, batch_size=100,
                          created_by_id=lead.id)
        db.add(project)
        db.flush()
        db.add_all([Label(project_id=project.id, name=n, position=i, shortcut=str(i + 1))
                    for i, n in enumerate(("sports", "finance", "science", "politics"))])
        users = [User(email=f"a{i}@bench.example", password_hash=password_hash)
                 for i in range(annotators)]
        db.add_all(users)
        db.flush()
        db.add_all([Membership(project_id=project.id, user_id=u.id) for u in users])
        now = utcnow()
        table = cast(Table, Item.__table__)
        for start in range(0, items, 10_000):
            rows = []
            for i in range(start, min(items, start + 10_000)):
                body = (f"Item {i}: the committee met on Tuesday to discuss the budget, the new "
                        f"stadium and a study of cell energy; readers asked {i % 97} questions.")
                rows.append({"project_id": project.id, "text": body, "split": "pool",
                             "content_hash": hashlib.sha256(body.encode()).hexdigest(),
                             "meta": {}, "created_at": now})
            db.execute(insert(table), rows)
        first = db.scalar(text("SELECT min(id) FROM items"))
        db.add_all([
            QueueEntry(project_id=project.id, queue_version=1, item_id=first + r * 7, rank=r,
                       score=1.0 - r / QUEUE_SIZE, strategy="entropy", reason="entropy",
                       predicted=[{"label": "sports", "prob": 0.5},
                                  {"label": "finance", "prob": 0.3}],
                       neighbours=[{"item_id": first + 1, "label": "sports", "similarity": 0.9}])
            for r in range(QUEUE_SIZE)
        ])
        project.queue_version = 1
        db.commit()
        return project.id, [u.id for u in users]


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], port: int, log: Path, workers: int = 1
                 ) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--no-access-log", "--timeout-keep-alive", "75", "--workers", str(workers)]
    handle = log.open("ab")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=handle,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- load


async def timed(phase: Phase, name: str, request: Any) -> httpx.Response | None:
    """Await one request, recording its latency; a transport failure counts as an error."""
    started = time.perf_counter()
    try:
        response: httpx.Response = await request
    except httpx.HTTPError as exc:
        phase.errors[name] += 1
        phase.error_kinds[f"{name}: {type(exc).__name__}"] += 1
        return None
    phase.latencies[name].append(time.perf_counter() - started)
    if response.status_code >= 400:
        phase.errors[name] += 1
        phase.error_kinds[f"{name}: HTTP {response.status_code}"] += 1
    return response


async def one_item(client: httpx.AsyncClient, url: str, project_id: int, who: Annotator,
                   phase: Phase, label_ids: list[int], n: int) -> bool:
    """Fetch the next-item fragment, think, post a label; False when no item came back."""
    base = f"{url}/projects/{project_id}/annotate"
    headers = {"HX-Request": "true", "X-CSRF-Token": who.csrf}
    cookies = {SESSION_COOKIE: who.cookie}
    exclude = ",".join(map(str, who.held[-2:]))
    response = await timed(phase, "next", client.get(
        f"{base}/next", params={"exclude": exclude} if exclude else {}, headers=headers,
        cookies=cookies))
    match = ITEM_ID.search(response.content) if response is not None else None
    if match is None:
        return False
    item = int(match.group(1))
    if phase.think_seconds:
        await asyncio.sleep(phase.think_seconds)
    await timed(phase, "label", client.post(
        f"{base}/items/{item}/label", headers=headers, cookies=cookies,
        data={"label_id": str(label_ids[n % len(label_ids)]), "duration_ms": "1800",
              "key": secrets.token_hex(8)}))
    who.held = who.held[-1:] + [item]
    return True


async def annotator_loop(client: httpx.AsyncClient, url: str, project_id: int, who: Annotator,
                         phase: Phase, label_ids: list[int], deadline: float) -> None:
    n = 0
    while time.monotonic() < deadline:
        if not await one_item(client, url, project_id, who, phase, label_ids, n):
            await asyncio.sleep(0.5)
            continue
        await timed(phase, BASELINE, client.get(f"{url}/static/app.css"))
        n += 1


async def run_phase(url: str, project_id: int, annotators: list[Annotator], label_ids: list[int],
                    phase: Phase) -> None:
    limits = httpx.Limits(max_connections=len(annotators) + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        deadline = time.monotonic() + phase.seconds
        started = time.perf_counter()
        await asyncio.gather(*(annotator_loop(client, url, project_id, who, phase, label_ids,
                                              deadline) for who in annotators))
        phase.wall = time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cost_of(url: str, project_id: int, who: Annotator, label_ids: list[int],
                  server_pid: int, rounds: int) -> dict[str, Any]:
    """One client, one request at a time: the server's CPU per request and unqueued latency."""
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        for name in ("next + label", BASELINE):
            phase = Phase(name, 0.0, 0.0)
            before = cpu_seconds(server_pid)
            started = time.perf_counter()
            for n in range(rounds):
                if name == BASELINE:
                    await timed(phase, BASELINE, client.get(f"{url}/static/app.css"))
                    continue
                await one_item(client, url, project_id, who, phase, label_ids, n)
            wall = time.perf_counter() - started
            requests = sum(len(v) for v in phase.latencies.values())
            out[name] = {
                "requests": requests,
                "server_cpu_ms_per_request": round((cpu_seconds(server_pid) - before) * 1000
                                                   / max(1, requests), 2),
                "requests_per_s": round(requests / wall, 1),
                "p50_ms": {k: round(statistics.median(v) * 1000, 2)
                           for k, v in phase.latencies.items()},
            }
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(pick(0.95), 2), "p99_ms": round(pick(0.99), 2)}


def summarise(phase: Phase) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    baseline = statistics.median(phase.latencies[BASELINE])
    for name, samples in phase.latencies.items():
        stats = percentiles(samples)
        stats["requests_per_s"] = round(len(samples) / phase.wall, 1)
        stats["p50_vs_baseline"] = round(statistics.median(samples) / baseline, 2)
        stats["errors"] = phase.errors.get(name, 0)
        rows[name] = stats
    total = sum(len(s) for s in phase.latencies.values())
    return {"think_seconds": phase.think_seconds, "seconds": round(phase.wall, 1),
            "error_kinds": dict(phase.error_kinds),
            "total_requests_per_s": round(total / phase.wall, 1), "endpoints": rows}


# --------------------------------------------------------------------------- driver


def bench_backend(name: str, database_url: str, args: argparse.Namespace, work: Path,
                  concurrency: int) -> dict[str, Any]:
    secret = secrets.token_urlsafe(48)
    password_hash = hash_password("bench-password-123")
    engine = make_engine(database_url)
    started = time.perf_counter()
    project_id, user_ids = seed(engine, args.items, args.annotators, password_hash)
    seed_seconds = time.perf_counter() - started
    with Session(engine) as db:
        label_ids = list(db.scalars(text("SELECT id FROM labels ORDER BY position")))
    engine.dispose()
    annotators = []
    for uid in user_ids:
        csrf = secrets.token_urlsafe(16)
        cookie = encode_session_cookie(secret, session_data(uid, password_hash, csrf))
        annotators.append(Annotator(uid, cookie, csrf))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
    env |= {"TAPESTRY_DATA_DIR": str(work / "data"), "TAPESTRY_DATABASE_URL": database_url,
            "TAPESTRY_BROKER_URL": f"sqla+sqlite:///{work / f'broker-{name}.sqlite'}",
            "TAPESTRY_SECRET_KEY": secret, "TAPESTRY_WRITE_RATE_LIMIT_PER_MINUTE": "100000",
            "TAPESTRY_ANNOTATOR_CONCURRENCY": str(concurrency)}
    if concurrency == 0:  # the shipped default for this database, as the server resolves it
        concurrency = Settings(data_dir=work / "data", database_url=database_url,
                               secret_key=secret).annotator_concurrency
    server = start_server(env, port, work / f"server-{name}.log", args.workers)
    url = f"http://127.0.0.1:{port}"
    try:
        phases = [Phase("warm-up", 0.0, 3.0), Phase("paced", 1.0, args.seconds),
                  Phase("saturated", 0.0, args.seconds)]
        results: dict[str, Any] = {"database": name, "annotator_concurrency": concurrency,
                                   "items": args.items,
                                   "annotators": args.annotators,
                                   "seed_seconds": round(seed_seconds, 1)}
        results["one_client"] = asyncio.run(
            cost_of(url, project_id, annotators[0], label_ids, server.pid, args.cost_rounds))
        for phase in phases:
            asyncio.run(run_phase(url, project_id, annotators, label_ids, phase))
            if phase.error_kinds:
                log = (work / f"server-{name}.log").read_text()[-3000:]
                print(f"--- {name} server log after {phase.name} (errors) ---\n{log}",
                      file=sys.stderr)
            if server.poll() is not None:
                log = (work / f"server-{name}.log").read_text()[-4000:]
                raise RuntimeError(f"the server died during the {phase.name} phase:\n{log}")
            if phase.name != "warm-up":
                results[phase.name] = summarise(phase)
        return results
    finally:
        stop(server)


def postgres_reachable(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def fresh_postgres(server_url: str) -> tuple[str, str]:
    name = f"tapestry_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}", name


def drop_postgres(server_url: str, name: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def summary_lines(backends: list[dict[str, Any]]) -> list[str]:
    """Paced-phase p50 per configuration: every run, and the median over runs."""
    runs: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for backend in backends:
        runs[(backend["database"], backend.get("annotator_concurrency"))].append(backend)
    lines = ["## Summary: paced phase (1 s think time), medians over runs, ms", "",
             "| database | annotator_concurrency | runs | next p50 per run | label p50 per run | "
             "next p50 / p95 / p99 | label p50 / p95 / p99 | requests/s (all) | static p50 | "
             "target met |",
             "|---|---:|---:|---|---|---|---|---:|---:|---|"]
    for (database, slots), group in runs.items():
        def med(endpoint: str, key: str, group: list[dict[str, Any]] = group) -> float:
            return float(statistics.median(run["paced"]["endpoints"][endpoint][key]
                                           for run in group))

        def per_run(endpoint: str, group: list[dict[str, Any]] = group) -> str:
            return ", ".join(f"{run['paced']['endpoints'][endpoint]['p50_ms']:.0f}"
                             for run in group)

        def triple(endpoint: str) -> str:
            return " / ".join(f"{med(endpoint, k):.0f}" for k in ("p50_ms", "p95_ms", "p99_ms"))

        rate = statistics.median(run["paced"]["total_requests_per_s"] for run in group)
        met = "yes" if max(med("next", "p50_ms"), med("label", "p50_ms")) <= TARGET_MS else "no"
        lines.append(
            f"| {database} | {slots} | {len(group)} | {per_run('next')} | {per_run('label')} | "
            f"{triple('next')} | {triple('label')} | {rate:.1f} | "
            f"{med(BASELINE, 'p50_ms'):.1f} | {met} |")
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Annotator view: server timings",
        "",
        f"`python -m tests.benchmarks.bench_web` on {report['machine']}; "
        f"{report['items']:,} pool items, {report['annotators']} concurrent annotators, "
        f"{report.get('workers', 1)} uvicorn worker(s), client on the same machine (loopback). "
        "``annotator_concurrency`` is how many annotator-view requests the server works on at "
        "once (shipped default: 1 on SQLite, 2 on Postgres; 64 means no limit beyond the "
        "thread pool). "
        "Latencies are client-side; "
        f"target: next item and label p50 <= {TARGET_MS:.0f} ms. Load average of the machine "
        f"before the run (other jobs included): {report['load_average_before']}.",
        "",
    ]
    lines += summary_lines(report["backends"])
    for backend in report["backends"]:
        slots = backend.get("annotator_concurrency", "-")
        lines += [f"## {backend['database']}, annotator_concurrency={slots} "
                  f"(seeded in {backend['seed_seconds']} s)", ""]
        lines += ["**one client, one request at a time** (no queueing behind other annotators; "
                  "server CPU per request read from /proc)", "",
                  "| requests | n | server CPU ms / request | p50 ms | req/s |",
                  "|---|---:|---:|---|---:|"]
        for name, row in backend["one_client"].items():
            p50 = ", ".join(f"{k} {v}" for k, v in row["p50_ms"].items())
            lines.append(f"| {name} | {row['requests']} | {row['server_cpu_ms_per_request']} | "
                         f"{p50} | {row['requests_per_s']} |")
        lines.append("")
        for phase in ("paced", "saturated"):
            data = backend[phase]
            lines += [
                f"**{phase}** — think time {data['think_seconds']} s, {data['seconds']} s, "
                f"{data['total_requests_per_s']} requests/s in all",
                "",
                "| endpoint | n | p50 ms | p95 ms | p99 ms | req/s | p50 / baseline | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for name, row in data["endpoints"].items():
                lines.append(f"| {name} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | "
                             f"{row['p99_ms']} | {row['requests_per_s']} | "
                             f"{row['p50_vs_baseline']}x | {row['errors']} |")
            if data["error_kinds"]:
                kinds = ", ".join(f"{k} ×{v}" for k, v in data["error_kinds"].items())
                lines += ["", f"Errors: {kinds}."]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per configuration; the summary quotes the median over runs")
    parser.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")],
                        default=[0], help="TAPESTRY_ANNOTATOR_CONCURRENCY values to compare, "
                        "e.g. 0,64 (the shipped default against no limit: threads only)")
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres")
    parser.add_argument("--cost-rounds", type=int, default=150,
                        help="sequential next+label pairs (and static files) for the CPU cost")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a Postgres server URL, or 'none'")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                                         f"Python {platform.python_version()}",
                              "load_average_before": [round(x, 2) for x in os.getloadavg()],
                              "items": args.items, "annotators": args.annotators,
                              "workers": args.workers,
                              "target_p50_ms": TARGET_MS, "backends": []}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        work = Path(tmp)
        runs = [(c, r) for c in args.concurrency for r in range(args.repeat)]
        for concurrency, run in runs:
            if "sqlite" in args.backends:
                report["backends"].append(bench_backend(
                    "sqlite", f"sqlite:///{work / f'bench-{concurrency}-{run}.sqlite'}", args,
                    work, concurrency))
            if ("postgres" in args.backends and args.postgres != "none"
                    and postgres_reachable(args.postgres)):
                url, name = fresh_postgres(args.postgres)
                try:
                    report["backends"].append(
                        bench_backend("postgres", url, args, work, concurrency))
                finally:
                    drop_postgres(args.postgres, name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "web.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "web.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
