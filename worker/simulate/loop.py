"""One arm with one seed: seed set -> rounds of retrain / score / acquire with an oracle.

The oracle is the data set's own labels: a picked item is "labelled" by revealing its gold
label. Everything else is the production path: ``train_classifier`` with a warm start from the
previous round, ``build_pool_view`` + a strategy from the registry, the budget plan with its
polish reserve, and the stopping rules (recorded, never enforced, so curves run to the budget).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from contract.budget import BudgetPlan, Phase
from worker.ml.acquisition import (
    Entropy,
    Margin,
    PoolView,
    QueryStrategy,
    build_pool_view,
    get_strategy,
)
from worker.ml.acquisition.base import LABELED_EMBEDDINGS
from worker.ml.classifier import TextClassifier
from worker.ml.evaluation import evaluate
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.progress import NullReporter, ProgressReporter
from worker.ml.stopping import RoundRecord, StoppingConfig, evaluate_stopping, topk_agreement
from worker.ml.training import TrainConfig, TrainResult, train_classifier
from worker.simulate.config import ArmSpec, SimulationConfig
from worker.simulate.data import SplitData
from worker.simulate.results import ArmRun, CurvePoint

SEED_PHASE = "seed"


@dataclass(frozen=True)
class ArmJob:
    """Everything one (arm, seed) run needs; picklable, so it can run in a worker process."""

    config: SimulationConfig
    arm: ArmSpec
    seed: int
    base_model: str
    num_layers: int
    data: SplitData
    seed_indices: np.ndarray
    stop_indices: np.ndarray
    deadline: float | None = None
    """``time.time()`` after which no new round starts (the curve then ends early)."""
    embeddings: Any = None
    """``live:`` arms, and every arm when there is no dev set (cross-validation): frozen
    embeddings of pool, dev and test (``two_speed.Embeddings``)."""


def train_config(config: SimulationConfig, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=config.epochs,
        batch_size=config.train_batch_size,
        max_length=config.max_length,
        patience=config.patience,
        seed=seed,
        device=config.device,
        precision=config.precision,
        warm_start=config.warm_start,
    )


class ArmLoop:
    """State of one run: labelled set, the current model(s), the stopping history."""

    def __init__(self, job: ArmJob, reporter: ProgressReporter | None = None) -> None:
        self.job = job
        self.cfg = job.config
        self.data = job.data
        self.reporter = reporter or NullReporter()
        self.adapters = job.arm.adapter_configs(job.num_layers)
        self.cache = LowerLayerCache()
        self.models: list[TextClassifier] = []
        self.history: list[RoundRecord] = []
        self.run = ArmRun(dataset=job.data.source, arm=job.arm.spec, seed=job.seed)
        self.dev = None
        self.test_s = 0.0
        if self.data.dev_texts:
            self.dev = (self.data.dev_texts, self.data.dev_labels.tolist())

    # -- one round ---------------------------------------------------------------------------
    def train(self, labeled: np.ndarray, round_: int) -> TrainResult:
        texts = [self.data.pool_texts[i] for i in labeled]
        labels = self.data.pool_labels[labeled].tolist()
        results = []
        for v, adapter in enumerate(self.adapters):
            previous = self.models[v] if self.models and self.cfg.warm_start else None
            results.append(
                train_classifier(
                    texts,
                    labels,
                    label_names=self.data.label_names,
                    base_model=self.job.base_model,
                    adapter=adapter,
                    config=train_config(self.cfg, self.job.seed * 1000 + round_ + v),
                    dev=self.dev,
                    init_from=previous,
                    reporter=self.reporter,
                )
            )
        self.models = [r.classifier for r in results]
        for model in self.models:
            model.use_layer_cache(self.cache)
        return results[0]

    def measure(
        self, labels: int, dev_metrics: dict[str, Any] | None
    ) -> tuple[dict[str, Any], list[str]]:
        model = self.models[0]
        test = evaluate(
            self.data.test_labels,
            model.predict_proba(self.data.test_texts),
            list(self.data.label_names),
        )
        stop_texts = [self.data.pool_texts[i] for i in self.job.stop_indices]
        predictions = model.predict_proba(stop_texts).argmax(axis=1) if stop_texts else None
        dev_f1 = dev_metrics["macro_f1"] if dev_metrics else None
        self.history.append(RoundRecord(labels=labels, dev_score=dev_f1, predictions=predictions))
        fired = []
        for rec in evaluate_stopping(self.history, StoppingConfig(budget=self.cfg.budget)):
            if rec.fire:
                fired.append(rec.rule)
                self.run.stop_evidence.setdefault(rec.rule, f"at {labels} labels: {rec.evidence}")
        return test, fired

    def strategy_for(self, phase: Phase) -> tuple[str, QueryStrategy]:
        name = self.job.arm.strategy
        if phase is Phase.POLISH and name != "random":
            name = self.cfg.polish_strategy
        dedup = self.cfg.dedup_threshold if name != "random" else None
        return name, get_strategy(name, dedup_threshold=dedup)

    def acquire(
        self,
        labeled: np.ndarray,
        size: int,
        phase: Phase,
        round_: int,
        dev_metrics: dict[str, Any] | None,
    ) -> tuple[np.ndarray, str, float, float]:
        name, strategy = self.strategy_for(phase)
        rng = np.random.default_rng([self.job.seed, round_, 17])
        candidates = np.setdiff1d(np.arange(len(self.data.pool_texts)), labeled)
        if self.cfg.score_sample is not None and candidates.shape[0] > self.cfg.score_sample:
            candidates = np.sort(rng.choice(candidates, self.cfg.score_sample, replace=False))
        started = time.perf_counter()
        view = self._view(strategy, name, candidates, labeled, dev_metrics)
        scored = time.perf_counter()
        picks = strategy.select(view, size, seed=int(rng.integers(2**31)))
        done = time.perf_counter()
        chosen = candidates[[p.index for p in picks]]
        if name != "random" and self.history:  # evidence for the agreement stopping rule
            agreement = topk_agreement(
                [p.index for p in Entropy().select(view, size)],
                [p.index for p in Margin().select(view, size)],
            )
            self.history[-1] = replace(self.history[-1], agreement=agreement)
        return chosen, name, scored - started, done - scored

    def _view(
        self,
        strategy: QueryStrategy,
        name: str,
        candidates: np.ndarray,
        labeled: np.ndarray,
        dev_metrics: dict[str, Any] | None,
    ) -> PoolView:
        k = len(self.data.label_names)
        if name == "random":  # needs no scores: skip the forward pass
            return PoolView(probs=np.full((candidates.shape[0], k), 1.0 / k, dtype=np.float32))
        texts = [self.data.pool_texts[i] for i in candidates]
        labeled_texts = (
            [self.data.pool_texts[i] for i in labeled]
            if LABELED_EMBEDDINGS in strategy.wants
            else []
        )
        class_error = None
        if dev_metrics is not None:
            per_class = dev_metrics["per_class"]
            class_error = np.array([1.0 - per_class[n]["f1"] for n in self.data.label_names])
        return build_pool_view(
            self.models[0],
            texts,
            requires=strategy.requires,
            labeled_texts=labeled_texts,
            variants=self.models if len(self.models) > 1 else (),
            class_error=class_error,
            label_names=self.data.label_names,
        )

    # -- the whole run -----------------------------------------------------------------------
    def cv_metrics(self, labeled: np.ndarray) -> dict[str, Any] | None:
        """Without a dev set: metrics of the live head's out-of-fold predictions on the labelled
        items (``live_head.cv_probs``), standing in for dev metrics (None when impossible)."""
        if self.dev is not None or self.job.embeddings is None:
            return None
        from worker.ml.live_head import cv_probs

        y = self.data.pool_labels[labeled]
        if np.unique(y).shape[0] < 2:
            return None
        k = len(self.data.label_names)
        probs = cv_probs(self.job.embeddings.pool[labeled], y, k)
        return evaluate(y, probs, list(self.data.label_names))

    def timed_measure(
        self, labels: int, dev_metrics: dict[str, Any] | None
    ) -> tuple[dict[str, Any], list[str]]:
        started = time.perf_counter()
        out = self.measure(labels, dev_metrics)
        self.test_s = time.perf_counter() - started
        return out

    def run_all_labels(self) -> ArmRun:
        labeled = np.arange(len(self.data.pool_texts))
        result = self.train(labeled, 0)
        test, _ = self.timed_measure(len(labeled), result.dev_metrics)
        self.run.points.append(self._point(0, len(labeled), "all", "all", test, result, 0.0, 0.0))
        return self.run

    def run_rounds(self) -> ArmRun:
        plan = BudgetPlan(self.cfg.budget, self.cfg.batch_size, self.cfg.reserve_fraction)
        labeled = np.asarray(self.job.seed_indices, dtype=np.int64)
        phase, strategy, round_ = SEED_PHASE, self.cfg.seed_strategy, 0
        while True:
            result = self.train(labeled, round_)
            cv_started = time.perf_counter()
            cv = self.cv_metrics(labeled)
            if cv is not None:
                cv_s = time.perf_counter() - cv_started
                result = replace(result, dev_metrics=cv, seconds=result.seconds + cv_s)
            test, fired = self.timed_measure(labeled.shape[0], result.dev_metrics)
            batch = plan.next_batch(labeled.shape[0])
            score_s = acquire_s = 0.0
            chosen = np.empty(0, dtype=np.int64)
            next_strategy = ""
            if batch.phase is not Phase.DONE:
                chosen, next_strategy, score_s, acquire_s = self.acquire(
                    labeled, batch.size, batch.phase, round_, result.dev_metrics
                )
            point = self._point(
                round_,
                labeled.shape[0],
                phase,
                strategy,
                test,
                result,
                score_s,
                acquire_s,
                tuple(fired),
            )
            self.run.points.append(point)
            self.reporter.report(
                phase="simulate",
                step=labeled.shape[0],
                total=self.cfg.budget,
                metrics={"macro_f1": test["macro_f1"], "accuracy": test["accuracy"]},
                message=f"{self.job.arm.spec} seed {self.job.seed}",
            )
            if batch.phase is Phase.DONE or chosen.shape[0] == 0:
                return self.run
            if self.job.deadline is not None and time.time() > self.job.deadline:
                self.run.truncated = True
                return self.run
            labeled = np.concatenate([labeled, chosen])
            phase, strategy, round_ = batch.phase.value, next_strategy, round_ + 1

    def _point(
        self,
        round_: int,
        labels: int,
        phase: str,
        strategy: str,
        test: dict[str, Any],
        result: TrainResult,
        score_s: float,
        acquire_s: float,
        fired: tuple[str, ...] = (),
    ) -> CurvePoint:
        dev = result.dev_metrics["macro_f1"] if result.dev_metrics else None
        dev_n = len(self.data.dev_texts)
        return CurvePoint(
            round=round_,
            labels=labels + dev_n,  # every label a person makes: seed + queried + dev
            dev_labels=dev_n,
            test_s=self.test_s,
            phase=phase,
            accuracy=float(test["accuracy"]),
            macro_f1=float(test["macro_f1"]),
            dev_macro_f1=dev,
            train_s=result.seconds,
            score_s=score_s,
            acquire_s=acquire_s,
            strategy=strategy,
            stop_rules_fired=fired,
        )
