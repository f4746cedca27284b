"""Training loop behaviour: best-epoch restore, class weights, progress and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.ml.adapters.config import AdapterConfig
from worker.ml.errors import Cancelled
from worker.ml.evaluation import evaluate
from worker.ml.progress import RecordingReporter
from worker.ml.training import TrainConfig, _class_weights, train_classifier


def test_early_stopping_keeps_the_best_epoch(tiny_bert, corpus, label_names):
    texts, labels = corpus
    dev_texts, dev_labels = texts[:15], labels[:15]
    result = train_classifier(
        texts[15:],
        labels[15:],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        dev=(dev_texts, dev_labels),
        config=TrainConfig(epochs=6, batch_size=8, patience=2, lr_adapter=5e-3, lr_head=5e-3),
    )
    epochs = [h for h in result.history if "dev_macro_f1" in h]
    assert result.dev_metrics is not None and epochs
    best = max(h["dev_macro_f1"] for h in epochs)
    assert result.dev_metrics["macro_f1"] == pytest.approx(best)
    again = evaluate(dev_labels, result.classifier.predict_proba(dev_texts), label_names)
    assert again["macro_f1"] == pytest.approx(best)  # the best epoch's weights were restored
    if any(h.get("event") == "early_stop" for h in result.history):
        assert len(epochs) < 6


def test_class_weights_are_inverse_frequency():
    weights = _class_weights([0, 0, 0, 1], 3, torch.device("cpu"))
    # n / (classes present * count): 4 / (2 * 3), 4 / (2 * 1); class 2 unseen -> 1
    np.testing.assert_allclose(weights.numpy(), [4 / 6, 2.0, 1.0], rtol=1e-6)


def test_class_weighting_trains(tiny_bert, corpus, label_names):
    texts, labels = corpus
    result = train_classifier(
        texts[:20],
        labels[:20],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=1, batch_size=4, class_weighting=True),
    )
    assert np.isfinite(result.history[-1]["loss"])


def test_progress_is_reported_and_cancellation_stops(tiny_bert, corpus, label_names):
    texts, labels = corpus
    reporter = RecordingReporter()
    train_classifier(
        texts[:16],
        labels[:16],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(),
        config=TrainConfig(epochs=2, batch_size=8),
        reporter=reporter,
    )
    steps = [e["step"] for e in reporter.events]
    assert steps == [1, 2, 3, 4] and {e["total"] for e in reporter.events} == {4}
    assert {"loss", "eta_seconds"} <= set(reporter.events[-1]["metrics"])
    with pytest.raises(Cancelled):
        train_classifier(
            texts[:16],
            labels[:16],
            label_names=label_names,
            base_model=str(tiny_bert),
            adapter=AdapterConfig(),
            config=TrainConfig(epochs=2, batch_size=8),
            reporter=RecordingReporter(cancel_after=2),
        )


def test_gradient_accumulation_matches_the_big_batch(tiny_bert, corpus, label_names):
    texts, labels = corpus
    kwargs = dict(
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(dropout=0.0, kind="bottleneck"),
    )
    common = dict(epochs=1, batch_size=8, seed=4)
    one = train_classifier(texts[:16], labels[:16], config=TrainConfig(**common), **kwargs)
    accum = train_classifier(
        texts[:16], labels[:16], config=TrainConfig(**common, grad_accum=2), **kwargs
    )
    assert one.history[-1]["step"] == accum.history[-1]["step"] == 2
    assert one.history[-1]["loss"] == pytest.approx(accum.history[-1]["loss"], rel=0.2)
