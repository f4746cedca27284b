"""LP-FT: the adapter's head starts as the live head (same pooled vector, same weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contract.adapter_config import AdapterConfig
from contract.errors import ConfigError
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert
from worker.ml.adapters.build import build_adapted_model
from worker.ml.classifier import final_head_linear
from worker.ml.live_head import LiveHead
from worker.ml.models import load_sequence_classifier, load_tokenizer
from worker.ml.sentence_encoder import SentenceEncoder
from worker.ml.training import TrainConfig, _init_head, _Loop, train_classifier


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("lpft-bert"))


@pytest.fixture(scope="module")
def probe(tiny: Path) -> tuple[LiveHead, list[str], list[int]]:
    texts, labels = make_corpus(30, seed=5)
    emb = SentenceEncoder(str(tiny), max_length=32).embed(texts)
    head = LiveHead().fit(emb, np.asarray(labels), len(LABEL_NAMES))
    return head, texts, labels


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_mean_pooled_head_initialised_from_the_live_head_reproduces_its_probabilities(
    tiny: Path, probe: tuple[LiveHead, list[str], list[int]], kind: str
) -> None:
    head, texts, _ = probe
    W, b = head.linear_weights()
    adapter = AdapterConfig(kind=kind, pooling="mean")  # type: ignore[arg-type]
    adapted = build_adapted_model(load_sequence_classifier(str(tiny), LABEL_NAMES), adapter)
    _init_head(adapted, adapter, (W, b), len(LABEL_NAMES))
    linear = final_head_linear(adapted.model, len(LABEL_NAMES))
    np.testing.assert_allclose(linear.weight.detach().numpy(), W, rtol=0, atol=1e-6)
    np.testing.assert_allclose(linear.bias.detach().numpy(), b, rtol=0, atol=1e-6)
    tokenizer = load_tokenizer(str(tiny))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    adapted.model.eval()
    with torch.no_grad():
        logits = adapted.model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits
    got = torch.softmax(logits, dim=-1).numpy()
    emb = SentenceEncoder(str(tiny), max_length=32).embed(texts)
    np.testing.assert_allclose(got, head.predict_proba(emb), atol=1e-4)


def test_train_classifier_starts_from_the_live_head_weights(
    tiny: Path, probe: tuple[LiveHead, list[str], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    head, texts, labels = probe
    W, b = head.linear_weights()
    seen: dict[str, Any] = {}
    original = _Loop.run

    def spy(self: _Loop, *args: Any, **kwargs: Any) -> Any:
        linear = final_head_linear(self.adapted.model, len(LABEL_NAMES))
        seen["W"] = linear.weight.detach().clone().numpy()
        seen["b"] = linear.bias.detach().clone().numpy()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_Loop, "run", spy)
    result = train_classifier(
        texts, labels, label_names=LABEL_NAMES, base_model=str(tiny),
        adapter=AdapterConfig(kind="lora", pooling="mean"),
        config=TrainConfig(epochs=1, batch_size=8, max_length=32, device="cpu"),
        head_init=(W, b),
    )
    np.testing.assert_allclose(seen["W"], W, atol=1e-6)  # before the first optimizer step
    np.testing.assert_allclose(seen["b"], b, atol=1e-6)
    assert {"event": "head_init", "source": "linear probe (live head)"} in result.history
    after = final_head_linear(result.classifier.model, len(LABEL_NAMES)).weight.detach().numpy()
    assert not np.allclose(after, W)  # and then it trains


def test_head_init_needs_mean_pooling(tiny: Path, probe: tuple[LiveHead, list[str], list[int]]
                                      ) -> None:
    W, b = probe[0].linear_weights()
    adapter = AdapterConfig(kind="lora")
    adapted = build_adapted_model(load_sequence_classifier(str(tiny), LABEL_NAMES), adapter)
    with pytest.raises(ConfigError, match="pooling='mean'"):
        _init_head(adapted, adapter, (W, b), len(LABEL_NAMES))
