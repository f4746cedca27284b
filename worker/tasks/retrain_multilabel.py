"""The adapter round of a multi-label project (issue 19): the project's adapter with sigmoid
outputs and binary cross-entropy on every label set, thresholds tuned on the dev set, a version,
a round metric, and a live refit that decides what is served.

:func:`worker.tasks.retrain.retrain_body` hands a multi-label project's run here. As the
single-label round, it is idempotent per (project, labelled-data version) unless forced, waits on
a CPU worker until the labels grew by ``adapter_growth_factor`` (:func:`worker.tasks.round_parts.
growth_wait`), trains outside transactions and publishes everything (version row, current
pointer, round metric, stop rules, the refit request) in the transaction that ends the run.

* **Inputs**: the labelled pool items' sets and the dev set's
  (:func:`worker.tasks.project_data.labelled_sets`); a round needs
  :data:`worker.tasks.live_multilabel.MIN_LABELLED` labelled items and two labels with a
  positive. The dev set is used (early stopping, thresholds, metrics) when it has
  :data:`worker.tasks.live_multilabel.MIN_DEV` items, as for the live head.
* **Training**: :func:`worker.ml.training.train_classifier` with ``multi_label=True`` on the
  project's adapter and train config exactly as the single-label round (base = the TAPT model if
  any, adapters on the top layers, mean pooling, ``min_steps``, the worker's layer cache). Warm
  start from the current version only when its artifact is multi-label with this base and adapter
  config. Every round trains on every label set: replay (``trained.npz``) is single-label only,
  and no ``trained.npz`` is written. LP-FT: the head starts from a one-vs-rest regression on the
  stored embeddings of this round's items (the multi-label live head's features), else from the
  saved multi-label live head, when either belongs to this encoder and label set.
* **Publishing**: the version becomes current, a ``RoundMetric`` records dev macro-F1
  (``macro_f1``), subset accuracy (``dev_accuracy``), per-label F1 and, in ``details``, micro-F1,
  Hamming loss, the thresholds and the dev set's fingerprint; then a live refit is requested
  (not a queue rebuild: a multi-label queue always comes from the live head). The refit serves
  the adapter when its dev macro-F1 beats the live head's on the same dev set
  (:func:`worker.tasks.live_multilabel.served_choice`).
* **Without a dev set** (fewer than ``MIN_DEV`` items with sets) thresholds stay at 0.5 and the
  adapter cannot be compared: the version is written, current and downloadable, but the live
  head stays the served model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app.db.models import SPLIT_DEV, SPLIT_POOL, RoundMetric
from app.domain.live_head import request_live_refit
from app.domain.model_versions import find_by_data_version
from worker.tasks.live_multilabel import MIN_DEV, MIN_LABELLED, MULTI_LABEL_TASK, dev_fingerprint
from worker.tasks.project_data import LabelledSets, ProjectSnapshot, labelled_sets, load_snapshot
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
from worker.tasks.runner import Outcome, RunContext

if TYPE_CHECKING:  # torch stays out of module import time
    from app.db.models import ModelVersion
    from worker.ml.classifier import TextClassifier

log = logging.getLogger(__name__)

MULTI_LABEL_TRAIN_DEFAULTS: dict[str, Any] = {"min_steps": MIN_STEPS, "class_weighting": True}
"""A multi-label round's train config before the project's own: the single-label round's
``min_steps``, and each label's positives weighted by its negatives/positives ratio (capped,
:data:`worker.ml.training.MAX_POS_WEIGHT`) -- label sets are sparse (most labels are off for
most items). On the Cooking simulation (``tests/benchmarks/bench_multilabel_adapter.py``, 3
seeds) it lifted the adapter's test macro-F1 from 0.557 to 0.595 at 5 % of the pool and from
0.609 to 0.623 at 10 %, as the live head weighs its classes ("balanced")."""


@dataclass(frozen=True)
class MultiLabelInputs:
    snapshot: ProjectSnapshot
    train: LabelledSets
    dev: LabelledSets
    """The dev set's label sets when it has :data:`MIN_DEV` items, else empty (not used)."""
    dev_available: int
    """Dev items with a label set, used or not."""
    covered_by: int | None
    """Version number of a model already trained on this data version, if any."""

    @property
    def labels_in_use(self) -> int:
        """Labels with at least one positive among the labelled pool items."""
        return len({j for labels in self.train.sets for j in labels})


def load_inputs(session: Session, ctx: RunContext) -> MultiLabelInputs:
    snapshot = load_snapshot(session, ctx.claim.project_id, ctx.settings)
    train = labelled_sets(session, snapshot, SPLIT_POOL)
    dev = labelled_sets(session, snapshot, SPLIT_DEV)
    existing = find_by_data_version(session, snapshot.id, ctx.claim.data_version)
    return MultiLabelInputs(
        snapshot, train, dev if len(dev) >= MIN_DEV else LabelledSets(), len(dev),
        existing.version if existing else None,
    )


def retrain_multilabel_body(ctx: RunContext) -> Outcome:
    started = time.perf_counter()
    with ctx.session() as session:
        inputs = load_inputs(session, ctx)
    force = bool(ctx.claim.params.get("force"))
    data_version = ctx.claim.data_version
    if inputs.covered_by is not None and not force:
        return Outcome(f"model v{inputs.covered_by} already covers data version {data_version}")
    if len(inputs.train) < MIN_LABELLED or inputs.labels_in_use < 2:
        return Outcome(
            f"waiting for {MIN_LABELLED} labelled items with at least two labels in use "
            f"({len(inputs.train)} labelled so far, {inputs.labels_in_use} label(s) with a "
            "positive); the live head serves meanwhile")
    waiting = growth_wait(ctx, inputs.snapshot, len(inputs.train), force)
    if waiting is not None:
        return Outcome(waiting)
    trained = _train(ctx, inputs)
    return trained_outcome(
        ctx, started, lambda: _write_version(ctx, inputs, trained),
        lambda final: _Publisher(ctx, inputs, trained, final, force),
        f"trained a multi-label adapter on {len(inputs.train)} label sets "
        f"(data version {data_version})",
        trained.run_metrics(len(inputs.train)),
    )


@dataclass
class TrainedSets:
    classifier: TextClassifier
    dev_metrics: dict[str, Any] | None
    """:func:`worker.ml.multilabel.report` on dev at the tuned ``thresholds`` (None: no dev)."""
    history: list[dict[str, Any]]
    seconds: float
    trainable_params: int
    total_params: int
    base_model: str
    warm_start: bool

    def run_metrics(self, labels_used: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"labels_used": labels_used, "warm_start": self.warm_start,
                                   "trained_on": "all labels", "task_type": MULTI_LABEL_TASK}
        if self.dev_metrics:
            metrics["dev_macro_f1"] = self.dev_metrics["macro_f1"]
            metrics["dev_micro_f1"] = self.dev_metrics["micro_f1"]
            metrics["dev_subset_accuracy"] = self.dev_metrics["subset_accuracy"]
            metrics["dev_hamming_loss"] = self.dev_metrics["hamming_loss"]
        return metrics



def _train(ctx: RunContext, inputs: MultiLabelInputs) -> TrainedSets:
    from contract.adapter_config import AdapterConfig
    from worker.ml.layer_cache import shared_cache
    from worker.ml.training import TrainConfig, train_classifier

    snapshot = inputs.snapshot
    base = snapshot.tapt_model_path or snapshot.base_model
    adapter_dict = with_mean_pooling(base, upper_layers(base, snapshot.adapter_config))
    head_init, head_note = _head_init(ctx, snapshot, base, adapter_dict, inputs.train)
    adapter = AdapterConfig.from_dict(adapter_dict)
    config = TrainConfig.from_dict({**MULTI_LABEL_TRAIN_DEFAULTS, **snapshot.train_config})
    init_from = warm_start_source(snapshot, base, adapter.to_dict(), config.warm_start,
                                  multi_label=True)
    dev_note = (f"{len(inputs.dev)} dev items" if len(inputs.dev) else
                f"no dev set of {MIN_DEV}+ items ({inputs.dev_available}): thresholds stay 0.5")
    ctx.reporter.set_message(
        f"training a multi-label {adapter.kind} adapter on {len(inputs.train)} label sets "
        f"({dev_note}), base {Path(base).name}, "
        f"{'warm start from v' + str(snapshot.current_version_number) if init_from else 'cold'}, "
        f"{head_note}"
    )
    dev = (inputs.dev.texts, inputs.dev.sets) if len(inputs.dev) else None
    result = train_classifier(
        inputs.train.texts,
        inputs.train.sets,
        label_names=list(snapshot.label_names),
        base_model=base,
        adapter=adapter,
        config=config,
        dev=dev,
        init_from=init_from,
        reporter=ctx.reporter,
        head_init=head_init,
        layer_cache=shared_cache(),
        multi_label=True,
    )
    return TrainedSets(
        classifier=result.classifier,
        dev_metrics=result.dev_metrics,
        history=result.history,
        seconds=result.seconds,
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        base_model=result.classifier.base_model,
        warm_start=init_from is not None,
    )


def _head_init(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, adapter: dict[str, Any],
    fit: LabelledSets,
) -> tuple[tuple[Any, Any] | None, str]:
    """LP-FT for a multi-label round: ``(W (L, d), b (L,))`` of a one-vs-rest regression on the
    L2-normalised mean-pooled embeddings (the adapter's pooled input with mean pooling), from the
    stored embeddings of ``fit`` when the live refit has stored them all for this encoder, else
    from the saved multi-label live head of this encoder and label set; None: from scratch."""
    if adapter.get("pooling") != "mean":
        return None, "head from scratch (pooling='cls')"
    head, why_not = _saved_head(ctx, snapshot, base)
    refit = _head_on_stored_embeddings(ctx, snapshot, base, head, fit)
    if refit is not None:
        return ((refit.W, refit.b), "head from a one-vs-rest regression on the stored embeddings "
                f"of this round's {len(fit)} label sets")
    if head is None:
        return None, f"head from scratch ({why_not})"
    return (head.W, head.b), f"head from the multi-label live head ({head.n_labels} labels)"


def _saved_head(ctx: RunContext, snapshot: ProjectSnapshot, base: str) -> tuple[Any, str]:
    """The project's saved multi-label live head if it belongs to this encoder and label set,
    else (None, why not)."""
    from worker.ml.multilabel import MultiLabelHead

    return saved_live_head(ctx, snapshot, base, MultiLabelHead.load, lambda head: head.n_labels)


def _head_on_stored_embeddings(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, head: Any, fit: LabelledSets
) -> Any:
    """A one-vs-rest regression on the stored embeddings of ``fit`` (the live head's settings),
    or None when the live refit has not stored them all for this encoder."""
    from contract.errors import MLError
    from worker.ml.multilabel import MultiLabelHead, label_matrix

    X = stored_embeddings(ctx, snapshot, base, head, list(fit.item_ids))
    if X is None:
        return None
    try:
        return MultiLabelHead.fit(X, label_matrix(fit.sets, len(snapshot.label_names)),
                                  C=head.C if head is not None else 10.0)
    except (MLError, ValueError) as exc:
        log.info("no head from the stored embeddings: %s", exc)
        return None


def _card_metrics(trained: TrainedSets) -> dict[str, Any] | None:
    """The dev metrics for the card (the thresholds are in the card already)."""
    if not trained.dev_metrics:
        return None
    return {k: v for k, v in trained.dev_metrics.items() if k != "thresholds"}


def _write_version(ctx: RunContext, inputs: MultiLabelInputs, trained: TrainedSets) -> Path:
    from worker.ml.artifacts import build_card

    card = build_card(
        trained.classifier,
        dev_metrics=_card_metrics(trained),
        training_examples=len(inputs.train),
        project_id=inputs.snapshot.id,
        run_id=ctx.claim.run_id,
        data_version=ctx.claim.data_version,
    )
    return write_version(ctx, inputs.snapshot.id, trained.classifier, card)


class _Publisher(RoundPublisher):
    """Writes the round's results in the run's final transaction (see the module docstring)."""

    def __init__(
        self, ctx: RunContext, inputs: MultiLabelInputs, trained: TrainedSets, final: Path,
        force: bool,
    ) -> None:
        labels_used = len(inputs.train)
        super().__init__(ctx, inputs.snapshot.id, final, force,
                         adapter_kind=trained.classifier.adapted.config.kind,
                         labels_used=labels_used, metrics=trained.run_metrics(labels_used))
        self.inputs = inputs
        self.trained = trained

    def hand_off(self, session: Session, version: ModelVersion) -> None:
        # No queue rebuild (a multi-label queue always comes from the live head): the refit
        # compares the new adapter with the live head on dev and picks the served model.
        request_live_refit(session, self.project_id)

    def round_metric(self, version_id: int, run_id: int) -> RoundMetric:
        from worker.ml.artifacts import named_thresholds

        dev = self.trained.dev_metrics or {}
        per_label = {str(row["label"]): row["f1"] for row in dev.get("per_label", [])}
        return RoundMetric(
            project_id=self.inputs.snapshot.id,
            model_version_id=version_id,
            run_id=run_id,
            labels_used=len(self.inputs.train),
            dev_accuracy=dev.get("subset_accuracy"),
            macro_f1=dev.get("macro_f1"),
            per_class_f1=per_label,
            confusion=[],
            details={
                "task_type": MULTI_LABEL_TASK,
                "data_version": self.ctx.claim.data_version,
                "dev_n": dev.get("n", 0),
                "dev_fingerprint": dev_fingerprint(self.inputs.dev) if dev else None,
                "micro_f1": dev.get("micro_f1"),
                "subset_accuracy": dev.get("subset_accuracy"),
                "hamming_loss": dev.get("hamming_loss"),
                "per_label": json_safe(dev.get("per_label", [])),
                "thresholds": named_thresholds(self.trained.classifier),
                "history": json_safe(self.trained.history),
                "train_seconds": round(self.trained.seconds, 3),
                "trainable_params": self.trained.trainable_params,
                "total_params": self.trained.total_params,
                "warm_start": self.trained.warm_start,
                "base_model": self.trained.base_model,
                "stop_item_ids": [],
                "stop_predictions": [],
            },
        )
