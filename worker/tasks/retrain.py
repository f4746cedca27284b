"""The retrain body: train the adapter on all labels, evaluate, write and promote a version.

Idempotent per (project, labelled-data version): a model for the run's data version already
exists -> nothing to do (unless the request was forced, e.g. after a TAPT refresh). The slow
part (training, writing files) happens outside transactions; everything that becomes visible
(version row, current pointer, round metrics, queue rebuild request, the likely-label-errors job)
is written by ``publish`` in the transaction that ends the run.

Without a dev set, a round holds out a stratified slice of the labelled pool items
(:func:`worker.ml.live_head.holdout_slice`, 15 %, at least one item of every class with 2+
labels, fixed per item id): the adapter does not train on it, its probabilities on it are written
next to the version (``held_out.npz``) and the live refit compares them with the live head's
out-of-fold probabilities on the same items to choose the served model. The slice is not trained
on afterwards either: retraining on it would serve a model the evidence never measured, and on a
CPU worker a round takes minutes. Its labels still train the live head, which serves whenever it
is at least as good, so they are not lost to the served path. Membership is a fixed function of
the item id, so a (warm-started) round is not measured on items an earlier round trained on (only
the first slice item of a class that just reached 2 labels can be one).

A multi-label project's round is :func:`worker.tasks.retrain_multilabel.retrain_multilabel_body`
(sigmoid outputs, thresholds tuned on dev, a live refit instead of a queue rebuild);
:func:`retrain_body` hands it over. What both rounds share is in :mod:`worker.tasks.round_parts`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import TASK_MULTI_LABEL, Project, RoundMetric, TrainingRun
from app.domain.model_versions import find_by_data_version
from app.domain.runs import request_queue_recompute
from worker.tasks.project_data import (
    LabelledSet,
    ProjectSnapshot,
    load_snapshot,
    stop_set,
    train_and_dev,
)
from worker.tasks.round_parts import (
    MIN_STEPS,
    RoundPublisher,
    growth_wait,
    json_safe,
    saved_live_head,
    stored_embeddings,
    trained_outcome,
    upper_layers,
    warm_start_source,
    with_mean_pooling,
    write_version,
)
from worker.tasks.runner import Outcome, Publish, RunContext
from worker.tasks.stop_rules import STOP_SET_SIZE

if TYPE_CHECKING:  # torch stays out of module import time
    from app.db.models import ModelVersion
    from worker.ml.classifier import TextClassifier

log = logging.getLogger(__name__)

TRAINED_FILE = "trained.npz"
"""Item ids and labels a version's adapter was fitted on (all of them, replayed or not), so the
next warm-started round knows which labels changed."""
REPLAY_MIN = 64


@dataclass(frozen=True)
class RoundInputs:
    snapshot: ProjectSnapshot
    train: LabelledSet
    dev: LabelledSet
    stop_ids: list[int]
    stop_texts: list[str]
    covered_by: int | None
    """Version number of a model already trained on this data version, if any."""
    holdout: LabelledSet = field(default_factory=LabelledSet)
    """Labelled pool items held out of training to measure the adapter (no dev set only)."""

    @property
    def fit_set(self) -> LabelledSet:
        """The labelled pool items the adapter trains on (``train`` minus ``holdout``)."""
        if not len(self.holdout):
            return self.train
        held = set(self.holdout.item_ids)
        rows = [i for i, item_id in enumerate(self.train.item_ids) if item_id not in held]
        return LabelledSet(
            [self.train.item_ids[i] for i in rows],
            [self.train.texts[i] for i in rows],
            [self.train.labels[i] for i in rows],
        )


def load_round_inputs(session: Session, ctx: RunContext) -> RoundInputs:
    snapshot = load_snapshot(session, ctx.claim.project_id, ctx.settings)
    train, dev = train_and_dev(session, snapshot)
    # Stabilizing predictions is the stop rule for projects *without* a dev set; with one, the
    # dev-gain rule decides and the extra forward pass over the stop set is saved.
    stop_ids, stop_texts = stop_set(session, snapshot, 0 if len(dev) else STOP_SET_SIZE)
    existing = find_by_data_version(session, snapshot.id, ctx.claim.data_version)
    return RoundInputs(
        snapshot, train, dev, stop_ids, stop_texts, existing.version if existing else None,
        holdout=LabelledSet() if len(dev) else held_out_slice(train, seed=snapshot.id),
    )


def held_out_slice(train: LabelledSet, *, seed: int) -> LabelledSet:
    """The stratified slice a round without a dev set holds out (see the module docstring)."""
    from worker.ml.live_head import holdout_slice

    if train.classes_present < 2:
        return LabelledSet()
    mask = holdout_slice(train.item_ids, train.labels, seed=seed)
    rows = [i for i, held in enumerate(mask) if held]
    return LabelledSet(
        [train.item_ids[i] for i in rows],
        [train.texts[i] for i in rows],
        [train.labels[i] for i in rows],
    )


def retrain_body(ctx: RunContext) -> Outcome:
    if _is_multi_label(ctx):
        from worker.tasks.retrain_multilabel import retrain_multilabel_body

        return retrain_multilabel_body(ctx)
    started = time.perf_counter()
    with ctx.session() as session:
        inputs = load_round_inputs(session, ctx)
    force = bool(ctx.claim.params.get("force"))
    data_version = ctx.claim.data_version
    if inputs.covered_by is not None and not force:
        return Outcome(f"model v{inputs.covered_by} already covers data version {data_version}")
    if inputs.train.classes_present < 2:
        return Outcome(
            f"waiting for labels of at least two classes ({len(inputs.train)} labelled so far)",
            publish=_request_queue(ctx.claim.project_id, "labels changed, no model yet"),
        )
    waiting = growth_wait(ctx, inputs.snapshot, len(inputs.train), force)
    if waiting is not None:
        return Outcome(waiting)
    trained = _train(ctx, inputs)
    return trained_outcome(
        ctx, started, lambda: _write_version(ctx, inputs, trained),
        lambda final: _Publisher(ctx, inputs, trained, final, force),
        f"trained on {len(inputs.train)} labels (data version {data_version})",
        trained.run_metrics(len(inputs.train)),
    )


def _is_multi_label(ctx: RunContext) -> bool:
    """A multi-label project's round is :mod:`worker.tasks.retrain_multilabel`'s."""
    with ctx.session() as session:
        task_type = session.scalar(
            select(Project.task_type).where(Project.id == ctx.claim.project_id))
    return task_type == TASK_MULTI_LABEL


def _lpft(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, adapter: dict[str, Any],
    holdout: LabelledSet | None = None, fit: LabelledSet | None = None,
) -> tuple[dict[str, Any], tuple[Any, Any] | None, str]:
    """Mean pooling (the live head's input) by default on BERT-family bases, and the head's
    initial weights from a logistic regression on the frozen encoder's embeddings (LP-FT).

    When the live refit has stored the embeddings of every item of ``fit`` for this encoder, the
    regression is fitted on exactly ``fit`` (under a second for a thousand labels): it knows
    every label of the round, even those submitted with it (the live refit runs beside the
    round, and may not have finished), and never the held-out slice (``holdout``), so the
    adapter's score on the slice stays out of sample. Otherwise the saved live head is used when
    it was fitted on this encoder and label set, and without a slice to keep out."""
    adapter = with_mean_pooling(base, adapter)
    if adapter.get("pooling") != "mean":
        return adapter, None, "head from scratch (pooling='cls')"
    head, why_not = _saved_head(ctx, snapshot, base)
    if fit is not None and len(fit):
        refit = _head_on_stored_embeddings(ctx, snapshot, base, head, fit)
        if refit is not None:
            return (
                adapter,
                refit.linear_weights(),
                f"head from a logistic regression on the stored embeddings of this round's "
                f"{len(fit)} labels",
            )
    if head is None:
        return adapter, None, f"head from scratch ({why_not})"
    if holdout is not None and len(holdout):
        return adapter, None, "head from scratch (the live head has seen the held-out slice)"
    return adapter, head.linear_weights(), f"head from the live head ({head.n_labels} labels)"


def _saved_head(ctx: RunContext, snapshot: ProjectSnapshot, base: str) -> tuple[Any, str]:
    """The project's saved live head if it belongs to this encoder and label set, else (None,
    why not)."""
    from worker.ml.live_head import LiveHead

    return saved_live_head(ctx, snapshot, base, LiveHead.load, lambda head: head.n_classes)


def _head_on_stored_embeddings(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, head: Any, fit: LabelledSet
) -> Any:
    """A logistic regression on the stored embeddings of ``fit`` (the live head's settings), or
    None when the live refit has not stored them all for this encoder."""
    from contract.errors import MLError
    from worker.ml.live_head import LiveHead, LiveHeadConfig

    X = stored_embeddings(ctx, snapshot, base, head, list(fit.item_ids))
    if X is None:
        return None
    try:
        config = head.config if head is not None else LiveHeadConfig(features="embed")
        return LiveHead(config).fit(
            X, np.asarray(fit.labels), len(snapshot.label_names), features="embed"
        )
    except (MLError, ValueError) as exc:
        log.info("no head from the stored embeddings: %s", exc)
        return None


def _replay_ratio(config: Any) -> float:
    """Replay is for CPU workers, where a full retrain of a thousand labels takes minutes; a GPU
    worker trains every round on every label (as it retrains every batch, see
    :func:`worker.tasks.round_parts.growth_wait`)."""
    import torch

    return 0.0 if torch.cuda.is_available() else float(config.replay_ratio)


def replay_subset(
    fit: LabelledSet, previous: dict[int, int] | None, ratio: float, *, seed: int,
    from_labels: int = 0,
) -> tuple[LabelledSet, str]:
    """What a warm-started round trains on: the labels added or changed since the previous
    version (``previous``: its item id -> label), plus ``ratio`` times as many earlier ones (at
    least :data:`REPLAY_MIN`) drawn at random. All of ``fit`` when there is no previous set, no
    ratio, fewer than ``from_labels`` labels, nothing changed (a forced retrain) or the subset
    would be most of it anyway."""
    if previous is None or ratio <= 0 or len(fit) < from_labels:
        return fit, "all labels"
    changed = [i for i, (item_id, label) in enumerate(zip(fit.item_ids, fit.labels, strict=True))
               if previous.get(item_id) != label]
    earlier = [i for i in range(len(fit)) if previous.get(fit.item_ids[i]) == fit.labels[i]]
    replayed = max(REPLAY_MIN, int(np.ceil(ratio * len(changed))))
    if not changed or len(changed) + replayed >= 0.8 * len(fit):
        return fit, "all labels"
    rng = np.random.default_rng(seed)
    rows = sorted(changed + rng.choice(earlier, size=replayed, replace=False).tolist())
    subset = LabelledSet([fit.item_ids[i] for i in rows], [fit.texts[i] for i in rows],
                         [fit.labels[i] for i in rows])
    return subset, f"{len(changed)} new or changed labels + {replayed} replayed of {len(fit)}"


def read_trained(artifact: str | None) -> dict[int, int] | None:
    """The previous version's trained item ids and labels (None for versions without them)."""
    if artifact is None:
        return None
    path = Path(artifact) / TRAINED_FILE
    try:
        with np.load(path) as data:
            return dict(zip(data["item_ids"].tolist(), data["labels"].tolist(), strict=True))
    except (OSError, KeyError, ValueError):
        return None


@dataclass
class Trained:
    classifier: TextClassifier
    dev_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    seconds: float
    trainable_params: int
    total_params: int
    base_model: str
    warm_start: bool
    stop_predictions: list[int]
    held_out_ids: list[int] = field(default_factory=list)
    held_out_probs: np.ndarray | None = None
    held_out_metrics: dict[str, Any] | None = None
    """No dev set: ``n``, ``macro_f1``, ``accuracy`` on the held-out slice, ``trained_on``."""
    fitted: LabelledSet = field(default_factory=LabelledSet)
    """Every label the adapter now reflects (written as ``trained.npz``)."""
    replay_note: str = "all labels"

    def save_trained(self, directory: Path) -> None:
        with (directory / TRAINED_FILE).open("wb") as handle:
            np.savez(handle, item_ids=np.asarray(self.fitted.item_ids, dtype=np.int64),
                     labels=np.asarray(self.fitted.labels, dtype=np.int64))

    def run_metrics(self, labels_used: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"labels_used": labels_used, "warm_start": self.warm_start,
                                   "trained_on": self.replay_note}
        if self.dev_metrics:
            metrics["dev_accuracy"] = self.dev_metrics["accuracy"]
            metrics["dev_macro_f1"] = self.dev_metrics["macro_f1"]
        if self.held_out_metrics:
            metrics["held_out_macro_f1"] = self.held_out_metrics["macro_f1"]
            metrics["held_out_n"] = self.held_out_metrics["n"]
        return metrics

    def save_held_out(self, directory: Path) -> None:
        """``held_out.npz`` (item ids, probabilities) next to the adapter, for the live refit."""
        from worker.tasks.live_refit import HELD_OUT_FILE

        if self.held_out_probs is None:
            return
        with (directory / HELD_OUT_FILE).open("wb") as handle:
            np.savez(
                handle,
                item_ids=np.asarray(self.held_out_ids, dtype=np.int64),
                probs=self.held_out_probs.astype(np.float32),
            )


def _train(ctx: RunContext, inputs: RoundInputs) -> Trained:
    from contract.adapter_config import AdapterConfig
    from worker.ml.layer_cache import shared_cache
    from worker.ml.training import TrainConfig, train_classifier

    snapshot = inputs.snapshot
    base = snapshot.tapt_model_path or snapshot.base_model
    fit = inputs.fit_set
    adapter_dict, head_init, head_note = _lpft(
        ctx, snapshot, base, upper_layers(base, snapshot.adapter_config), inputs.holdout, fit
    )
    adapter = AdapterConfig.from_dict(adapter_dict)
    config = TrainConfig.from_dict({"min_steps": MIN_STEPS, **snapshot.train_config})
    init_from = warm_start_source(snapshot, base, adapter.to_dict(), config.warm_start)
    fitted = fit
    fit, replay_note = replay_subset(
        fitted, read_trained(init_from), _replay_ratio(config), seed=ctx.claim.data_version,
        from_labels=config.replay_from,
    )
    held = f", {len(inputs.holdout)} held out" if len(inputs.holdout) else ""
    ctx.reporter.set_message(
        f"training a {adapter.kind} adapter on {len(fit)} labels ({replay_note}){held} "
        f"({len(inputs.dev)} dev items), base {Path(base).name}, "
        f"{'warm start from v' + str(snapshot.current_version_number) if init_from else 'cold'}, "
        f"{head_note}"
    )
    dev = (inputs.dev.texts, inputs.dev.labels) if len(inputs.dev) else None
    result = train_classifier(
        fit.texts,
        fit.labels,
        label_names=list(snapshot.label_names),
        base_model=base,
        adapter=adapter,
        config=config,
        dev=dev,
        init_from=init_from,
        reporter=ctx.reporter,
        head_init=head_init,
        layer_cache=shared_cache(),
    )
    predictions: list[int] = []
    if inputs.stop_texts:
        ctx.reporter.report(phase="evaluate", step=0, total=1, message="stop-set predictions")
        probs = result.classifier.predict_proba(inputs.stop_texts)
        predictions = [int(p) for p in probs.argmax(axis=1)]
    held_out_probs, held_out_metrics = None, None
    if len(inputs.holdout):
        from worker.ml.evaluation import evaluate

        ctx.reporter.report(phase="evaluate", step=0, total=1, message="held-out slice")
        held_out_probs = np.asarray(result.classifier.predict_proba(inputs.holdout.texts))
        full = evaluate(inputs.holdout.labels, held_out_probs, list(snapshot.label_names))
        held_out_metrics = {
            "n": len(inputs.holdout),
            "macro_f1": full["macro_f1"],
            "accuracy": full["accuracy"],
            "trained_on": len(fit),
        }
    return Trained(
        classifier=result.classifier,
        dev_metrics=result.dev_metrics,
        history=result.history,
        seconds=result.seconds,
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        base_model=result.classifier.base_model,
        warm_start=init_from is not None,
        stop_predictions=predictions,
        held_out_ids=list(inputs.holdout.item_ids),
        held_out_probs=held_out_probs,
        held_out_metrics=held_out_metrics,
        fitted=fitted,
        replay_note=replay_note,
    )


def _write_version(ctx: RunContext, inputs: RoundInputs, trained: Trained) -> Path:
    from worker.ml.artifacts import build_card

    card = build_card(
        trained.classifier,
        dev_metrics=trained.dev_metrics,
        training_examples=len(inputs.fit_set),
        project_id=inputs.snapshot.id,
        run_id=ctx.claim.run_id,
        data_version=ctx.claim.data_version,
    )

    def extra(tmp: Path) -> None:
        trained.save_held_out(tmp)
        trained.save_trained(tmp)

    return write_version(ctx, inputs.snapshot.id, trained.classifier, card, extra)


def _request_queue(project_id: int, reason: str) -> Publish:
    def publish(session: Session, run: TrainingRun) -> int | None:
        request_queue_recompute(session, project_id, reason=reason)
        return None

    return publish


class _Publisher(RoundPublisher):
    """Writes the round's results in the run's final transaction (see the module docstring)."""

    def __init__(
        self, ctx: RunContext, inputs: RoundInputs, trained: Trained, final: Path, force: bool
    ) -> None:
        labels_used = len(inputs.train)
        super().__init__(ctx, inputs.snapshot.id, final, force,
                         adapter_kind=trained.classifier.adapted.config.kind,
                         labels_used=labels_used, metrics=trained.run_metrics(labels_used))
        self.inputs = inputs
        self.trained = trained

    def hand_off(self, session: Session, version: ModelVersion) -> None:
        # The hand-off to the queue: annotators get items picked by the new version. Likely
        # label errors are recomputed once the new version's queue is served (the queue swap
        # sends that task): on a one-process worker the round never waits for them.
        request_queue_recompute(session, self.project_id,
                                reason=f"model v{version.version} promoted")

    def round_metric(self, version_id: int, run_id: int) -> RoundMetric:
        dev = self.trained.dev_metrics or {}
        per_class = {name: values["f1"] for name, values in dev.get("per_class", {}).items()}
        return RoundMetric(
            project_id=self.inputs.snapshot.id,
            model_version_id=version_id,
            run_id=run_id,
            labels_used=len(self.inputs.train),
            dev_accuracy=dev.get("accuracy"),
            macro_f1=dev.get("macro_f1"),
            per_class_f1=per_class,
            confusion=dev.get("confusion", []),
            details={
                "data_version": self.ctx.claim.data_version,
                "dev_n": dev.get("n", 0),
                "ece": dev.get("ece"),
                "history": json_safe(self.trained.history),
                "train_seconds": round(self.trained.seconds, 3),
                "trainable_params": self.trained.trainable_params,
                "total_params": self.trained.total_params,
                "warm_start": self.trained.warm_start,
                "base_model": self.trained.base_model,
                "stop_item_ids": self.inputs.stop_ids,
                "stop_predictions": self.trained.stop_predictions,
                **({"held_out": self.trained.held_out_metrics}
                   if self.trained.held_out_metrics else {}),
            },
        )
