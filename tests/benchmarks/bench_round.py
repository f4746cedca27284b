"""Round time: batch submitted -> new queue ready, with the real MiniLM, on this machine's CPU.

Runs the embedded stack for real (SQLite database, kombu SQLAlchemy broker, and the worker pair
``tapestry worker`` starts by default: a ``--pool=solo`` process for the ``gpu`` queue and one for
``live,inference,default``) on a 20 Newsgroups project: a pool (2,000 by default), a 200-item
labelled dev set, 20 labels. Setup does what an import does: a live refit embeds the pool and
serves a zero-shot queue. Each measured round submits a batch of gold labels (with the live-refit
request the web's label path makes), then polls the database until the queue built by the newly
promoted model version is served: the live refit, training (LoRA r=8 on the top layers, warm
start, replay once there are 1,000 labels), dev evaluation, the atomic version write, promotion,
scoring (a candidate set on a pool above the candidate budget), acquisition (the project default,
hybrid = cluster_uncertain), neighbours and the queue swap. What the worker does after that (the
rest of the pool scored in the background, likely label errors, the live refit that compares the
new adapter with the head) is reported apart as ``background`` and finished before the naive arm
runs.

Baseline, measured side by side in the same run (after the worker is idle, so they never share
the CPU): the naive round from ENVIRONMENT.md -- full fine-tuning of MiniLM for 2 epochs on the
same labels padded to 128 tokens, then a padded forward pass over the same pool and an entropy
top-k. It is a plain torch loop (no HF Trainer overhead), so the ratio is conservative.

    python -m tests.benchmarks.bench_round [--pool 2000] [--labels 200] [--step 50] [--rounds 3]
    python -m tests.benchmarks.bench_round --pool 10000 --labels 1000 --step 100 --rounds 3

(the second is the round-speed target's setting: 20NG, pool 10,000, about 1,000 labels). Every
batch starts an adapter round (``TAPESTRY_ADAPTER_GROWTH_FACTOR=1``: on a CPU worker the product
otherwise waits for the labels to grow by half). Besides wall-clock seconds, each round reports
the CPU seconds it cost (the worker process's user + system time for Tapestry, this process's
for the naive round), so the ratio can be read apart from what else loads the machine; and dev
macro-F1 for both arms.

Writes ``tests/benchmarks/results/round.json``; prints medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TAPESTRY_SECRET_KEY", secrets.token_urlsafe(48))

RESULTS = Path(__file__).parent / "results"
MAX_LENGTH = 128


def load_data(pool: int, dev: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    from app.domain.imports import normalise_text
    from worker.simulate.benchmark_data import load_dataset

    texts, labels = load_dataset("20ng", "train")
    names = sorted(set(labels))
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    seen: set[str] = set()
    unique = []
    for i in order:  # the corpus repeats some posts; a project stores each text once
        key = normalise_text(texts[i])
        if key and key not in seen:
            seen.add(key)
            unique.append(i)
    order = unique[: pool + dev]
    return [texts[i] for i in order], [names.index(labels[i]) for i in order], names


def seed_project(
    session: Any, texts: list[str], gold: list[int], names: list[str], pool: int
) -> Any:
    from app.db.models import SPLIT_DEV, SPLIT_POOL, Annotation, Label, Project
    from tests.app.domain.runs_support import add_items
    from tests.worker.tasks.seed import Seeded

    project = Project(
        name="20ng demo",
        base_model="minilm",
        batch_size=50,
        label_budget=2000,
        train_config={"max_length": MAX_LENGTH},
    )
    session.add(project)
    session.flush()
    labels = [Label(project_id=project.id, name=n, position=i) for i, n in enumerate(names)]
    session.add_all(labels)
    session.flush()
    pool_items = add_items(session, project, texts[:pool], split=SPLIT_POOL)
    dev_items = add_items(session, project, texts[pool:], split=SPLIT_DEV)
    for item, y in zip(dev_items, gold[pool:], strict=True):
        session.add(Annotation(project_id=project.id, item_id=item.id, label_id=labels[y].id))
    session.flush()
    return Seeded(
        project_id=project.id,
        label_ids=[label.id for label in labels],
        pool_ids=[item.id for item in pool_items],
        pool_gold={item.id: y for item, y in zip(pool_items, gold[:pool], strict=True)},
        dev_ids=[item.id for item in dev_items],
    )


def served_queue_version(db: Any, project_id: int, version_id: int | None) -> int | None:
    """The queue version the newly promoted model built and swapped in, once it is served (else
    None): its queue run succeeded (the swap commits with the run). The live refit may replace
    that queue a second later with the live head's picks; the round is over all the same."""
    from sqlalchemy import select

    from app.db.models import RUN_QUEUE, RUN_SUCCEEDED, Project, TrainingRun

    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None or project.current_model_version_id is None:
            return None
        if version_id is not None and project.current_model_version_id == version_id:
            return None  # still the previous model
        run = session.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.project_id == project_id,
                TrainingRun.kind == RUN_QUEUE,
                TrainingRun.status == RUN_SUCCEEDED,
                TrainingRun.model_version_id == project.current_model_version_id,
            )
            .limit(1)
        ).first()
        if run is None:
            return None
        return int(run.metrics.get("queue_version", 0))


def worker_idle(db: Any, project_id: int) -> bool:
    """No run of the project is queued or running and no live refit is pending."""
    from sqlalchemy import select

    from app.db.models import RUN_ACTIVE, LiveHeadState, TrainingRun

    with db.session() as session:
        active = session.scalars(
            select(TrainingRun.id).where(
                TrainingRun.project_id == project_id, TrainingRun.status.in_(RUN_ACTIVE)
            )
        ).first()
        pending = session.scalars(
            select(LiveHeadState.refit_pending).where(LiveHeadState.project_id == project_id)
        ).first()
        return active is None and not pending


def round_details(db: Any, project_id: int) -> dict[str, Any]:
    from sqlalchemy import select

    from app.db.models import RUN_QUEUE, RUN_RETRAIN, Project, RoundMetric, TrainingRun

    with db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        runs = {}
        for kind in (RUN_RETRAIN, RUN_QUEUE):
            run = session.scalars(
                select(TrainingRun)
                .where(TrainingRun.kind == kind, TrainingRun.status == "succeeded")
                .order_by(TrainingRun.id.desc())
                .limit(1)
            ).first()
            assert run is not None and run.started_at and run.finished_at
            runs[kind] = {
                "run_seconds": round((run.finished_at - run.started_at).total_seconds(), 2),
                "waited_seconds": round((run.started_at - run.created_at).total_seconds(), 2),
                "timings": run.timings,
            }
        metric = session.scalars(select(RoundMetric).order_by(RoundMetric.id.desc()).limit(1)).one()
        queue_run = session.scalars(
            select(TrainingRun)
            .where(TrainingRun.kind == RUN_QUEUE, TrainingRun.status == "succeeded")
            .order_by(TrainingRun.id.desc())
            .limit(1)
        ).one()
        return {
            "retrain": runs[RUN_RETRAIN],
            "queue": {**runs[RUN_QUEUE], "message": queue_run.message},
            "labels_used": metric.labels_used,
            "dev_accuracy": metric.dev_accuracy,
            "dev_macro_f1": metric.macro_f1,
            "warm_start": metric.details.get("warm_start"),
        }


class EmbeddedStack:
    """The product's worker pair on the embedded stack with a seeded 20 Newsgroups project."""

    def __init__(self, args: argparse.Namespace, workdir: Path, data: tuple[Any, ...]) -> None:
        from app.db.base import Base
        from app.db.session import make_engine, session_factory
        from app.demo.run import FAST_QUEUES, SLOW_QUEUES
        from app.jobs import set_default_sender
        from tests.app.domain.runs_support import Db
        from tests.integration.workers import REPO_ROOT, BrokerSender, Stack, WorkerProcess

        texts, gold, names = data
        data_dir = workdir / "data"
        data_dir.mkdir()
        stack = Stack(
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'tapestry.sqlite'}",
            broker_url=f"sqla+sqlite:///{data_dir / 'broker.sqlite'}",
            extra_env={
                "TAPESTRY_STALE_RUN_SECONDS": "600",
                "TAPESTRY_ADAPTER_GROWTH_FACTOR": "1",
                "OMP_NUM_THREADS": str(os.cpu_count() or 2),
            },
        )
        self.engine = make_engine(stack.database_url)
        Base.metadata.create_all(self.engine)
        self.db = Db(self.engine, session_factory(self.engine), stack.settings())
        self.workers = [
            WorkerProcess.on_host(stack, workdir / f"worker-{name}.log",
                                  queues=queues.split(","), cwd=REPO_ROOT, env={})
            for name, queues in (("gpu", SLOW_QUEUES), ("live", FAST_QUEUES))
        ]
        for worker in self.workers:
            worker.wait_ready()
        self.sender = BrokerSender(stack)
        self._previous_sender = set_default_sender(self.sender)
        with self.db.session() as session:
            self.seeded = seed_project(session, texts, gold, names, args.pool)
            session.commit()
        self.order = list(self.seeded.pool_ids)
        random.Random(args.seed).shuffle(self.order)
        self.taken = 0
        self.setup = self.after_import()

    def after_import(self) -> dict[str, float]:
        """What an import does: a live refit that embeds the pool and serves a zero-shot queue.
        The rounds start from there, as they do in the product."""
        from app.domain.live_head import request_live_refit
        from tests.worker.tasks.waiting import wait_for

        started, cpu_before = time.perf_counter(), self.worker_cpu_seconds()
        with self.db.session() as session:
            request_live_refit(session, self.seeded.project_id)
            session.commit()

        def done() -> bool:
            return self.live_refits() >= 1 and worker_idle(self.db, self.seeded.project_id)

        wait_for(done, f"import refit\n{self.log_tail()}", timeout=7200, interval=0.5)
        return {"seconds": round(time.perf_counter() - started, 2),
                "cpu_seconds": round(self.worker_cpu_seconds() - cpu_before, 2)}

    def live_refits(self) -> int:
        from sqlalchemy import select

        from app.db.models import LiveHeadState

        with self.db.session() as session:
            refits = session.scalars(
                select(LiveHeadState.refits).where(
                    LiveHeadState.project_id == self.seeded.project_id
                )
            ).first()
            return int(refits or 0)

    def labelled_ids(self) -> list[int]:
        """Pool items labelled so far (a prefix of the shuffled order)."""
        return list(self.order[: self.taken])

    def round(self, number: int, size: int) -> dict[str, Any]:
        """Submit ``size`` gold labels; return when the new model's queue is served."""
        from app.db.models import Project
        from app.domain.live_head import request_live_refit
        from tests.worker.tasks.seed import submit_batch
        from tests.worker.tasks.waiting import wait_for

        chosen = self.order[self.taken : self.taken + size]
        self.taken += len(chosen)
        load = os.getloadavg()[0]
        cpu_before = self.worker_cpu_seconds()
        with self.db.session() as session:
            project = session.get(Project, self.seeded.project_id)
            assert project is not None
            before = project.current_model_version_id
            started = time.perf_counter()
            submit_batch(session, self.seeded, size, item_ids=chosen)
            request_live_refit(session, self.seeded.project_id)  # as the web's label path does
            session.commit()

        def served(previous: int | None = before) -> int | None:
            return served_queue_version(self.db, self.seeded.project_id, previous)

        wait_for(served, f"round {number}\n{self.log_tail()}", timeout=7200, interval=0.2)
        seconds = time.perf_counter() - started
        cpu = self.worker_cpu_seconds() - cpu_before
        details = round_details(self.db, self.seeded.project_id)
        # Then what follows in the background (live refit, label issues, the rest of the pool
        # scored): not part of the round, reported apart, and finished before the naive arm runs.
        wait_for(lambda: worker_idle(self.db, self.seeded.project_id),
                 f"background after round {number}\n{self.log_tail()}", timeout=7200,
                 interval=0.5)
        background = {
            "seconds": round(time.perf_counter() - started - seconds, 2),
            "cpu_seconds": round(self.worker_cpu_seconds() - cpu_before - cpu, 2),
        }
        return {"round": number, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                "load_before": load, **details, "background": background}

    def worker_cpu_seconds(self) -> float:
        """User + system CPU seconds of both worker processes (``--pool=solo``: tasks run in
        them)."""
        import psutil

        total = 0.0
        for worker in self.workers:
            times = psutil.Process(worker.pid).cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        return float(total)

    def log_tail(self) -> str:
        return "\n".join(w.log_tail(3000) for w in self.workers)

    def close(self) -> None:
        from app.jobs import set_default_sender

        set_default_sender(self._previous_sender)
        self.sender.close()
        for worker in self.workers:
            worker.stop()
        self.engine.dispose()


def naive_round(
    train_texts: list[str],
    train_labels: list[int],
    pool_texts: list[str],
    dev: tuple[list[str], list[int]],
    num_labels: int,
    pick: int,
    seed: int,
) -> dict[str, Any]:
    """Full fine-tune 2 epochs padded to 128, then a padded pool forward and an entropy top-k."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from worker.ml.models import offline_default_path

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = str(offline_default_path())
    load = os.getloadavg()[0]
    started = time.perf_counter()
    cpu_started = time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    model.to(device)
    encoded = tokenizer(
        train_texts,
        padding="max_length",
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    encoded = encoded.to(device)
    targets = torch.tensor(train_labels, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    for _epoch in range(2):
        order = torch.randperm(len(train_texts))
        for start in range(0, len(order), 16):
            idx = order[start : start + 16].to(device)
            out = model(
                input_ids=encoded["input_ids"][idx],
                attention_mask=encoded["attention_mask"][idx],
                labels=targets[idx],
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()

    def predict(texts: list[str]) -> torch.Tensor:
        probs = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                enc = tokenizer(
                    texts[start : start + 32],
                    padding="max_length",
                    truncation=True,
                    max_length=MAX_LENGTH,
                    return_tensors="pt",
                )
                probs.append(torch.softmax(model(**enc.to(device)).logits, dim=-1).cpu())
        return torch.cat(probs)

    pool_probs = predict(pool_texts)
    entropy = -(pool_probs * pool_probs.clamp_min(1e-12).log()).sum(dim=1)
    entropy.topk(min(pick, len(pool_texts)))
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    dev_pred = predict(dev[0]).argmax(dim=1)
    accuracy = float((dev_pred == torch.tensor(dev[1])).float().mean())
    from sklearn.metrics import f1_score

    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "dev_accuracy": accuracy,
        "dev_macro_f1": float(f1_score(dev[1], dev_pred.numpy(), average="macro")),
        "labels_used": len(train_texts),
        "load_before": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--labels", type=int, default=200, help="labels of the first batch")
    parser.add_argument("--step", type=int, default=50, help="labels per later batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "round.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch

    data = load_data(args.pool, args.dev, args.seed)
    texts, gold, names = data
    pool_texts, dev = texts[: args.pool], (texts[args.pool :], gold[args.pool :])
    rounds, naive = [], []
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp:
        stack = EmbeddedStack(args, Path(tmp), data)
        stack_setup = stack.setup
        print(f"after import (pool embedded, zero-shot queue): {stack_setup}", flush=True)
        try:
            by_id = dict(zip(stack.seeded.pool_ids, range(args.pool), strict=True))
            sizes = [args.labels] + [args.step] * (args.rounds - 1)
            for number, size in enumerate(sizes, start=1):
                # Interleaved, never concurrent: both see the same machine at about the same time.
                ours_round = stack.round(number, size)
                rounds.append(ours_round)
                print(
                    f"round {number}: {ours_round['labels_used']} labels, "
                    f"{ours_round['seconds']:.1f}s (train+promote "
                    f"{ours_round['retrain']['run_seconds']}s, queue "
                    f"{ours_round['queue']['run_seconds']}s), dev macro-F1 "
                    f"{ours_round['dev_macro_f1']}, {ours_round['cpu_seconds']:.0f} CPU s, "
                    f"load {ours_round['load_before']:.1f}",
                    flush=True,
                )
                ids = stack.labelled_ids()
                taken = set(ids)
                result = naive_round(
                    [pool_texts[by_id[i]] for i in ids],
                    [stack.seeded.pool_gold[i] for i in ids],
                    [pool_texts[by_id[i]] for i in stack.seeded.pool_ids if i not in taken],
                    dev,
                    len(names),
                    2 * 50,
                    args.seed,
                )
                naive.append(result)
                print(
                    f"naive round at {result['labels_used']} labels: {result['seconds']:.1f}s "
                    f"({result['cpu_seconds']:.0f} CPU s), dev macro-F1 "
                    f"{result['dev_macro_f1']:.3f}, load {result['load_before']:.1f}",
                    flush=True,
                )
        finally:
            stack.close()
    ours = statistics.median(r["seconds"] for r in rounds)
    theirs = statistics.median(n["seconds"] for n in naive)
    ours_cpu = statistics.median(r["cpu_seconds"] for r in rounds)
    theirs_cpu = statistics.median(n["cpu_seconds"] for n in naive)
    report = {
        "benchmark": "round time: batch submitted -> new queue served",
        "note": "load_before = 1-min load average when each round started (other jobs share it)",
        "machine": {
            "cpus": os.cpu_count(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "config": {
            "pool": args.pool,
            "dev": args.dev,
            "first_batch": args.labels,
            "batch": args.step,
            "rounds": args.rounds,
            "labels": len(names),
            "base": "all-MiniLM-L6-v2 (offline package)",
            "adapter": "lora r=8 on the top two layers (default), lower layers cached",
            "max_length": MAX_LENGTH,
            "strategy": "cluster_uncertain (project default)",
            "transport": "kombu SQLAlchemy on SQLite (embedded default)",
            "workers": "two --pool=solo processes: gpu | live,inference,default (the default)",
        },
        "setup_after_import": stack_setup,
        "tapestry_rounds": rounds,
        "naive_rounds": naive,
        "median_seconds": {"tapestry": ours, "naive": theirs},
        "ratio_tapestry_over_naive": round(ours / theirs, 3),
        "speedup_naive_over_tapestry": round(theirs / ours, 2),
        "median_cpu_seconds": {"tapestry": ours_cpu, "naive": theirs_cpu},
        "cpu_speedup_naive_over_tapestry": round(theirs_cpu / ours_cpu, 2) if ours_cpu else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"median round: tapestry {ours:.1f}s vs naive {theirs:.1f}s "
        f"-> ratio {ours / theirs:.2f}x (speedup {theirs / ours:.2f}x); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
