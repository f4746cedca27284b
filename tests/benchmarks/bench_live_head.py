"""Fast-path latency: label submitted through the REST API -> queue refreshed by the live head.

A real uvicorn web process and two real Celery workers (``-Q gpu`` for adapter rounds,
``-Q live,inference,default`` for live-head refits), as ``tapestry demo`` runs them, on the
embedded defaults (SQLite database, kombu SQLAlchemy broker, local artifact directory).

The project: a pool of ``--pool`` 20 Newsgroups training texts (real texts, from
``worker/simulate/benchmark_data.py``) of which ``--labels`` carry their gold label, plus a labelled
dev set.
Phases, all in one run:

1. first refit: one label through the API; the live worker embeds every item (once per encoder
   version) and fits the head; timed from the request to the refreshed queue;
2. quiet: ``--samples`` labels, one at a time; each timed from the POST to the moment the project's
   live-head state shows the new label count (the state and the new queue version are written in
   one transaction);
3. adapter round: a retrain is requested through the API (gpu worker) and, while it trains,
   the same label -> queue latency is measured again; the adapter round is timed from the
   request to the queue rebuilt from the new adapter version.

The encoder is ``--encoder``: ``random-384`` (default, a 2-layer random BERT with MiniLM's width
384 and vocabulary: the head, acquisition and queue cost are those of MiniLM, the embedding pass
is about 3x cheaper), or ``minilm`` (the real base; embedding 10k texts takes minutes on 2 cores).
Latency numbers depend on the embedding width, not on the weights.

What the first refit costs: the encoder's forward pass over every item, i.e. items x tokens per
text (``--length``; 20 Newsgroups texts fill any length up to 128) x layers (``--layers``).
Measured on 2 shared cores: about 20 ms of CPU per text at 2 layers x 128 tokens, about 3 ms at
1 layer x 32 tokens (batches of 16k padded tokens); tokenising the whole text adds about 0.8 ms.
A 100,000-item pool is practical at ``--layers 1 --length 32`` (several minutes); phase 3 then
scores the whole pool again with the adapter (the queue rebuild), so it costs about as much again.
``--dev 0`` runs the project without a dev set (promotion by the adapter's held-out slice).

Usage: ``.venv/bin/python -m tests.benchmarks.bench_live_head [--pool 10000 --labels 1000]``
Results: ``tests/benchmarks/results/live_head.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"


def free_port(start: int = 18300, end: int = 18399) -> int:
    for port in range(start, end):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18300-18399")


def make_encoder(kind: str, directory: Path, layers: int) -> str:
    if kind == "minilm":
        return "minilm"
    from transformers import AutoTokenizer, BertConfig, BertModel

    from worker.ml.models import offline_default_path

    minilm = offline_default_path()
    import torch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=layers,
                        num_attention_heads=6, intermediate_size=1536)
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(directory)
    return str(directory)


def seed(database_url: str, encoder: str, pool: int, labelled: int, dev: int, length: int
         ) -> dict[str, Any]:
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session

    from app.db.base import Base
    from app.db.models import (
        ROLE_ADMIN,
        ROLE_LEAD,
        SPLIT_DEV,
        SPLIT_POOL,
        Annotation,
        Item,
        Label,
        Membership,
        Project,
        User,
    )
    from app.domain.users import create_token
    from worker.simulate.benchmark_data import load_dataset

    texts, gold = load_dataset("20ng", "train")
    seen: set[str] = set()
    rows = []
    for t, g in zip(texts, gold, strict=True):
        if t not in seen:
            seen.add(t)
            rows.append((t, g))
    import random

    random.Random(0).shuffle(rows)  # the corpus is sorted by class
    base = list(rows)
    copy = 1
    while len(rows) < pool + dev:  # pools beyond the corpus: numbered copies of its texts
        rows += [(f"{t} (copy {copy})", g) for t, g in base]
        copy += 1
    rows = rows[: pool + dev]
    names = sorted({g for _, g in rows})
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        user = User(email="bench@example.org", password_hash="x", role=ROLE_ADMIN)
        project = Project(name="live head bench", base_model=encoder, batch_size=100,
                          label_budget=100_000, strategy="cluster_uncertain",
                          train_config={"epochs": 1, "max_length": length, "min_steps": 0})
        db.add_all([user, project])
        db.flush()
        db.add(Membership(project_id=project.id, user_id=user.id, role=ROLE_LEAD))
        labels = [Label(project_id=project.id, name=n, position=i) for i, n in enumerate(names)]
        db.add_all(labels)
        db.flush()
        label_id = {n: lab.id for n, lab in zip(names, labels, strict=True)}
        import hashlib

        db.execute(insert(Item), [
            {"project_id": project.id, "text": t,
             "content_hash": hashlib.sha256(t.encode()).hexdigest(),
             "split": SPLIT_POOL if i < pool else SPLIT_DEV, "meta": {}}
            for i, (t, _g) in enumerate(rows)
        ])
        ids = [i for (i,) in db.execute(
            Item.__table__.select().with_only_columns(Item.id)
            .where(Item.project_id == project.id).order_by(Item.id))]
        gold_of = {item_id: rows[i][1] for i, item_id in enumerate(ids)}
        pre = ids[:labelled] + ids[pool:]
        db.execute(insert(Annotation), [
            {"project_id": project.id, "item_id": i, "label_id": label_id[gold_of[i]],
             "annotator_id": user.id, "source": "import", "deleted": False}
            for i in pre
        ])
        token = create_token(db, user=user, name="bench", scopes=["read", "annotate", "admin"])
        db.commit()
        out = {"project_id": project.id, "token": token.plaintext,
               "unlabelled": ids[labelled:pool], "gold": {i: gold_of[i] for i in ids[:pool]},
               "labels": names}
    engine.dispose()
    return out


class Stack:
    def __init__(self, work: Path, env: dict[str, str], port: int) -> None:
        self.work, self.env, self.port = work, env, port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def up(self) -> None:
        python = sys.executable
        self.start("web", [python, "-m", "uvicorn", "app.main:create_app", "--factory",
                           "--host", "127.0.0.1", "--port", str(self.port)])
        for name, queues in (("gpu", "gpu"), ("live", "live,inference,default")):
            self.start(name, [python, "-m", "celery", "-A", "worker.celery_app", "worker",
                              "--pool=solo", "-Q", queues, "-n", f"{name}-bench@%h",
                              "--without-mingle", "--without-gossip", "--loglevel=INFO"])

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.work / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} died:\n{tail}")

    def down(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait(condition: Any, what: str, stack: Stack, timeout: float, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        stack.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=1_000)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--encoder", choices=("random-384", "minilm"), default="random-384")
    parser.add_argument("--layers", type=int, default=2, help="layers of the random encoder")
    parser.add_argument("--length", type=int, default=128,
                        help="tokens per text for the embeddings and the adapter round")
    parser.add_argument("--out", default="live_head")
    parser.add_argument("--skip-adapter-round", action="store_true",
                        help="stop after the quiet phase (phase 3 costs ~10 minutes on 2 CPUs)")
    parser.add_argument("--ports", default="18300-18399", help="port range for the web server")
    parser.add_argument("--first-timeout", type=float, default=3600.0,
                        help="seconds the first refit (embeds the whole pool) may take")
    parser.add_argument("--round-timeout", type=float, default=7200.0,
                        help="seconds the adapter round (train + queue rebuild) may take")
    parser.add_argument("--max-during", type=int, default=400,
                        help="labels sent at most while the adapter round runs")
    args = parser.parse_args()

    import httpx
    from sqlalchemy import create_engine, select

    from app.db.models import LiveHeadState

    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    started = time.perf_counter()
    encoder = make_encoder(args.encoder, work / "encoder", args.layers)
    database = work / "data" / "tapestry.sqlite"
    database.parent.mkdir(parents=True)
    url = f"sqlite:///{database}"
    seeded = seed(url, encoder, args.pool, args.labels, args.dev, args.length)
    pid = seeded["project_id"]
    low, high = (int(p) for p in args.ports.split("-"))
    port = free_port(low, high + 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPESTRY_")}
    env |= {"TAPESTRY_DATA_DIR": str(work / "data"), "TAPESTRY_DATABASE_URL": url,
            "TAPESTRY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite'}",
            "TAPESTRY_SECRET_KEY": secrets.token_hex(24),
            "TAPESTRY_WRITE_RATE_LIMIT_PER_MINUTE": "100000",
            "TAPESTRY_LIVE_EMBED_MAX_LENGTH": str(args.length),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    stack = Stack(work, env, port)
    engine = create_engine(url)
    base = f"http://127.0.0.1:{port}/api/v1/projects/{pid}"
    headers = {"Authorization": f"Bearer {seeded['token']}"}
    unlabelled: list[int] = list(seeded["unlabelled"])
    gold: dict[int, str] = seeded["gold"]

    def labels_seen() -> int:
        with engine.connect() as c:
            row = c.execute(select(LiveHeadState.labels_used, LiveHeadState.refit_pending)
                            .where(LiveHeadState.project_id == pid)).first()
        return -1 if row is None else int(row[0])

    def label_one(client: httpx.Client, expect: int, timeout: float = 600) -> float:
        item = unlabelled.pop(0)
        t0 = time.perf_counter()
        r = client.post(f"{base}/annotations", headers=headers,
                        json={"annotations": [{"item_id": item, "label": gold[item]}]})
        r.raise_for_status()
        wait(lambda: labels_seen() >= expect, f"a refit with {expect} labels", stack, timeout)
        return time.perf_counter() - t0

    report: dict[str, Any] = {"pool": args.pool, "labels": args.labels, "dev": args.dev,
                              "encoder": args.encoder, "layers": args.layers,
                              "tokens": args.length, "cpus": os.cpu_count(),
                              "load_average_start": os.getloadavg()}
    try:
        stack.up()
        with httpx.Client(timeout=60) as client:
            wait(lambda: _healthy(client, port), "the web server", stack, 120, 0.2)
            n = args.labels + 1
            report["first_refit_seconds"] = round(label_one(client, n, args.first_timeout), 3)
            quiet = []
            for _ in range(args.samples):
                n += 1
                quiet.append(label_one(client, n))
            report["quiet"] = _summary(quiet)
            report["quiet_samples"] = [round(s, 3) for s in quiet]
            report["load_average_after_quiet"] = os.getloadavg()
            if not args.skip_adapter_round:
                t_round = time.perf_counter()
                r = client.post(f"{base}/runs", headers=headers,
                                json={"kind": "retrain", "reason": "benchmark", "force": True})
                r.raise_for_status()
                during: list[float] = []

                def round_done() -> bool:
                    return adapter_queue_done(engine, pid)

                while not round_done() and len(during) < args.max_during:
                    n += 1
                    during.append(label_one(client, n))
                    if time.perf_counter() - t_round > args.round_timeout:
                        raise TimeoutError("the adapter round did not finish in time")
                # enough samples: wait for the round without labelling (the timing stays honest)
                wait(round_done, "the adapter round's queue", stack,
                     max(1.0, args.round_timeout - (time.perf_counter() - t_round)), 0.2)
                report["adapter_round_seconds"] = round(time.perf_counter() - t_round, 3)
                report["during_adapter_round"] = _summary(during)
                report["during_samples"] = [round(s, 3) for s in during]
                report["load_average_end"] = os.getloadavg()
                with engine.connect() as c:
                    state = c.execute(select(LiveHeadState.served, LiveHeadState.served_reason,
                                             LiveHeadState.scores)
                                      .where(LiveHeadState.project_id == pid)).first()
                assert state is not None
                report["served_after_round"] = {"served": state[0], "reason": state[1],
                                                "scores": state[2]}
    finally:
        stack.down()
        engine.dispose()
        report["live_worker_log_tail"] = _refit_lines(work / "live.log")
        shutil.rmtree(work, ignore_errors=True)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    q = report["quiet"]["median"]
    if "adapter_round_seconds" in report:
        report["adapter_round_over_quiet_median"] = round(report["adapter_round_seconds"] / q, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(_markdown(report))
    print(_markdown(report))


def adapter_queue_done(engine: Any, project_id: int) -> bool:
    """Whether the project's current adapter version has rebuilt the queue (a round is over)."""
    from sqlalchemy import select, text

    from app.db.models import Project

    with engine.connect() as c:
        version = c.execute(select(Project.current_model_version_id)
                            .where(Project.id == project_id)).scalar()
        if version is None:
            return False
        done = c.execute(text(
            "select count(*) from training_runs where project_id=:p and "
            "kind='recompute_queue' and status='succeeded' and model_version_id=:v"),
            {"p": project_id, "v": version}).scalar()
    return bool(done)


def _healthy(client: Any, port: int) -> bool:
    try:
        return bool(client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    return {"n": len(samples), "median": round(statistics.median(samples), 3),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
            "min": round(ordered[0], 3), "max": round(ordered[-1], 3)}


def _refit_lines(log: Path) -> list[str]:
    if not log.exists():
        return []
    lines = [line for line in log.read_text(errors="replace").splitlines() if "live head" in line]
    return lines[-5:]


def _markdown(r: dict[str, Any]) -> str:
    q, d = r["quiet"], r.get("during_adapter_round", {"n": 0})
    return "\n".join([
        "# Live head: label -> refreshed queue",
        "",
        f"Real uvicorn + two Celery workers (gpu; live,inference,default), SQLite + kombu "
        f"SQLAlchemy broker; 20 Newsgroups pool of {r['pool']:,} texts, {r['labels']:,} labels, "
        f"{r['dev']} dev items; encoder `{r['encoder']}` ({r['layers']} layers, {r['tokens']} "
        f"tokens per text); {r['cpus']} CPUs shared with other "
        f"jobs (load average after the quiet phase {r['load_average_after_quiet'][0]:.1f}).",
        "",
        "| phase | n | median s | p90 s | min s | max s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| first refit (embeds every item) | 1 | {r['first_refit_seconds']} | | | |",
        f"| label -> queue, quiet | {q['n']} | {q['median']} | {q['p90']} | {q['min']} | "
        f"{q['max']} |",
        *_round_rows(r, d),
        "",
    ])


def _round_rows(r: dict[str, Any], d: dict[str, Any]) -> list[str]:
    if "adapter_round_seconds" not in r:
        return ["", "Phase 3 (adapter round) skipped in this run (`--skip-adapter-round`)."]
    return [
        f"| label -> queue, while the adapter trains | {d['n']} | {d.get('median', '')} | "
        f"{d.get('p90', '')} | {d.get('min', '')} | {d.get('max', '')} |",
        f"| adapter round (request -> queue from the new adapter) | 1 | "
        f"{r['adapter_round_seconds']} | | | |",
        "",
        f"The adapter round took {r['adapter_round_over_quiet_median']}x the quiet median "
        f"label -> queue latency. Served after the round: "
        f"**{r['served_after_round']['served']}** ({r['served_after_round']['reason']}).",
    ]


if __name__ == "__main__":
    main()
