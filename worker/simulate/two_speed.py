"""A ``live:`` arm: the two-speed learner the product serves, with an oracle for the labels.

Every round (one query batch):
1. the live head (logistic regression on frozen embeddings, optionally + TF-IDF) is refit on the
   labelled items — in the product this happens after every label, here after every batch;
2. the adapter is retrained only when the labels have grown by ``adapter_growth`` since its last
   training (the product's background retrain: every batch on a GPU, less often on a CPU), with at
   least ``min_train_steps`` optimizer steps (class-balanced sampling when labels are few);
3. ``choose_served`` compares the live head, the adapter and their average on the dev set; the
   served model is scored on the test split (this is the arm's curve);
4. the live head — refit on every label, dev included — scores the pool and the strategy picks
   the next batch (the adapter never blocks the queue).

The labels axis counts every label a person makes: seed set + queried + dev. The dev labels are
used twice, as the product would: first to choose the served model (the live head fitted without
them against the adapter that early-stopped on them), then, once chosen, the live head is refit
with them (a cheap model refit on train + dev after selection; the adapter is not retrained).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.ml.acquisition import PoolView, get_strategy
from worker.ml.acquisition.base import CLASS_ERROR, EMBEDDINGS, LABELED_EMBEDDINGS
from worker.ml.classifier import TextClassifier
from worker.ml.live_head import LiveHead, LiveHeadConfig, PoolTfidf, choose_served, macro_f1
from worker.ml.progress import NullReporter, ProgressReporter
from worker.ml.self_training import self_train, with_pseudo_labels
from worker.simulate.results import ArmRun, CurvePoint

SEED_PHASE = "seed"
FEATURE_RESELECT_GROWTH = 1.5
"""The live head's "auto" feature choice (a cross-validation) is re-run when the labels have
grown by this factor since the last one; in between the choice is reused (as in the product)."""


@dataclass(frozen=True)
class Embeddings:
    """Frozen-encoder embeddings of the pool, dev and test items (rows in split order)."""

    pool: np.ndarray
    dev: np.ndarray
    test: np.ndarray


def growth_factor(configured: float | None, device: str) -> float:
    """The adapter's retrain factor: as configured, else 1 on a GPU (every batch), 2 on a CPU."""
    if configured is not None:
        return configured
    from worker.ml.runtime import resolve_device

    return 1.0 if resolve_device(device).type == "cuda" else 2.0


class TwoSpeedLoop:
    """One ``live:`` arm with one seed."""

    def __init__(self, job: Any, reporter: ProgressReporter | None = None) -> None:
        if job.embeddings is None:
            raise ValueError("a live: arm needs the frozen embeddings of the pool, dev and test")
        self.job = job
        self.cfg = job.config
        self.data = job.data
        self.emb: Embeddings = job.embeddings
        self.reporter = reporter or NullReporter()
        self.k = len(self.data.label_names)
        self.adapters = job.arm.adapter_configs(job.num_layers)
        self.growth = growth_factor(self.cfg.adapter_growth, self.cfg.device)
        self.head_config = LiveHeadConfig(features=self.cfg.live_features, seed=job.seed)
        self.tfidf = (
            PoolTfidf.fit(self.data.pool_texts) if self.cfg.live_features != "embed" else None
        )
        self.features: str | None = None  # the "auto" choice, re-checked as labels grow
        self.features_at = 0
        self.adapter: TextClassifier | None = None
        self.adapter_labels = 0
        self.adapter_dev: np.ndarray | None = None
        self.adapter_test: np.ndarray | None = None
        self.run = ArmRun(dataset=self.data.source, arm=job.arm.spec, seed=job.seed)

    # -- models --------------------------------------------------------------------------------
    def fit_head(self, rows: np.ndarray, with_dev: bool, features: str | None = None) -> LiveHead:
        X = self.emb.pool[rows]
        y = self.data.pool_labels[rows]
        texts = [self.data.pool_texts[i] for i in rows]
        if with_dev and len(self.data.dev_texts):
            X = np.vstack([X, self.emb.dev])
            y = np.concatenate([y, self.data.dev_labels])
            texts = texts + list(self.data.dev_texts)
        head = LiveHead(self.head_config)
        return head.fit(X, y, self.k, texts, self.tfidf, features=features)

    def maybe_train_adapter(self, labeled: np.ndarray, round_: int) -> float:
        """Retrain the adapter when labels grew by the factor; returns the seconds it took."""
        n = labeled.shape[0]
        if not self.adapters or (
            self.adapter is not None and n < self.growth * self.adapter_labels
        ):
            return 0.0
        if self.adapter is None and n < self.growth * self.job.seed_indices.shape[0]:
            return 0.0  # the first retrain also waits for growth over the seed set
        from worker.ml.training import train_classifier
        from worker.simulate.loop import train_config

        started = time.perf_counter()
        dev = (self.data.dev_texts, self.data.dev_labels.tolist()) if self.data.dev_texts else None
        config = train_config(self.cfg, self.job.seed * 1000 + round_)
        config.min_steps = self.cfg.min_train_steps
        result = train_classifier(
            [self.data.pool_texts[i] for i in labeled],
            self.data.pool_labels[labeled].tolist(),
            label_names=self.data.label_names,
            base_model=self.job.base_model,
            adapter=self.adapters[0],
            config=config,
            dev=dev,
            init_from=self.adapter if self.cfg.warm_start else None,
            reporter=self.reporter,
        )
        self.adapter = result.classifier
        self.adapter_labels = n
        self.adapter_dev = (
            self.adapter.predict_proba(self.data.dev_texts) if self.data.dev_texts else None
        )
        self.adapter_test = None  # scored lazily, only when served
        return time.perf_counter() - started

    def adapter_test_probs(self) -> np.ndarray:
        assert self.adapter is not None
        if self.adapter_test is None:
            self.adapter_test = self.adapter.predict_proba(self.data.test_texts)
        return self.adapter_test

    # -- one round -----------------------------------------------------------------------------
    def serve(self, labeled: np.ndarray, round_: int) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        train_s = self.maybe_train_adapter(labeled, round_)
        head_started = time.perf_counter()
        dev_labels = self.data.dev_labels
        n = labeled.shape[0]
        reselect = self.features is None or n >= FEATURE_RESELECT_GROWTH * self.features_at
        selection_head = self.fit_head(
            labeled, with_dev=False, features=None if reselect else self.features
        )
        features = selection_head.features_used
        if reselect and selection_head.selection.get("cv_macro_f1"):
            self.features, self.features_at = features, n  # keep a CV-backed choice a while
        self_trained = False
        if self.cfg.live_self_training and features == "embed" and len(dev_labels):
            unlabelled = np.setdiff1d(np.arange(len(self.data.pool_texts)), labeled)
            trained = self_train(
                selection_head, self.emb.pool[labeled], self.data.pool_labels[labeled], self.k,
                self.emb.pool[unlabelled], selection_head.predict_proba(self.emb.pool[unlabelled]),
                self.emb.dev, dev_labels,
            )
            selection_head, self_trained = trained.head, trained.used
        record: dict[str, Any] = {"live_dev_macro_f1": None, "adapter_dev_macro_f1": None}
        if len(dev_labels):
            candidates = {
                "live_head": selection_head.predict_proba(self.emb.dev, list(self.data.dev_texts))
            }
            if self.adapter_dev is not None:
                candidates["adapter"] = self.adapter_dev
            choice = choose_served(candidates, dev_labels)
            record["live_dev_macro_f1"] = choice.scores["live_head"]
            record["adapter_dev_macro_f1"] = choice.scores.get("adapter")
            served = choice.name
        else:
            served = "live_head"  # no dev set: the live head (the adapter is never promoted)
        head = self.fit_head(labeled, with_dev=True, features=features)
        if self_trained:  # the head served is refit with dev, then self-trained the same way
            X = np.vstack([self.emb.pool[labeled], self.emb.dev])
            y = np.concatenate([self.data.pool_labels[labeled], dev_labels])
            head, _n = with_pseudo_labels(head, X, y, self.k, self.emb.pool[unlabelled],
                                          head.predict_proba(self.emb.pool[unlabelled]))
            features = f"{features}+self-training"
        live_test = head.predict_proba(self.emb.test, list(self.data.test_texts))
        train_s += time.perf_counter() - head_started
        score_started = time.perf_counter()
        if served == "adapter":
            probs = self.adapter_test_probs()
        elif served == "average":
            probs = 0.5 * (live_test + self.adapter_test_probs())
        else:
            probs = live_test
        predicted = probs.argmax(axis=1)
        record.update(
            served=served,
            features=features,
            macro_f1=macro_f1(self.data.test_labels, predicted),
            accuracy=float((predicted == self.data.test_labels).mean()),
            live_macro_f1=macro_f1(self.data.test_labels, live_test.argmax(axis=1)),
            head=head,
            train_s=train_s,
            test_s=time.perf_counter() - score_started,
        )
        return record, time.perf_counter() - started

    def acquire(
        self, head: LiveHead, labeled: np.ndarray, size: int, round_: int
    ) -> tuple[np.ndarray, float, float]:
        rng = np.random.default_rng([self.job.seed, round_, 17])
        candidates = np.setdiff1d(np.arange(len(self.data.pool_texts)), labeled)
        if self.cfg.score_sample is not None and candidates.shape[0] > self.cfg.score_sample:
            candidates = np.sort(rng.choice(candidates, self.cfg.score_sample, replace=False))
        started = time.perf_counter()
        name = self.job.arm.strategy
        strategy = get_strategy(name, dedup_threshold=self.cfg.dedup_threshold)
        texts = [self.data.pool_texts[i] for i in candidates]
        probs = head.predict_proba(self.emb.pool[candidates], texts).astype(np.float32)
        view_args: dict[str, Any] = {"probs": probs, "label_names": self.data.label_names}
        wants = strategy.requires | strategy.wants
        if EMBEDDINGS in wants or self.cfg.dedup_threshold is not None:
            view_args["embeddings"] = self.emb.pool[candidates].astype(np.float32)
        if LABELED_EMBEDDINGS in wants:
            view_args["labeled_embeddings"] = self.emb.pool[labeled].astype(np.float32)
        if CLASS_ERROR in strategy.requires:
            raise ValueError(f"strategy {name!r} needs per-class dev errors; not in live: arms")
        view = PoolView(**view_args)
        scored = time.perf_counter()
        picks = strategy.select(view, size, seed=int(rng.integers(2**31)))
        done = time.perf_counter()
        return candidates[[p.index for p in picks]], scored - started, done - scored

    # -- the whole run -------------------------------------------------------------------------
    def run_rounds(self) -> ArmRun:
        labeled = np.asarray(self.job.seed_indices, dtype=np.int64)
        phase, strategy, round_ = SEED_PHASE, self.cfg.seed_strategy, 0
        dev_n = len(self.data.dev_texts)
        while True:
            record, _seconds = self.serve(labeled, round_)
            size = min(self.cfg.batch_size, self.cfg.budget - labeled.shape[0])
            size = min(size, len(self.data.pool_texts) - labeled.shape[0])
            chosen = np.empty(0, dtype=np.int64)
            score_s = acquire_s = 0.0
            if size > 0:
                chosen, score_s, acquire_s = self.acquire(record["head"], labeled, size, round_)
            self.run.points.append(
                CurvePoint(
                    round=round_,
                    labels=labeled.shape[0] + dev_n,
                    phase=phase,
                    accuracy=record["accuracy"],
                    macro_f1=record["macro_f1"],
                    dev_macro_f1=record["live_dev_macro_f1"]
                    if record["served"] == "live_head"
                    else record["adapter_dev_macro_f1"],
                    train_s=record["train_s"],
                    score_s=score_s,
                    test_s=record["test_s"],
                    acquire_s=acquire_s,
                    strategy=strategy,
                    dev_labels=dev_n,
                    served=f"{record['served']}[{record['features']}]",
                    live_macro_f1=record["live_macro_f1"],
                    live_dev_macro_f1=record["live_dev_macro_f1"],
                    adapter_dev_macro_f1=record["adapter_dev_macro_f1"],
                )
            )
            self.reporter.report(
                phase="simulate",
                step=labeled.shape[0] + dev_n,
                total=self.cfg.budget + dev_n,
                metrics={"macro_f1": record["macro_f1"], "accuracy": record["accuracy"]},
                message=f"{self.job.arm.spec} seed {self.job.seed}",
            )
            if chosen.shape[0] == 0:
                return self.run
            if self.job.deadline is not None and time.time() > self.job.deadline:
                self.run.truncated = True
                return self.run
            labeled = np.concatenate([labeled, chosen])
            phase, strategy, round_ = "acquire", self.job.arm.strategy, round_ + 1
