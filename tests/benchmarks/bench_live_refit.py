"""In-process cost of one live-head refit (the ``live.refit_head`` task body), next to a baseline.

A seeded SQLite database (the 20 Newsgroups project of ``bench_live_head``: ``--pool`` items,
``--labels`` of them labelled, ``--dev`` dev items) whose stored embeddings are written directly
(float16, width 384, unit vectors around one random direction per gold class, so the head has
real structure to fit) instead of being computed by an encoder. Each sample adds one label and
calls :func:`worker.tasks.live_refit.refit_live_head` (read labels, fit, choose the served model,
rebuild the queue, swap it in). Three interleaved measurements per sample:

- ``refit (warm)``: the refit as the worker runs it (warm-started from the previous head);
- ``refit (cold)``: the same with the warm-start cache emptied first;
- ``refit (warm, embeddings only)``: the warm refit with the TF-IDF half switched off
  (``live_hybrid=False``), the cost of the refit before it existed;
- ``baseline``: one cold scikit-learn ``LogisticRegression`` fit (the head's settings, library
  default threads) on the same labelled embeddings: the ratio refit / baseline stays meaningful
  on a loaded machine.

The TF-IDF half's one-off costs are reported apart: the first refit (fits the vocabulary on the
pool, transforms every item, fits the TF-IDF LR) and a refit after 10 % more labels (refits the
TF-IDF LR); every other refit reuses both.

Usage: ``.venv/bin/python -m tests.benchmarks.bench_live_refit [--pool 10000 --labels 1000]``
Results: ``tests/benchmarks/results/live_refit.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_live_head import RESULTS, make_encoder, seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=1_000)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--out", default="live_refit")
    parser.add_argument("--signal", type=float, default=0.25,
                        help="weight of each class's direction in the synthetic embeddings; a "
                        "weaker one lets the TF-IDF half win on dev, so the hybrid is served")
    parser.add_argument("--self-training", action="store_true",
                        help="also measure warm refits with self-training on (the hybrid's: "
                        "both halves refit with pseudo-labels), and the first and grown refits "
                        "with it on")
    parser.add_argument("--grown", type=int, default=3,
                        help="with --self-training: refits after 10 %% more labels with the "
                        "TF-IDF half self-trained on the pool and on as many as labels, each")
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sqlalchemy import create_engine, insert, select
    from sqlalchemy.orm import sessionmaker

    from app.config import Settings
    from app.db.models import Annotation, Item, Label
    from worker.ml.embedding_store import EmbeddingStore, encoder_key
    from worker.ml.live_head import LiveHeadConfig
    from worker.tasks import live_refit

    work = Path(tempfile.mkdtemp(prefix="bench-refit-"))
    try:
        encoder_dir = make_encoder("random-384", work / "encoder", 1)
        url = f"sqlite:///{work / 'tapestry.sqlite'}"
        seeded = seed(url, encoder_dir, args.pool, args.labels, args.dev, 32)
        pid = seeded["project_id"]
        settings = Settings(data_dir=work / "data", database_url=url, live_embed_max_length=32,
                            live_self_training=args.self_training)
        engine = create_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        names: list[str] = seeded["labels"]
        with sessions() as s:
            items = [int(i) for i in s.scalars(
                select(Item.id).where(Item.project_id == pid).order_by(Item.id))]
            label_ids = {n: int(i) for n, i in s.execute(
                select(Label.name, Label.id).where(Label.project_id == pid))}
            annotator = s.scalars(select(Annotation.annotator_id)).first()
            dev_gold = {int(i): names.index(n) for i, n in s.execute(
                select(Annotation.item_id, Label.name).join(Label, Label.id == Annotation.label_id)
                .where(Annotation.item_id.in_(items[args.pool:])))}
        gold = {i: names.index(g) for i, g in seeded["gold"].items()} | dev_gold
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(len(names), 384))
        y = np.array([gold[i] for i in items])
        vectors = args.signal * centres[y] + rng.normal(size=(len(items), 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        encoder = live_refit.encoder_for(encoder_dir, settings.live_embed_max_length)
        key = encoder_key(encoder.fingerprint, encoder.max_length)
        store = EmbeddingStore(live_refit.live_dir(settings, pid) / "embeddings" / key)
        store.add(items, vectors)
        unlabelled: list[int] = list(seeded["unlabelled"])
        row_of = {item: r for r, item in enumerate(items)}
        labelled: list[int] = list(items[: args.labels])
        config = LiveHeadConfig()

        def add_label() -> None:
            item = unlabelled.pop(0)
            labelled.append(item)
            with sessions() as s:
                s.execute(insert(Annotation), [{
                    "project_id": pid, "item_id": item, "label_id": label_ids[names[gold[item]]],
                    "annotator_id": annotator, "source": "bench", "deleted": False}])
                s.commit()

        def refit() -> tuple[float, dict[str, float]]:
            t = time.perf_counter()
            result = live_refit.refit_live_head(pid, settings, sessions)
            assert result is not None and result.embedded == 0, result
            return time.perf_counter() - t, result.timings

        def baseline() -> float:
            rows = [row_of[i] for i in labelled]
            X = vectors[rows].astype(np.float32)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                LogisticRegression(C=config.C, class_weight=config.class_weight,
                                   max_iter=config.max_iter).fit(X, y[rows])
            return time.perf_counter() - t

        add_label()
        first_seconds, first_timings = refit()  # warm-up: store, imports, TF-IDF half built
        warm: list[float] = []
        cold: list[float] = []
        embed_only: list[float] = []
        self_trained: list[float] = []
        st_phases: list[dict[str, float]] = []
        base: list[float] = []
        phases: list[dict[str, float]] = []
        cold_phases: list[dict[str, float]] = []
        load_start = os.getloadavg()
        kinds: tuple[str, ...] = ("warm", "cold", "embed") + (
            ("st",) if args.self_training else ())
        for sample in range(args.samples):
            turn = sample % len(kinds)
            for kind in kinds[turn:] + kinds[:turn]:
                add_label()  # the order rotates: none pays for another's garbage
                if kind == "cold":
                    live_refit._HEADS.clear()
                settings.live_hybrid = kind != "embed"
                settings.live_self_training = kind == "st"
                seconds, timings = refit()
                settings.live_hybrid = True
                settings.live_self_training = args.self_training
                {"warm": warm, "cold": cold, "embed": embed_only, "st": self_trained}[
                    kind].append(seconds)
                if kind != "embed":
                    {"warm": phases, "cold": cold_phases, "st": st_phases}[kind].append(timings)
                if kind == "cold":
                    refit()  # the next warm refit starts from a head one label old
            base.append(baseline())
        for _ in range(len(labelled) // 10 + 1):
            add_label()
        grown_seconds, grown_timings = refit()  # 10 % more labels: the TF-IDF LR is refitted
        grown: dict[str, list[dict[str, float]]] = {"pool": [], "labels": []}
        for turn in range(2 * args.grown if args.self_training else 0):
            # the TF-IDF half self-trained on the pool (the default) or on as many pseudo-labels
            # as labels, alternately, each after 10 % more labels
            kind = ("pool", "labels")[turn % 2]
            for _ in range(len(labelled) // 10 + 1):
                add_label()
            settings.live_tfidf_pseudo_labels = (
                Settings.model_fields["live_tfidf_pseudo_labels"].default if kind == "pool"
                else 0)
            seconds, timings = refit()
            grown[kind].append({"total": seconds, **timings})
        engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median
    report: dict[str, Any] = {
        "pool": args.pool, "labels": args.labels, "dev": args.dev, "samples": args.samples,
        "signal": args.signal,
        "cpus": os.cpu_count(), "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "refit_warm_median_s": round(median(warm), 4),
        "refit_cold_median_s": round(median(cold), 4),
        "refit_warm_embeddings_only_median_s": round(median(embed_only), 4),
        "first_refit_s": round(first_seconds, 3),
        "first_refit_phases_s": first_timings,
        "tfidf_refit_s": round(grown_seconds, 3),
        "tfidf_refit_phases_s": grown_timings,
        "baseline_lr_fit_median_s": round(median(base), 4),
        "refit_warm_over_baseline": round(median(warm) / median(base), 3),
        "refit_cold_over_baseline": round(median(cold) / median(base), 3),
        "refit_warm_embeddings_only_over_baseline": round(median(embed_only) / median(base), 3),
        "warm_phase_medians_s": {k: round(median(p[k] for p in phases), 4) for k in phases[0]},
        "cold_phase_medians_s": {
            k: round(median(p[k] for p in cold_phases), 4) for k in cold_phases[0]
        },
        "refit_warm_s": [round(s, 4) for s in warm], "refit_cold_s": [round(s, 4) for s in cold],
        "refit_warm_embeddings_only_s": [round(s, 4) for s in embed_only],
        "baseline_s": [round(s, 4) for s in base],
    }
    if self_trained:
        report |= {
            "refit_warm_self_training_median_s": round(median(self_trained), 4),
            "refit_warm_self_training_over_baseline": round(
                median(self_trained) / median(base), 3),
            "self_training_phase_medians_s": {
                k: round(median(p.get(k, 0.0) for p in st_phases), 4) for k in st_phases[0]},
            "refit_warm_self_training_s": [round(s, 4) for s in self_trained],
        }
    if grown["pool"]:
        report["grown_tfidf_pseudo"] = {
            kind: {k: round(median(r.get(k, 0.0) for r in runs), 3) for k in runs[0]}
            for kind, runs in grown.items()}
        report["grown_tfidf_pseudo_runs"] = grown
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(_markdown(report))
    print(_markdown(report))


def _markdown(r: dict[str, Any]) -> str:
    phases = ", ".join(f"{k} {v}" for k, v in r["warm_phase_medians_s"].items())
    cold_phases = ", ".join(f"{k} {v}" for k, v in r["cold_phase_medians_s"].items())
    return "\n".join([
        "# Live head: one refit in-process",
        "",
        f"`refit_live_head` on a seeded SQLite project ({r['pool']:,} pool items, "
        f"{r['labels']:,}+ labels, {r['dev']} dev items, stored float16 embeddings of width 384, "
        f"20 classes); {r['samples']} samples, one new label each; {r['cpus']} CPUs shared with "
        f"other jobs (load average {r['load_average_start'][0]:.1f} at the start, "
        f"{r['load_average_end'][0]:.1f} at the end).",
        "",
        "| measurement | median s | x baseline |",
        "|---|---:|---:|",
        f"| refit, warm-started (as the worker runs it) | {r['refit_warm_median_s']} | "
        f"{r['refit_warm_over_baseline']} |",
        f"| refit, cold head fit | {r['refit_cold_median_s']} | "
        f"{r['refit_cold_over_baseline']} |",
        f"| refit, warm, TF-IDF half off (embeddings only) | "
        f"{r['refit_warm_embeddings_only_median_s']} | "
        f"{r['refit_warm_embeddings_only_over_baseline']} |",
        *([f"| refit, warm, self-training on (both halves refit with pseudo-labels) | "
           f"{r['refit_warm_self_training_median_s']} | "
           f"{r['refit_warm_self_training_over_baseline']} |"]
          if "refit_warm_self_training_median_s" in r else []),
        f"| baseline: one cold scikit-learn LogisticRegression fit, default threads | "
        f"{r['baseline_lr_fit_median_s']} | 1 |",
        "",
        f"Phases of the warm refit (medians, s): {phases}.",
        *(["", "Phases of the warm refit with self-training (medians, s): "
           f"{_phases(r['self_training_phase_medians_s'])}."]
          if "self_training_phase_medians_s" in r else []),
        "",
        f"Phases of the cold refit (medians, s): {cold_phases}.",
        "",
        f"One-off: the first refit took {r['first_refit_s']} s (phases: "
        f"{_phases(r['first_refit_phases_s'])}); the refit after 10 % more labels took "
        f"{r['tfidf_refit_s']} s ({_phases(r['tfidf_refit_phases_s'])}).",
        "",
        *_grown_markdown(r),
    ])


def _grown_markdown(r: dict[str, Any]) -> list[str]:
    """The refit after 10 % more labels with the TF-IDF half self-trained on the pool (the
    default) against as many pseudo-labels as labels, alternately (medians)."""
    g = r.get("grown_tfidf_pseudo")
    if not g:
        return []
    fit = "tfidf_self_train_fit"
    return [
        "Refit after 10 % more labels, self-training on, the TF-IDF half's pseudo-labels "
        f"(medians of {len(r['grown_tfidf_pseudo_runs']['pool'])} each, alternating):",
        "",
        "| TF-IDF half self-trained on | refit s | self-trained TF-IDF LR fit s |",
        "|---|---:|---:|",
        f"| the pool (up to `live_tfidf_pseudo_labels`) | {g['pool']['total']} | "
        f"{g['pool'].get(fit, 0.0)} |",
        f"| as many as labels (setting 0) | {g['labels']['total']} | "
        f"{g['labels'].get(fit, 0.0)} |",
        f"| ratio | {g['pool']['total'] / g['labels']['total']:.2f} | "
        f"{g['pool'].get(fit, 0.0) / max(g['labels'].get(fit, 0.0), 1e-9):.2f} |",
        "",
    ]


def _phases(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {round(v, 3)}" for k, v in timings.items())


if __name__ == "__main__":
    main()
