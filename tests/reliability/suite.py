"""The reliability probe: 30 clients label through a real deployment while its processes are
killed; nothing acknowledged may be lost, nothing handed out twice, no 5xx outside the kill window,
and a dead worker's run must be noticed within two minutes with no worker alive.

Per backend (``sqlite``: the default embedded deployment, SQLite + kombu's SQLAlchemy broker;
``postgres``: Postgres + Redis), the suite:

1. migrates a fresh database (``tapestry db upgrade``) and seeds a project on a tiny offline BERT
   (pool items, a dev set, batch size 10, one annotation per item), 20 API users with tokens and
   10 browser users with passwords;
2. starts the web process as ``tapestry serve`` does (uvicorn, one process) and one Celery worker
   as ``tapestry worker`` does, the worker with a test pause point after the first training step;
3. runs 30 clients for ``--seconds``: 20 API clients (lease an item, label it with an
   ``Idempotency-Key``, read the project or queue status) and 10 browser-session clients (sign in
   through the login form, then the htmx next-item fragment and the label form, cookie + CSRF);
4. ``kill -9`` of the web process at 40 % of the load, restarted at once (the kill window runs
   from the kill until the restarted process answers ``/healthz``, +1 s); and ``kill -9`` of the
   worker mid-retrain: once a retrain reaches its first training step, or, from half-time on, as
   soon as one is running (no worker is started again);
5. checks: every label acknowledged with a 2xx is in the database; no item went to two annotators
   (leases seen by the clients, and stored annotations); no 5xx outside the kill window; the killed
   run is ``failed`` or re-queued within ``notice_limit`` seconds of the worker kill; and, with both
   backends, SQLite's label throughput is at least half of Postgres's.

``--full`` (the default) uses the shipped heartbeat and stale-run timeouts and writes
``tests/benchmarks/results/reliability.{json,md}``; ``--short`` (CI) shortens them through
``TAPESTRY_*`` variables and writes nothing. Run: ``bash scripts/reliability.sh [--short|--full]``
or ``python -m tests.reliability [--short] [--backends sqlite,postgres] [--seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_RUNNING,
    SPLIT_DEV,
    SPLIT_POOL,
    Annotation,
    Item,
    Label,
    Membership,
    OverlapItem,
    Project,
    TrainingRun,
    User,
)
from app.db.session import make_engine
from app.domain.annotation.overlap import target_annotators
from app.domain.imports import content_hash
from app.domain.users import create_token
from app.security.passwords import hash_password
from tests.benchmarks.bench_web import (
    ITEM_ID,
    drop_postgres,
    fresh_postgres,
    percentiles,
    postgres_reachable,
    start_server,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
REPO_ROOT = Path(__file__).resolve().parents[2]
API_CLIENTS = 20
BROWSER_CLIENTS = 10
PASSWORD = "reliability-Passw0rd-" + "x" * 8
NOTICE_LIMIT_SECONDS = 120.0
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRF-Token":\s*"([^"]+)"')
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"


@dataclass(frozen=True)
class Profile:
    """How long and with which timeouts; ``short`` is the CI run."""

    name: str
    seconds: float
    env: dict[str, str]
    notice_limit: float = NOTICE_LIMIT_SECONDS


FULL = Profile("full", 150.0, {})
SHORT = Profile("short", 60.0, {"TAPESTRY_HEARTBEAT_SECONDS": "1",
                                "TAPESTRY_STALE_RUN_SECONDS": "6"}, notice_limit=30.0)


@dataclass
class Sample:
    route: str
    started: float
    ended: float
    status: int | None  # None: no HTTP response (connection refused, reset, timeout)
    kind: str  # "ok", "HTTP 503", "ConnectError", ...


@dataclass
class Observed:
    """Everything the clients saw, with monotonic timestamps."""

    samples: list[Sample] = field(default_factory=list)
    acknowledged: set[tuple[int, int]] = field(default_factory=set)  # (user id, item id)
    handed: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # item -> users

    async def call(self, route: str, request: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response = await request
        except httpx.HTTPError as exc:
            self.samples.append(Sample(route, started, time.monotonic(), None,
                                       type(exc).__name__))
            return None
        kind = "ok" if response.status_code < 400 else f"HTTP {response.status_code}"
        self.samples.append(Sample(route, started, time.monotonic(), response.status_code, kind))
        return response


@dataclass
class Seeded:
    project_id: int
    label_names: list[str]
    label_ids: list[int]
    api: list[tuple[int, str]]  # (user id, token)
    browser: list[tuple[int, str]]  # (user id, e-mail)


@dataclass
class Deployment:
    name: str
    database_url: str
    broker_url: str
    work: Path
    env: dict[str, str]
    port: int
    web: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pause_dir(self) -> Path:
        return self.work / "pause"


# --------------------------------------------------------------------------- set-up


def tapestry_bin() -> str:
    candidate = Path(sys.executable).parent / "tapestry"
    return str(candidate) if candidate.exists() else "tapestry"


def pick_port() -> int:
    """A free port in ``TAPESTRY_RELIABILITY_PORTS`` (``low-high``), else any free port."""
    spec = os.environ.get("TAPESTRY_RELIABILITY_PORTS", "")
    candidates = range(int(spec.split("-")[0]), int(spec.split("-")[1]) + 1) if spec else [0]
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in {spec}")


def seed(database_url: str, base_model: Path, pool: int) -> Seeded:
    from tests.worker.ml.tiny import LABEL_NAMES, make_corpus

    texts, gold = make_corpus(pool + 24, seed=11)
    texts = [f"{text} (ticket {i})" for i, text in enumerate(texts)]
    engine = make_engine(database_url)
    password_hash = hash_password(PASSWORD)
    with Session(engine) as db:
        admin = User(email="admin@reliability.example", password_hash=password_hash, role="admin")
        db.add(admin)
        db.flush()
        project = Project(name="reliability", base_model=str(base_model), batch_size=10,
                          label_budget=1_000_000, strategy="entropy", created_by_id=admin.id,
                          train_config={"epochs": 1, "batch_size": 8, "max_length": 32,
                                        "eval_batch_size": 32})
        db.add(project)
        db.flush()
        labels = [Label(project_id=project.id, name=name, position=i, shortcut=str(i + 1))
                  for i, name in enumerate(LABEL_NAMES)]
        db.add_all(labels)
        db.add(Membership(project_id=project.id, user_id=admin.id, role="lead"))
        db.flush()
        items = [Item(project_id=project.id, text=text, content_hash=content_hash(text),
                      split=SPLIT_POOL if i < pool else SPLIT_DEV)
                 for i, text in enumerate(texts)]
        db.add_all(items)
        db.flush()
        db.add_all([Annotation(project_id=project.id, item_id=item.id,
                               label_id=labels[gold[pool + j]].id, annotator_id=admin.id)
                    for j, item in enumerate(items[pool:])])
        api, browser = [], []
        for i in range(API_CLIENTS + BROWSER_CLIENTS):
            user = User(email=f"u{i}@reliability.example", password_hash=password_hash)
            db.add(user)
            db.flush()
            db.add(Membership(project_id=project.id, user_id=user.id, role="annotator"))
            if i < API_CLIENTS:
                issued = create_token(db, user=user, name="probe", scopes=["annotate"])
                api.append((user.id, issued.plaintext))
            else:
                browser.append((user.id, user.email))
        db.commit()
        seeded = Seeded(project.id, [lab.name for lab in labels], [lab.id for lab in labels],
                        api, browser)
    engine.dispose()
    return seeded


def migrate(env: dict[str, str], log: Path) -> None:
    with log.open("ab") as handle:
        subprocess.run([tapestry_bin(), "db", "upgrade"], cwd=REPO_ROOT, env=env, check=True,
                       stdout=handle, stderr=subprocess.STDOUT, timeout=300)


def run_in_own_loop(coroutine: Any) -> Any:
    """``asyncio.run`` in a fresh thread: inside pytest an earlier test (Playwright's sync API)
    may have left an event loop set on the main thread, where ``asyncio.run`` refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def start_worker(deployment: Deployment) -> subprocess.Popen[bytes]:
    """One ``tapestry worker`` process serving every queue (one worker host, so ``kill -9`` of it
    leaves no worker alive), with a pause point after the first training step."""
    log = deployment.work / "worker.log"
    env = deployment.env | {"TAPESTRY_TEST_PAUSE_AT": "training",
                            "TAPESTRY_TEST_PAUSE_DIR": str(deployment.pause_dir),
                            "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([tapestry_bin(), "worker", "-Q", "gpu,live,inference,default"],
                               cwd=REPO_ROOT, env=env,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while b" ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def kill9(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the process and its group (uvicorn's or Celery's children die with it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --------------------------------------------------------------------------- clients


async def api_client(obs: Observed, url: str, seeded: Seeded, user_id: int, token: str,
                     deadline: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{url}/api/v1/projects/{seeded.project_id}"
    n = 0
    async with httpx.AsyncClient(timeout=40, headers=headers) as client:
        while time.monotonic() < deadline:
            n += 1
            if n % 5 == 0:
                route = ("api GET project", base) if n % 10 else ("api GET queue status",
                                                                 f"{base}/queue/status")
                await obs.call(route[0], client.get(route[1]))
                continue
            lease = await obs.call("api POST lease", client.post(f"{base}/queue/lease",
                                                                 json={"n": 1}))
            if lease is None or lease.status_code != 200 or not lease.json()["items"]:
                await asyncio.sleep(0.5)
                continue
            item_id = int(lease.json()["items"][0]["item_id"])
            obs.handed[item_id].add(user_id)
            name = seeded.label_names[(user_id + n) % len(seeded.label_names)]
            body = {"annotations": [{"item_id": item_id, "label": name}]}
            key = secrets.token_hex(12)
            for _attempt in range(3):  # a client retries a lost response with the same key
                done = await obs.call("api POST annotations", client.post(
                    f"{base}/annotations", json=body, headers={"Idempotency-Key": key}))
                if done is not None and done.status_code < 500:
                    break
                await asyncio.sleep(1.0)
            if done is not None and 200 <= done.status_code < 300:
                for entry in done.json()["annotations"]:
                    obs.acknowledged.add((user_id, int(entry["item_id"])))


async def sign_in(obs: Observed, client: httpx.AsyncClient, url: str, email: str,
                  project_id: int) -> str | None:
    """The login form, then the annotate page: the session's CSRF token for htmx requests."""
    page = await obs.call("browser GET login", client.get(f"{url}/login"))
    match = CSRF_FIELD.search(page.text) if page is not None else None
    if match is None:
        return None
    form = {"email": email, "password": PASSWORD, "csrf_token": match.group(1),
            "next": f"/projects/{project_id}/annotate"}
    done = await obs.call("browser POST login", client.post(f"{url}/login", data=form))
    if done is None or done.status_code != 303:
        return None
    page = await obs.call("browser GET annotate",
                          client.get(f"{url}/projects/{project_id}/annotate"))
    match = CSRF_HEADER.search(page.text) if page is not None else None
    return match.group(1) if match else None


async def browser_client(obs: Observed, url: str, seeded: Seeded, user_id: int, email: str,
                         deadline: float) -> None:
    base = f"{url}/projects/{seeded.project_id}/annotate"
    async with httpx.AsyncClient(timeout=40) as client:
        csrf: str | None = None
        n = 0
        while time.monotonic() < deadline:
            if csrf is None:
                csrf = await sign_in(obs, client, url, email, seeded.project_id)
                if csrf is None:
                    await asyncio.sleep(1.0)
                continue
            n += 1
            headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
            shown = await obs.call("browser GET next", client.get(f"{base}/next",
                                                                  headers=headers))
            match = ITEM_ID.search(shown.content) if shown is not None else None
            if shown is None or shown.status_code != 200 or match is None:
                await asyncio.sleep(0.5)
                continue
            item_id = int(match.group(1))
            obs.handed[item_id].add(user_id)
            form = {"label_id": str(seeded.label_ids[(user_id + n) % len(seeded.label_ids)]),
                    "duration_ms": "1500", "key": secrets.token_hex(8)}
            for _attempt in range(3):
                done = await obs.call("browser POST label", client.post(
                    f"{base}/items/{item_id}/label", data=form, headers=headers))
                if done is not None and done.status_code < 500:
                    break
                await asyncio.sleep(1.0)
            if done is not None and 200 <= done.status_code < 300:
                obs.acknowledged.add((user_id, item_id))


# --------------------------------------------------------------------------- faults


@dataclass
class Faults:
    worker_killed_at: float | None = None
    after_first_step: bool = False
    killed_run_id: int | None = None
    run_noticed_at: float | None = None
    run_final_status: str | None = None
    web_killed_at: float | None = None
    web_back_at: float | None = None

    def in_kill_window(self, sample: Sample) -> bool:
        if self.web_killed_at is None:
            return False
        back = self.web_back_at if self.web_back_at is not None else float("inf")
        return sample.ended >= self.web_killed_at and sample.started <= back + 1.0


def running_run(database_url: str, project_id: int) -> int | None:
    engine = make_engine(database_url)
    try:
        with Session(engine) as db:
            return db.scalar(select(TrainingRun.id).where(
                TrainingRun.project_id == project_id, TrainingRun.status == RUN_RUNNING))
    finally:
        engine.dispose()


def run_status(database_url: str, run_id: int) -> str:
    engine = make_engine(database_url)
    try:
        with Session(engine) as db:
            return str(db.scalar(select(TrainingRun.status).where(TrainingRun.id == run_id)))
    finally:
        engine.dispose()


async def kill_worker_mid_retrain(deployment: Deployment, seeded: Seeded, faults: Faults,
                                  t0: float, seconds: float, notice_limit: float) -> None:
    """kill -9 the worker mid-retrain (none is started again); watch the dead run."""
    # Best after its first training step (the pause point); from half-time on, as soon as a
    # retrain run is claimed (running). A slow machine may need longer than the load: keep
    # waiting (up to 2 minutes more) rather than kill a worker with no run.
    reached = deployment.pause_dir / "training.reached"
    while time.monotonic() < t0 + seconds + 120.0:
        if reached.exists() or time.monotonic() > t0 + seconds * 0.5:
            faults.killed_run_id = await asyncio.to_thread(
                running_run, deployment.database_url, seeded.project_id)
            if faults.killed_run_id is not None:
                break
        await asyncio.sleep(0.5)
    faults.after_first_step = reached.exists()
    assert deployment.worker is not None
    await asyncio.to_thread(kill9, deployment.worker)
    faults.worker_killed_at = time.monotonic()
    if faults.killed_run_id is None:
        return
    limit = faults.worker_killed_at + notice_limit + 30.0  # observe a little past the limit
    while time.monotonic() < limit:
        status = await asyncio.to_thread(run_status, deployment.database_url,
                                         faults.killed_run_id)
        if status != RUN_RUNNING:
            faults.run_noticed_at = time.monotonic()
            faults.run_final_status = status
            return
        await asyncio.sleep(0.5)


async def kill_web(deployment: Deployment, faults: Faults, t0: float, seconds: float) -> None:
    """kill -9 the web process at 40 % of the load, and restart it at once."""
    await asyncio.sleep(max(0.0, t0 + seconds * 0.4 - time.monotonic()))
    assert deployment.web is not None
    faults.web_killed_at = time.monotonic()
    await asyncio.to_thread(kill9, deployment.web)
    deployment.web = await asyncio.to_thread(
        start_server, deployment.env, deployment.port, deployment.work / "web.log")
    faults.web_back_at = time.monotonic()


async def drive(deployment: Deployment, seeded: Seeded, profile: Profile,
                seconds: float) -> tuple[Observed, Faults, float]:
    obs, faults = Observed(), Faults()
    t0 = time.monotonic()
    deadline = t0 + seconds
    clients = [api_client(obs, deployment.url, seeded, uid, token, deadline)
               for uid, token in seeded.api]
    clients += [browser_client(obs, deployment.url, seeded, uid, email, deadline)
                for uid, email in seeded.browser]
    faults_done = asyncio.gather(
        kill_worker_mid_retrain(deployment, seeded, faults, t0, seconds, profile.notice_limit),
        kill_web(deployment, faults, t0, seconds))
    await asyncio.gather(*clients)
    load_seconds = time.monotonic() - t0
    await faults_done
    return obs, faults, load_seconds


# --------------------------------------------------------------------------- checks and figures


@dataclass(frozen=True)
class Stored:
    pairs: set[tuple[int, int]]
    """(annotator, item) of every stored label."""
    per_item: dict[int, int]
    """Distinct annotators per labelled item."""
    overlap: frozenset[int]
    """Items routed to several annotators on purpose (overlap routing, to measure agreement)."""
    overlap_k: int

    def allowed(self, item_id: int) -> int:
        """How many annotators may label the item: ``k`` for an overlap item, else one."""
        return self.overlap_k if item_id in self.overlap else 1

    def over_assigned(self) -> list[int]:
        return sorted(i for i, n in self.per_item.items() if n > self.allowed(i))


def stored_labels(database_url: str, project_id: int) -> Stored:
    """Every stored label, annotators per item, and the project's overlap items."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as db:
            rows = db.execute(
                select(Annotation.annotator_id, Annotation.item_id)
                .join(Item, Item.id == Annotation.item_id)
                .where(Annotation.project_id == project_id, Item.split == SPLIT_POOL,
                       Annotation.deleted.is_(False)))
            pairs = {(int(u), int(i)) for u, i in rows if u is not None}
            overlap = frozenset(db.scalars(
                select(OverlapItem.item_id).where(OverlapItem.project_id == project_id)))
            project = db.get(Project, project_id)
            assert project is not None
            k = target_annotators(project)
        per_item = Counter(item for _, item in pairs)
        return Stored(pairs, dict(per_item), overlap, k)
    finally:
        engine.dispose()


def summarise(name: str, obs: Observed, faults: Faults, load_seconds: float,
              database_url: str, project_id: int, profile: Profile) -> dict[str, Any]:
    stored = stored_labels(database_url, project_id)
    lost = sorted(obs.acknowledged - stored.pairs)
    # An item may go to one annotator, an overlap item to k of them (agreement is measured there).
    handed_twice = sorted(item for item, users in obs.handed.items()
                          if len(users) > stored.allowed(item))
    doubled_in_db = len(stored.over_assigned())
    outside = [s for s in obs.samples if not faults.in_kill_window(s)]
    inside = [s for s in obs.samples if faults.in_kill_window(s)]
    server_errors = Counter(f"{s.route}: {s.kind}" for s in outside
                            if s.status is not None and s.status >= 500)
    routes: dict[str, Any] = {}
    by_route: dict[str, list[Sample]] = defaultdict(list)
    for sample in obs.samples:
        by_route[sample.route].append(sample)
    for route, samples in sorted(by_route.items()):
        answered = [s.ended - s.started for s in samples if s.status is not None]
        row: dict[str, Any] = percentiles(answered) if answered else {"n": 0}
        row["requests"] = len(samples)
        row["errors"] = dict(Counter(s.kind for s in samples if s.kind != "ok"))
        routes[route] = row
    noticed_after = (faults.run_noticed_at - faults.worker_killed_at
                     if faults.run_noticed_at is not None and faults.worker_killed_at is not None
                     else None)
    return {
        "backend": name,
        "profile": profile.name,
        "timeouts": profile.env or "shipped defaults",
        "clients": {"api": API_CLIENTS, "browser": BROWSER_CLIENTS},
        "load_seconds": round(load_seconds, 1),
        "requests": len(obs.samples),
        "labels_acknowledged": len(obs.acknowledged),
        "labels_stored": len(stored.pairs),
        "overlap_items": len(stored.overlap),
        "labels_per_second": round(len(obs.acknowledged) / load_seconds, 2),
        "acknowledged_but_lost": len(lost),
        "items_handed_to_two_annotators": len(handed_twice),
        "items_labelled_by_two_annotators": doubled_in_db,
        "errors_outside_kill_window": dict(Counter(f"{s.route}: {s.kind}" for s in outside
                                                   if s.kind != "ok")),
        "server_errors_outside_kill_window": dict(server_errors),
        "errors_inside_kill_window": dict(Counter(f"{s.route}: {s.kind}" for s in inside
                                                  if s.kind != "ok")),
        "kill_window_seconds": (round(faults.web_back_at - faults.web_killed_at + 1.0, 1)
                                if faults.web_back_at and faults.web_killed_at else None),
        "killed_run_id": faults.killed_run_id,
        "worker_killed_after_first_training_step": faults.after_first_step,
        "killed_run_status": faults.run_final_status,
        "dead_run_noticed_after_seconds": (round(noticed_after, 1)
                                           if noticed_after is not None else None),
        "notice_limit_seconds": profile.notice_limit,
        "routes": routes,
        "examples": {"lost": lost[:5], "handed_twice": handed_twice[:5]},
    }


def problems(result: dict[str, Any]) -> list[str]:
    """What this backend's run failed, in words (empty: it passed)."""
    found = []
    if result["labels_acknowledged"] == 0:
        found.append("no label was acknowledged at all")
    if result["acknowledged_but_lost"]:
        found.append(f"{result['acknowledged_but_lost']} acknowledged labels are not stored "
                     f"(e.g. {result['examples']['lost']})")
    if result["items_handed_to_two_annotators"] or result["items_labelled_by_two_annotators"]:
        found.append(f"double assignment: {result['items_handed_to_two_annotators']} items "
                     f"handed to more annotators than allowed (one; k for an overlap item), "
                     f"{result['items_labelled_by_two_annotators']} labelled by more")
    if result["server_errors_outside_kill_window"]:
        found.append(f"5xx outside the kill window: {result['server_errors_outside_kill_window']}")
    if result["killed_run_id"] is None:
        found.append("no running retrain was found at the worker kill")
    noticed = result["dead_run_noticed_after_seconds"]
    if noticed is None or noticed > result["notice_limit_seconds"]:
        found.append(f"the dead run was not marked failed or re-queued within "
                     f"{result['notice_limit_seconds']:.0f} s (after: {noticed})")
    return found


def throughput_problem(results: list[dict[str, Any]]) -> str | None:
    rates = {r["backend"]: r["labels_per_second"] for r in results}
    if "sqlite" in rates and "postgres" in rates and rates["sqlite"] * 2 < rates["postgres"]:
        return (f"SQLite throughput {rates['sqlite']} labels/s is under half of Postgres's "
                f"{rates['postgres']}")
    return None


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Reliability probe", "",
             f"`{report['command']}` on {report['machine']} (load average before: "
             f"{report['load_average_before']}). {API_CLIENTS} API + {BROWSER_CLIENTS} "
             "browser-session clients against a real web process and Celery worker; `kill -9` "
             "of the worker mid-retrain (no worker afterwards) and of the web process "
             "(restarted). Latencies are client-side, in ms.", "",
             "| backend | load s | requests | labels acked / stored | labels/s | lost | "
             "double assignments | 5xx outside kill window | kill window s | dead run noticed "
             "after s (status) |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in report["backends"]:
        doubled = r["items_handed_to_two_annotators"] + r["items_labelled_by_two_annotators"]
        lines.append(
            f"| {r['backend']} | {r['load_seconds']} | {r['requests']} | "
            f"{r['labels_acknowledged']} / {r['labels_stored']} | {r['labels_per_second']} | "
            f"{r['acknowledged_but_lost']} | {doubled} | "
            f"{sum(r['server_errors_outside_kill_window'].values())} | "
            f"{r['kill_window_seconds']} | {r['dead_run_noticed_after_seconds']} "
            f"({r['killed_run_status']}) |")
    lines += ["", f"Verdict: {report['verdict']}", ""]
    for r in report["backends"]:
        lines += [f"## {r['backend']}", "",
                  "| route | requests | p50 | p95 | p99 | errors |",
                  "|---|---:|---:|---:|---:|---|"]
        for route, row in r["routes"].items():
            errors = ", ".join(f"{k} ×{v}" for k, v in row["errors"].items()) or "-"
            lines.append(f"| {route} | {row['requests']} | {row.get('p50_ms', '-')} | "
                         f"{row.get('p95_ms', '-')} | {row.get('p99_ms', '-')} | {errors} |")
        outside = ", ".join(f"{k} ×{v}" for k, v in r["errors_outside_kill_window"].items())
        inside = ", ".join(f"{k} ×{v}" for k, v in r["errors_inside_kill_window"].items())
        lines += ["", f"Errors outside the kill window: {outside or 'none'}.",
                  f"Inside it: {inside or 'none'}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver


def run_backend(name: str, profile: Profile, work: Path, base_model: Path, *,
                seconds: float | None = None, postgres: str = DEFAULT_POSTGRES,
                redis: str = DEFAULT_REDIS, pool: int = 4000) -> dict[str, Any]:
    """One backend end to end; returns its figures (check them with :func:`problems`)."""
    work.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if name == "sqlite":
        database_url = f"sqlite:///{work / 'data' / 'tapestry.sqlite'}"
        broker_url = ""  # the embedded default: kombu's SQLAlchemy transport in the data dir
    else:
        database_url, pg_name = fresh_postgres(postgres)
        broker_url = redis
        import redis as redis_lib

        client = redis_lib.Redis.from_url(redis)
        client.flushdb()  # messages of an earlier run must not reach this one's worker
        client.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
    env |= {"TAPESTRY_DATA_DIR": str(work / "data"),
            "TAPESTRY_SECRET_KEY": secrets.token_urlsafe(48),
            "TAPESTRY_WRITE_RATE_LIMIT_PER_MINUTE": "100000",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if name != "sqlite":
        env |= {"TAPESTRY_DATABASE_URL": database_url, "TAPESTRY_BROKER_URL": broker_url}
    env |= profile.env
    deployment = Deployment(name, database_url, broker_url, work, env, pick_port())
    try:
        migrate(env, work / "migrate.log")
        seeded = seed(database_url, base_model, pool)
        deployment.worker = start_worker(deployment)
        deployment.web = start_server(env, deployment.port, work / "web.log")
        obs, faults, load_seconds = run_in_own_loop(
            drive(deployment, seeded, profile, seconds or profile.seconds))
        return summarise(name, obs, faults, load_seconds, database_url, seeded.project_id,
                         profile)
    finally:
        for process in (deployment.web, deployment.worker):
            if process is not None and process.poll() is None:
                kill9(process)
        if pg_name is not None:
            make_engine(database_url).dispose()
            drop_postgres(postgres, pg_name)


def tiny_base_model(directory: Path) -> Path:
    import torch

    from tests.worker.ml.tiny import make_tiny_bert

    torch.set_num_threads(1)
    return make_tiny_bert(directory / "tiny-bert")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="CI: short timeouts, no results file")
    mode.add_argument("--full", action="store_true", help="shipped timeouts; writes results")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=None, help="load duration per backend")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a Postgres server URL")
    parser.add_argument("--redis", default=os.environ.get("TAPESTRY_TEST_REDIS_URL",
                                                         DEFAULT_REDIS))
    parser.add_argument("--work", type=Path, default=None,
                        help="keep databases and process logs in this folder (default: a "
                        "temporary one, removed afterwards)")
    args = parser.parse_args(argv)
    profile = SHORT if args.short else FULL
    backends = [b for b in args.backends.split(",") if b]
    if "postgres" in backends and not postgres_reachable(args.postgres):
        print(f"Postgres unreachable at {args.postgres}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "command": "python -m tests.reliability " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "backends": [],
    }
    with tempfile.TemporaryDirectory(prefix="tapestry-reliability-") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        base_model = tiny_base_model(work)
        for name in backends:
            result = run_backend(name, profile, work / name, base_model, seconds=args.seconds,
                                 postgres=args.postgres, redis=args.redis)
            report["backends"].append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "routes"}, indent=2))
    failures = [f"{r['backend']}: {p}" for r in report["backends"] for p in problems(r)]
    slow = throughput_problem(report["backends"])
    failures += [slow] if slow else []
    report["verdict"] = "PASS" if not failures else "FAIL: " + "; ".join(failures)
    if profile is FULL:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "reliability.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return 0 if not failures else 1
