"""Train the adapter (and head) for one active-learning round.

Defaults and why:
- ``epochs=3``: a round retrains on all labels gathered so far, usually tens to a few hundred
  texts, i.e. only a handful of optimizer steps per epoch. Three epochs give the newest labels
  enough updates while the warm start carries what earlier rounds learned; with a dev set, early
  stopping (``patience=1``) ends sooner and keeps the best epoch.
- AdamW with one LR per group: adapter 1e-3, head 2e-3, and for full fine-tuning / unfrozen blocks
  ``lr_full=3e-5`` (the usual 2e-5..5e-5 range for encoder weights). The head keeps ``lr_head`` in
  every mode because it starts random and a short round at 3e-5 would barely move it.
- weight decay 0.01 except biases and LayerNorm weights; 3 % warmup then cosine decay.
- ``batch_size`` is the effective batch (examples per optimizer step); ``grad_accum`` splits it
  into that many micro-batches, so memory scales with ``batch_size / grad_accum``.
- ``cache_lower_layers=True``: when adapters (and unfrozen blocks) sit only in layers >= k, the
  frozen layers below k compute the same hidden states every epoch and every round. They are
  computed once per text (no gradient, no dropout) into a :class:`LowerLayerCache` and each
  step runs only layers k.. forward and backward; with the worker's shared cache a round
  computes them only for texts no earlier round or scoring pass saw. Gradients equal the
  uncached path's with dropout off (``tests/worker/ml/test_training_cache.py``); with dropout
  on, the frozen lower layers no longer drop units during training.
- ``replay_ratio=1`` with ``replay_from=1000``: read by the worker's round on a CPU worker (a
  GPU worker trains every round on every label), not by this loop.
  Once the project has ``replay_from`` labels, a warm-started round trains on the labels added or
  changed since the previous version plus ``replay_ratio`` times as many earlier ones, drawn at
  random (at least ``REPLAY_MIN``); below it, and with ``replay_ratio=0``, every round trains on
  all labels. A round's cost then stops growing with the labels (a full retrain of 1,000 labels
  is ~190 steps, a round of 100 new ones ~30). Not below 1,000: on R8 (LP-FT, top-two-layer
  LoRA, rounds of 100 labels at 200-500 labels) ``r = 1`` halved the training time but lost
  about 2 points of macro-F1 against retraining on all labels
  (``tests/benchmarks/results/replay.md``), while a full retrain there takes under two minutes
  on a CPU. From 1,000 labels on 20NG it cost 1.6 points too but cut a round's training from
  97 s to 15 s (``tests/benchmarks/results/replay_20ng_1000.md``), which is what keeps a
  round under half a minute there; the dev set still picks between the live head and the
  adapter.
- ``min_steps=0`` (off): with a handful of labels, epochs over them give only a few optimizer
  steps (34 labels at batch 16 = 3 a epoch), too few to move a head or an adapter. With
  ``min_steps=N`` a round whose epochs would give fewer than N steps instead draws N batches
  class-balanced with replacement (:func:`min_steps_sampler`), spread over the epochs so dev
  early stopping still works. The two-speed loop sets it (its head starts from the live head).
- ``multi_label=True`` (issue 19): ``labels`` are label sets (lists of label indices, an empty
  list for "none of these"); the head's outputs are independent sigmoids trained with binary
  cross-entropy, summed over labels (each positive label of an item gets a full gradient, however
  many labels the project has), ``class_weighting`` weighs each label's positives by its
  negatives/positives ratio (at most :data:`MAX_POS_WEIGHT`), the class-balanced sampler balances
  over each item's rarest label, and each epoch is judged on dev by macro-F1 (then micro-F1) at
  per-label thresholds tuned on the dev probabilities (:func:`worker.ml.multilabel.
  tune_thresholds`); the best epoch's thresholds are stored with the classifier. Without a dev
  set the thresholds stay at 0.5. A head that neither starts from a linear probe (``head_init``)
  nor from the previous round starts with each label's bias at the log-odds of its base rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from contract.adapter_config import AdapterConfig
from contract.config_base import OptimConfig
from contract.errors import ConfigError
from worker.ml.adapters.build import AdaptedModel, build_adapted_model
from worker.ml.batching import collate, encode, shuffled_bucket_batches, sorted_batches
from worker.ml.classifier import TextClassifier
from worker.ml.evaluation import evaluate
from worker.ml.layer_cache import LowerLayerCache, encoder_input_override, layer_slice
from worker.ml.models import (
    load_sequence_classifier,
    load_tokenizer,
    model_fingerprint,
    resolve_model_path,
)
from worker.ml.progress import NullReporter, ProgressReporter, StepClock, check_cancelled
from worker.ml.runtime import make_precision, resolve_device, set_seed
from worker.ml.schedule import apply_lr, warmup_steps

PHASE = "train"
MAX_POS_WEIGHT = 10.0
"""Largest positive-class weight of a label under ``class_weighting`` (multi-label)."""


@dataclass
class TrainConfig(OptimConfig):
    """Hyperparameters of one training round (see the module docstring for the defaults)."""

    config_name: ClassVar[str] = "train config"

    epochs: int = 3
    batch_size: int = 16
    grad_accum: int = 1
    lr_adapter: float = 1e-3
    lr_head: float = 2e-3
    lr_full: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    max_length: int = 256
    class_weighting: bool = False
    patience: int = 1
    warm_start: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    max_grad_norm: float = 1.0
    min_steps: int = field(
        default=0,
        metadata={
            "help": "minimum optimizer steps per round; fewer from the epochs -> "
            "class-balanced sampling with replacement (0: off)"
        },
    )
    eval_batch_size: int = field(default=64, metadata={"help": "batch size for dev scoring"})
    replay_ratio: float = field(
        default=1.0,
        metadata={"help": "a warm-started round trains on the labels that changed since the "
                  "previous version plus this many times as many earlier ones (0: all labels)"},
    )
    replay_from: int = field(
        default=1000,
        metadata={"help": "rounds replay (replay_ratio) only once there are this many labels"},
    )
    cache_lower_layers: bool = field(
        default=True,
        metadata={"help": "train from cached outputs of the frozen layers below the adapters"},
    )

    def __post_init__(self) -> None:
        self.check_ints(("epochs", "batch_size", "grad_accum", "max_length", "eval_batch_size"))
        if self.epochs > 20:
            raise ConfigError(f"epochs={self.epochs}: a round trains 1-3 epochs; at most 20")
        self.check_optimisation()
        for name in ("lr_adapter", "lr_head", "lr_full"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay must be in [0, 1), got {self.weight_decay}")
        if not 0 <= self.replay_ratio <= 100:
            raise ConfigError(f"replay_ratio must be in [0, 100], got {self.replay_ratio}")
        if not isinstance(self.replay_from, int) or self.replay_from < 0:
            raise ConfigError(f"replay_from must be an int >= 0, got {self.replay_from!r}")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ConfigError(f"min_steps must be an int >= 0, got {self.min_steps!r}")
        if self.patience < 1:
            raise ConfigError(
                f"patience must be >= 1 (epochs without dev improvement), got {self.patience}"
            )


@dataclass
class TrainResult:
    classifier: TextClassifier
    dev_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    seconds: float  # wall time of the whole call: loading, training, dev evaluation
    trainable_params: int
    total_params: int
    train_seconds: float = 0.0  # the optimisation steps alone (throughput measurements)

    @property
    def trainable_percent(self) -> float:
        base = self.classifier.adapted.base_count()
        return 100.0 * self.trainable_params / base if base else 0.0


def min_steps_sampler(
    labels: Sequence[int], *, batch_size: int, batches: int, rng: np.random.Generator
) -> list[list[int]]:
    """``batches`` lists of ``batch_size`` indices into ``labels``, class-balanced with
    replacement: each slot draws a labelled class uniformly, then one of its items uniformly.

    With few labels this gives every round enough optimizer steps and stops a majority class
    from owning every batch.
    """
    if batch_size < 1 or batches < 0:
        raise ConfigError(f"batch_size must be >= 1 and batches >= 0, got {batch_size}, {batches}")
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ConfigError("cannot sample batches from zero labels")
    classes = np.unique(y)
    members = [np.flatnonzero(y == c) for c in classes]
    slots = rng.integers(len(classes), size=(batches, batch_size))
    out = np.empty_like(slots)
    for c, idx in enumerate(members):
        where = slots == c
        out[where] = idx[rng.integers(len(idx), size=int(where.sum()))]
    return [row.tolist() for row in out]


def _check_inputs(texts: Sequence[str], labels: Sequence[Any], label_names: Sequence[str],
                  multi_label: bool = False) -> None:
    if len(label_names) < 2 or len(set(label_names)) != len(label_names):
        raise ConfigError(f"label_names must hold >= 2 distinct names, got {list(label_names)}")
    if len(texts) != len(labels):
        raise ConfigError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ConfigError("cannot train on zero labelled texts")
    if multi_label:
        if any(isinstance(y, int | np.integer) for y in labels):
            raise ConfigError("a multi-label classifier trains on label sets (lists of label "
                              "indices), got single label ids")
        labels = [int(y) for labels_of in labels for y in labels_of]
    bad = [y for y in labels if not 0 <= int(y) < len(label_names)]
    if bad:
        raise ConfigError(f"label ids must lie in [0, {len(label_names)}), got e.g. {bad[:5]}")


def _param_groups(adapted: AdaptedModel, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: (adapter | head | base) x (decay | no decay for biases and norms)."""
    groups: list[dict[str, Any]] = []
    for params, lr in (
        (adapted.adapter_params, config.lr_adapter),
        (adapted.head_params, config.lr_head),
        (adapted.base_params, config.lr_full),
    ):
        decay = [p for n, p in params.items() if p.ndim > 1 and "norm" not in n.lower()]
        no_decay = [p for n, p in params.items() if not (p.ndim > 1 and "norm" not in n.lower())]
        for members, wd in ((decay, config.weight_decay), (no_decay, 0.0)):
            if members:
                groups.append({"params": members, "lr": lr, "base_lr": lr, "weight_decay": wd})
    return groups


def label_strata(label_sets: Sequence[Sequence[int]], n_labels: int) -> list[int]:
    """One stratum per item for class-balanced sampling of label sets: the item's rarest label
    (by count among ``label_sets``), or ``n_labels`` for an empty set ("none of these")."""
    counts = np.zeros(n_labels, dtype=np.int64)
    for labels in label_sets:
        for label in set(labels):
            counts[int(label)] += 1
    return [min((int(y) for y in labels), key=lambda y: (counts[y], y)) if len(labels)
            else n_labels for labels in label_sets]


def _pos_weights(Y: np.ndarray, device: torch.device) -> torch.Tensor:
    """Per label: negatives / positives, clipped to [1, MAX_POS_WEIGHT] (1 without positives)."""
    positives = Y.sum(axis=0).astype(np.float64)
    ratio = np.where(positives > 0, (len(Y) - positives) / np.maximum(positives, 1), 1.0)
    return torch.tensor(np.clip(ratio, 1.0, MAX_POS_WEIGHT), dtype=torch.float32, device=device)


def _class_weights(labels: Sequence[int], k: int, device: torch.device) -> torch.Tensor:
    """Inverse-frequency weights n / (k_present * count), 1.0 for classes not seen yet."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k).astype(np.float64)
    present = counts > 0
    weights = np.ones(k)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32, device=device)


def trainable_state(adapted: AdaptedModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in adapted.trainable().items()}


def load_trainable_state(
    adapted: AdaptedModel, state: Mapping[str, torch.Tensor], *, skip_head: bool = False
) -> list[str]:
    """Copy matching trained tensors into ``adapted``; return the names that were loaded."""
    groups = (adapted.adapter_params, adapted.base_params)
    targets = {n: p for g in groups for n, p in g.items()}
    if not skip_head:
        targets.update(adapted.head_params)
    loaded = []
    with torch.no_grad():
        for name, param in targets.items():
            source = state.get(name)
            if source is not None and source.shape == param.shape:
                param.copy_(source.to(param.device, param.dtype))
                loaded.append(name)
    return loaded


def _warm_start(
    adapted: AdaptedModel,
    init_from: TextClassifier | str | Path,
    label_names: list[str],
    base_path: str,
    device: torch.device,
    multi_label: bool = False,
) -> dict[str, Any]:
    if isinstance(init_from, TextClassifier):
        previous = init_from
    else:
        from worker.ml.artifacts import load_artifact  # local import: artifacts imports us

        previous = load_artifact(Path(init_from), device=str(device))
    if previous.base_model != base_path:
        raise ConfigError(
            f"warm start from a classifier on base {previous.base_model!r}, but this round "
            f"trains on {base_path!r}; pass warm_start=False to start fresh"
        )
    if previous.adapted.config.to_dict() != adapted.config.to_dict():
        raise ConfigError("warm start needs the same adapter config; pass warm_start=False")
    if previous.multi_label != multi_label:
        raise ConfigError("warm start needs the same task type (single- or multi-label); pass "
                          "warm_start=False")
    same_labels = previous.label_names == label_names
    loaded = load_trainable_state(
        adapted, trainable_state(previous.adapted), skip_head=not same_labels
    )
    return {"event": "warm_start", "tensors": len(loaded), "head_reused": same_labels}


def _init_head(
    adapted: AdaptedModel,
    adapter: AdapterConfig,
    head_init: tuple[np.ndarray, np.ndarray],
    num_labels: int,
) -> dict[str, Any]:
    from worker.ml.classifier import final_head_linear
    from worker.ml.pooling import set_head_linear

    if adapter.pooling != "mean":
        raise ConfigError("head_init (LP-FT) needs adapter pooling='mean', the live head's input")
    set_head_linear(final_head_linear(adapted.model, num_labels), *head_init)
    return {"event": "head_init", "source": "linear probe (live head)"}


def _prior_bias(adapted: AdaptedModel, label_sets: Sequence[Any], n_labels: int
                ) -> dict[str, Any]:
    """A multi-label head that starts from scratch: each label's bias at the log-odds of its
    share of the training sets (clipped to [1/1000, 999/1000]), so it starts at the label's base
    rate instead of 0.5 for every label. Without it, a few dozen steps leave a sparse label's
    bias near 0 and the head proposes almost every label (``docs/results.md``, multi-label)."""
    from worker.ml.classifier import final_head_linear
    from worker.ml.multilabel import label_matrix

    rate = np.clip(label_matrix(label_sets, n_labels).mean(axis=0), 1e-3, 1 - 1e-3)
    linear = final_head_linear(adapted.model, n_labels)
    if linear.bias is not None:
        with torch.no_grad():
            linear.bias.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=linear.bias.dtype))
    return {"event": "head_init", "source": "label base rates (bias at their log-odds)"}


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[int] | Sequence[Sequence[int]],
    *,
    label_names: Sequence[str],
    base_model: str,
    adapter: AdapterConfig,
    config: TrainConfig,
    dev: tuple[Sequence[str], Sequence[Any]] | None = None,
    init_from: TextClassifier | str | Path | None = None,
    reporter: ProgressReporter | None = None,
    head_init: tuple[np.ndarray, np.ndarray] | None = None,
    layer_cache: LowerLayerCache | None = None,
    multi_label: bool = False,
) -> TrainResult:
    """Train ``adapter`` (plus head) on the labelled texts and return the best classifier.

    ``head_init``: ``(W, b)`` of a linear probe on the mean-pooled, L2-normalised embeddings (the
    live head); copied into the classifier before the first step (LP-FT). Needs
    ``adapter.pooling == "mean"`` so the head reads the vector the probe was fitted on.
    ``layer_cache``: where frozen lower-layer outputs are kept (``config.cache_lower_layers``);
    pass one that lives longer than the call (the worker's) to reuse them across rounds. The
    returned classifier scores through it too.
    ``multi_label``: ``labels`` (and dev's) are label sets, the outputs sigmoids (module
    docstring); a multi-label live head's ``(W, b)`` fits ``head_init`` the same way.
    """
    started = time.perf_counter()
    _check_inputs(texts, labels, label_names, multi_label)
    if dev is not None:
        _check_inputs(dev[0], dev[1], label_names, multi_label)
    reporter = reporter or NullReporter()
    names = list(label_names)
    set_seed(config.seed)
    device = resolve_device(config.device)
    precision = make_precision(device, config.precision)
    base_path = resolve_model_path(base_model)
    tokenizer = load_tokenizer(base_path)
    adapted = build_adapted_model(
        load_sequence_classifier(base_path, names, multi_label=multi_label), adapter)
    adapted.model.to(device)
    history: list[dict[str, Any]] = []
    if init_from is not None and config.warm_start:
        history.append(_warm_start(adapted, init_from, names, base_path, device, multi_label))
    if head_init is not None:
        history.append(_init_head(adapted, adapter, head_init, len(names)))
    elif multi_label and not any(h.get("head_reused") for h in history):
        history.append(_prior_bias(adapted, labels, len(names)))
    classifier = TextClassifier(
        adapted,
        tokenizer,
        names,
        base_model=base_path,
        base_fingerprint=model_fingerprint(base_path),
        max_length=config.max_length,
        device=device,
        precision=precision.name,
        multi_label=multi_label,
    )
    if config.cache_lower_layers and classifier.split_layer > 0:
        classifier.use_layer_cache(layer_cache if layer_cache is not None else LowerLayerCache())
    loop = _Loop(adapted, classifier, config, precision, reporter, history)
    dev_metrics = loop.run(texts, labels, dev)
    if multi_label and dev_metrics is not None:
        classifier.set_thresholds(dev_metrics["thresholds"])
    classifier.metadata["train_config"] = config.to_dict()
    classifier.metadata["adapter_config"] = adapter.to_dict()
    return TrainResult(
        classifier=classifier,
        dev_metrics=dev_metrics,
        history=history,
        seconds=time.perf_counter() - started,
        train_seconds=loop.train_seconds,
        trainable_params=adapted.trainable_count(),
        total_params=adapted.total_count(),
    )


class _Loop:
    """The epoch/step loop, split out of :func:`train_classifier` to keep both readable."""

    def __init__(
        self,
        adapted: AdaptedModel,
        classifier: TextClassifier,
        config: TrainConfig,
        precision: Any,
        reporter: ProgressReporter,
        history: list[dict[str, Any]],
    ) -> None:
        self.adapted = adapted
        self.classifier = classifier
        self.config = config
        self.precision = precision
        self.reporter = reporter
        self.history = history
        self.device = classifier.device
        self.optimizer = torch.optim.AdamW(_param_groups(adapted, config))
        self.scaler = precision.make_scaler()
        self.train_seconds = 0.0

    def run(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        dev: tuple[Sequence[str], Sequence[Any]] | None,
    ) -> dict[str, Any] | None:
        config = self.config
        self.texts = list(texts)
        token_ids = encode(self.classifier.tokenizer, texts, config.max_length)
        lengths = [len(ids) for ids in token_ids]
        k = self.classifier.num_labels
        loss_fn: nn.Module
        if self.classifier.multi_label:
            from worker.ml.multilabel import label_matrix

            Y = label_matrix(labels, k)
            targets = torch.tensor(Y, dtype=torch.float32)
            strata = label_strata(labels, k)
            pos_weight = _pos_weights(Y, self.device) if config.class_weighting else None
            loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="sum")
        else:
            targets = torch.tensor([int(y) for y in labels], dtype=torch.long)
            strata = [int(y) for y in labels]
            weights = _class_weights(labels, k, self.device) if config.class_weighting else None
            loss_fn = nn.CrossEntropyLoss(weight=weights, reduction="sum")
        micro_per_epoch = math.ceil(len(texts) / config.micro_batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
        sampled = steps_per_epoch * config.epochs < config.min_steps
        if sampled:  # too few labels for enough steps: class-balanced draws with replacement
            steps_per_epoch = math.ceil(config.min_steps / config.epochs)
            self.history.append(
                {"event": "min_steps_sampling", "steps": steps_per_epoch * config.epochs}
            )
        total = steps_per_epoch * config.epochs
        warmup = warmup_steps(total, config.warmup_ratio)
        clock = StepClock(total)
        rng = np.random.default_rng(config.seed)
        pad_id = int(self.classifier.tokenizer.pad_token_id)  # type: ignore[arg-type]
        self.split = self.classifier.split_layer if self.classifier.layer_cache is not None else 0
        if self.split:
            self._fill_lower_cache(token_ids, lengths, pad_id)
        best: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_metrics: dict[str, Any] | None = None
        stale = 0
        step = 0
        for epoch in range(config.epochs):
            self.adapted.model.train()
            if sampled:
                batches = min_steps_sampler(
                    strata,
                    batch_size=config.micro_batch_size,
                    batches=steps_per_epoch * config.grad_accum,
                    rng=rng,
                )
            else:
                batches = shuffled_bucket_batches(lengths, config.micro_batch_size, rng)
            epoch_loss, seen = 0.0, 0
            for start in range(0, len(batches), config.grad_accum):
                group = batches[start : start + config.grad_accum]
                apply_lr(self.optimizer, step, total, warmup)
                step_started = time.perf_counter()
                loss_value, count = self._step(group, token_ids, targets, pad_id, loss_fn)
                self.train_seconds += time.perf_counter() - step_started
                epoch_loss += loss_value * count
                seen += count
                step += 1
                self.reporter.report(
                    phase=PHASE,
                    step=step,
                    total=total,
                    metrics={
                        "loss": loss_value,
                        "epoch": epoch + 1,
                        "eta_seconds": clock.eta_seconds(step),
                    },
                )
                check_cancelled(self.reporter, PHASE)
            record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "loss": epoch_loss / seen}
            if dev is not None:
                metrics = self._dev_metrics(dev)
                if self.classifier.multi_label:
                    record.update(dev_micro_f1=metrics["micro_f1"],
                                  dev_macro_f1=metrics["macro_f1"])
                    score = (metrics["macro_f1"], metrics["micro_f1"])
                else:
                    record.update(dev_accuracy=metrics["accuracy"],
                                  dev_macro_f1=metrics["macro_f1"])
                    score = (metrics["macro_f1"], metrics["accuracy"])
                if best is None or score > best:
                    best, best_state, best_metrics, stale = (
                        score,
                        trainable_state(self.adapted),
                        metrics,
                        0,
                    )
                else:
                    stale += 1
            self.history.append(record)
            if dev is not None and stale >= config.patience:
                self.history.append({"event": "early_stop", "epoch": epoch + 1})
                break
        if best_state is not None:
            load_trainable_state(self.adapted, best_state)
        self.adapted.model.eval()
        return best_metrics

    def _dev_metrics(self, dev: tuple[Sequence[str], Sequence[Any]]) -> dict[str, Any]:
        """Single-label: :func:`evaluate`. Multi-label: thresholds tuned on the dev
        probabilities, then :func:`worker.ml.multilabel.report` at them (plus ``thresholds``)."""
        probs = self.classifier.predict_proba(dev[0], batch_size=self.config.eval_batch_size)
        names = self.classifier.label_names
        if not self.classifier.multi_label:
            return evaluate(dev[1], probs, names)
        from worker.ml.multilabel import label_matrix, predict_sets, report, tune_thresholds

        Y = label_matrix(dev[1], len(names))
        thresholds = tune_thresholds(probs, Y)
        metrics = report(Y, predict_sets(probs, thresholds), names)
        metrics["thresholds"] = [float(t) for t in thresholds]
        return metrics

    def _fill_lower_cache(self, token_ids: list[list[int]], lengths: list[int], pad_id: int
                          ) -> None:
        """Compute the frozen lower layers' outputs of every training text once (eval mode, no
        gradient); texts already in the cache cost nothing."""
        started = time.perf_counter()
        multiple = 8 if self.device.type == "cuda" else None
        model = self.adapted.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.precision.autocast():
                for indices in sorted_batches(lengths, self.config.eval_batch_size):
                    batch = collate(token_ids, indices, pad_id, multiple).to(self.device)
                    self.classifier.lower_hidden(batch, self.texts, self.split)
        finally:
            model.train(was_training)
        self.history.append({"event": "lower_layer_cache", "split_layer": self.split,
                             "seconds": round(time.perf_counter() - started, 3)})

    def _logits(self, batch: Any) -> torch.Tensor:
        if not self.split:
            return self.adapted.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits
        with torch.no_grad():  # cache hits: the frozen layers ran in _fill_lower_cache
            hidden = self.classifier.lower_hidden(batch, self.texts, self.split)
        with layer_slice(self.adapted.model, self.split), encoder_input_override(
            self.adapted.model, hidden
        ):
            return self.adapted.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits

    def _step(
        self,
        group: list[list[int]],
        token_ids: list[list[int]],
        targets: torch.Tensor,
        pad_id: int,
        loss_fn: nn.Module,
    ) -> tuple[float, int]:
        multiple = 8 if self.device.type == "cuda" else None
        count = sum(len(indices) for indices in group)
        total_loss = 0.0
        for indices in group:
            batch = collate(token_ids, indices, pad_id, multiple).to(self.device)
            with self.precision.autocast():
                logits = self._logits(batch)
            loss = loss_fn(logits.float(), targets[indices].to(self.device)) / count
            total_loss += float(loss.detach())
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        params = list(self.adapted.trainable().values())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, count
