"""Training from cached frozen lower layers: the same gradients and the same trained weights as
running every layer, and the cache reused across rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from contract.adapter_config import AdapterConfig
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert
from worker.ml.adapters.build import build_adapted_model
from worker.ml.batching import collate, encode
from worker.ml.classifier import TextClassifier
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.models import load_sequence_classifier, load_tokenizer, model_fingerprint
from worker.ml.progress import NullReporter
from worker.ml.runtime import make_precision
from worker.ml.training import TrainConfig, _Loop, train_classifier, trainable_state

UPPER = AdapterConfig(kind="lora", layers=[2, 3], dropout=0.0)


@pytest.fixture(scope="module")
def deterministic_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer tiny BERT without dropout, so both paths compute the same function."""
    path = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-4"), num_layers=4, seed=3)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _classifier(base: Path, adapter: AdapterConfig) -> TextClassifier:
    torch.manual_seed(0)
    adapted = build_adapted_model(load_sequence_classifier(str(base), LABEL_NAMES), adapter)
    return TextClassifier(adapted, load_tokenizer(str(base)), LABEL_NAMES,
                          base_model=str(base), base_fingerprint=model_fingerprint(str(base)),
                          max_length=32, device="cpu", precision="fp32")


def _gradients(base: Path, texts: list[str], labels: list[int], *, cached: bool
               ) -> dict[str, torch.Tensor]:
    classifier = _classifier(base, UPPER)
    if cached:
        classifier.use_layer_cache(LowerLayerCache())
    config = TrainConfig(max_length=32, cache_lower_layers=cached)
    loop = _Loop(classifier.adapted, classifier, config, make_precision(classifier.device, "fp32"),
                 NullReporter(), [])
    loop.texts = texts
    token_ids = encode(classifier.tokenizer, texts, 32)
    pad_id = int(classifier.tokenizer.pad_token_id)  # type: ignore[arg-type]
    loop.split = classifier.split_layer if cached else 0
    if cached:
        loop._fill_lower_cache(token_ids, [len(t) for t in token_ids], pad_id)
    classifier.model.train()
    batch = collate(token_ids, list(range(len(texts))), pad_id, None)
    loss = nn.CrossEntropyLoss()(loop._logits(batch), torch.tensor(labels))
    loss.backward()
    return {name: p.grad.detach().clone() for name, p in classifier.adapted.trainable().items()
            if p.grad is not None}


def test_cached_lower_layers_give_the_same_gradients(deterministic_bert: Path) -> None:
    texts, labels = make_corpus(12, seed=5)
    plain = _gradients(deterministic_bert, texts, labels, cached=False)
    cached = _gradients(deterministic_bert, texts, labels, cached=True)
    assert plain.keys() == cached.keys() and len(plain) > 4  # LoRA A/B of layers 2-3 + head
    moving = [name for name, grad in plain.items() if grad.abs().sum() > 0]
    assert any("lora_B" in name for name in moving)  # lora_A starts with zero gradient (B = 0)
    for name, grad in plain.items():
        torch.testing.assert_close(cached[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_cached_round_trains_the_same_weights_and_reuses_the_cache(
    deterministic_bert: Path,
) -> None:
    texts, labels = make_corpus(30, seed=2)
    dev = make_corpus(9, seed=9)
    config = {"epochs": 2, "batch_size": 8, "max_length": 32, "seed": 4, "device": "cpu",
              "precision": "fp32"}
    shared = LowerLayerCache()
    runs = {}
    for cached in (False, True):
        runs[cached] = train_classifier(
            texts, labels, label_names=LABEL_NAMES, base_model=str(deterministic_bert),
            adapter=UPPER, config=TrainConfig(**config, cache_lower_layers=cached),
            dev=dev, layer_cache=shared if cached else None,
        )
    plain, cached_state = (trainable_state(runs[c].classifier.adapted) for c in (False, True))
    for name, value in plain.items():
        torch.testing.assert_close(cached_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
    events = [h for h in runs[True].history if h.get("event") == "lower_layer_cache"]
    assert events and events[0]["split_layer"] == 2
    assert runs[False].classifier.layer_cache is None
    assert len(shared) == len(set(texts) | set(dev[0]))  # training texts and dev texts
    misses = shared.misses
    train_classifier(texts[:20], labels[:20], label_names=LABEL_NAMES,
                     base_model=str(deterministic_bert), adapter=UPPER,
                     config=TrainConfig(**config), layer_cache=shared)
    assert shared.misses == misses  # a later round on known texts runs no lower layer


def test_adapters_on_every_layer_train_without_the_cache(deterministic_bert: Path) -> None:
    texts, labels = make_corpus(12, seed=6)
    result = train_classifier(
        texts, labels, label_names=LABEL_NAMES, base_model=str(deterministic_bert),
        adapter=AdapterConfig(kind="lora"), config=TrainConfig(epochs=1, max_length=32),
    )
    assert result.classifier.layer_cache is None
    assert not [h for h in result.history if h.get("event") == "lower_layer_cache"]


def test_the_shared_cache_reads_its_budget_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contract.errors import ConfigError
    from worker.ml.layer_cache import SHARED_MAX_BYTES_ENV, shared_cache

    shared_cache.cache_clear()
    monkeypatch.setenv(SHARED_MAX_BYTES_ENV, "64")
    try:
        cache = shared_cache()
        assert cache.max_bytes == 64 * 1024**2 and cache.dtype == torch.float16
        assert shared_cache() is cache  # one per process
        shared_cache.cache_clear()
        monkeypatch.setenv(SHARED_MAX_BYTES_ENV, "lots")
        with pytest.raises(ConfigError, match="megabytes"):
            shared_cache()
    finally:
        shared_cache.cache_clear()
