"""The adapters, the lower-layer cache and masked-only MLM work beyond BERT.

Tiny random RoBERTa, DistilBERT, DeBERTa-v2 and ELECTRA models (2 layers, hidden 32) share the
toy WordPiece tokenizer; what is tested is that layers, projections, heads and MLM heads are
found generically and that save/reload and caching reproduce predictions exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    PretrainedConfig,
    RobertaConfig,
)

from contract.adapter_config import AdapterConfig
from tests.worker.ml.tiny import make_tokenizer, vocabulary
from worker.ml.artifacts import load_artifact, save_artifact
from worker.ml.layer_cache import LowerLayerCache
from worker.ml.masking import corrupt, select_positions
from worker.ml.mlm_loss import masked_lm_loss_sum
from worker.ml.models import load_masked_lm
from worker.ml.training import TrainConfig, train_classifier

V = len(vocabulary())
COMMON = {"vocab_size": V, "pad_token_id": 0}
CONFIGS: dict[str, PretrainedConfig] = {
    "roberta": RobertaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        type_vocab_size=1,
        **COMMON,
    ),
    "distilbert": DistilBertConfig(
        dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=80, **COMMON
    ),
    "deberta-v2": DebertaV2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=16,
        max_relative_positions=32,
        type_vocab_size=0,
        **COMMON,
    ),
    "electra": ElectraConfig(
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        **COMMON,
    ),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def arch_model(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(CONFIGS[request.param]).save_pretrained(str(path))
    make_tokenizer(path)
    return path


@pytest.mark.parametrize(
    "adapter",
    [
        AdapterConfig(kind="lora", layers=[1], targets="attention+mlp"),
        AdapterConfig(kind="bottleneck", placement="parallel", layers=[1]),
        AdapterConfig(kind="ia3", layers=[1]),
    ],
    ids=["lora", "bottleneck", "ia3"],
)
def test_adapters_cache_and_reload_across_architectures(
    arch_model, corpus, label_names, tmp_path, adapter
):
    texts, labels = corpus
    result = train_classifier(
        texts[:24],
        labels[:24],
        label_names=label_names,
        base_model=str(arch_model),
        adapter=adapter,
        config=TrainConfig(epochs=1, batch_size=8, lr_adapter=5e-3),
    )
    classifier = result.classifier
    assert 0 < result.trainable_params < result.total_params
    full = classifier.score(texts[:20], batch_size=6)
    classifier.use_layer_cache(LowerLayerCache())
    assert classifier.split_layer == 1
    np.testing.assert_allclose(
        classifier.score(texts[:20], batch_size=6).probs, full.probs, atol=1e-5
    )
    np.testing.assert_allclose(
        classifier.score(texts[:20], batch_size=4).probs, full.probs, atol=1e-5
    )
    reloaded = load_artifact(save_artifact(classifier, tmp_path / "a"), device="cpu")
    np.testing.assert_allclose(reloaded.predict_proba(texts[:20]), full.probs, atol=1e-6)
    badge = classifier.head_gradient_embeddings(texts[:3])
    assert badge.shape[0] == 3 and badge.shape[1] % 3 == 0


def test_masked_only_mlm_loss_across_architectures(arch_model):
    model, _ = load_masked_lm(arch_model)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (2, 10), generator=generator)
    mask = torch.ones_like(ids)
    inputs, labels = corrupt(ids, select_positions(mask.bool(), 0.2, generator), 4, V, generator)
    with torch.no_grad():
        fast, _ = masked_lm_loss_sum(model, inputs, mask, labels, masked_only=True)
        full, _ = masked_lm_loss_sum(model, inputs, mask, labels, masked_only=False)
    assert torch.allclose(fast, full, rtol=1e-5)
