"""Each adapter kind trains, keeps the base frozen, saves, reloads and reproduces predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from contract.adapter_config import AdapterConfig
from worker.ml.artifacts import (
    load_artifact,
    read_card,
    save_artifact,
    write_artifact,
    zip_artifact,
)
from worker.ml.training import TrainConfig, train_classifier

FAST = TrainConfig(epochs=2, batch_size=8, lr_head=5e-3, lr_adapter=5e-3, seed=3)
KINDS = [
    AdapterConfig(kind="lora"),
    AdapterConfig(kind="lora", targets="attention+mlp", layers=[1], unfreeze_last_n=1),
    AdapterConfig(kind="bottleneck", placement="serial"),
    AdapterConfig(kind="bottleneck", placement="parallel", positions=("ffn",), layers=[1]),
    AdapterConfig(kind="ia3", targets="attention+mlp"),
    AdapterConfig(kind="prompt", num_virtual_tokens=4),
    AdapterConfig(kind="full"),
]


def _base_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


ADAPTER_MARKERS = ("lora_", "ia3_", "modules_to_save", "original_module", "tapestry_", "prompt")


def _changed_base_weights(model: torch.nn.Module, base: dict[str, torch.Tensor]) -> set[str]:
    """Checkpoint names of encoder weights (pooler excluded: it is head) that differ now."""
    current = {}
    for name, param in model.named_parameters():
        if any(marker in name for marker in ADAPTER_MARKERS):
            continue
        current[name.removeprefix("bert.").replace(".base_layer.", ".")] = param.detach().cpu()
    compared = [n for n in base if not n.startswith("pooler.") and n in current]
    assert len(compared) >= len(base) - 2, "base weights not found under their names"
    return {n for n in compared if not torch.equal(current[n], base[n])}


@pytest.mark.parametrize("adapter", KINDS, ids=lambda c: f"{c.kind}-{c.placement}-{c.layers}")
def test_adapter_trains_freezes_saves_and_reloads(
    tiny_bert, corpus, label_names, tmp_path, adapter
):
    texts, labels = corpus
    result = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=adapter,
        config=FAST,
    )
    classifier = result.classifier
    assert result.trainable_params > 0
    assert result.history[-1]["step"] == 2 * math.ceil(len(texts) / FAST.batch_size)

    changed = _changed_base_weights(classifier.adapted.hf_model, _base_weights(tiny_bert))
    if adapter.kind == "full":
        assert any(name.startswith("encoder.layer.0.") for name in changed)
    elif adapter.unfreeze_last_n:
        assert changed and all(name.startswith("encoder.layer.1.") for name in changed)
    else:
        assert not changed, f"frozen base weights changed: {sorted(changed)[:5]}"

    probs = classifier.predict_proba(texts[:12])
    assert probs.shape == (12, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    out = save_artifact(classifier, tmp_path / "v1")
    reloaded = load_artifact(out, device="cpu")
    np.testing.assert_allclose(reloaded.predict_proba(texts[:12]), probs, atol=1e-6)
    assert reloaded.label_names == label_names
    card = read_card(out)
    assert card["adapter_type"] == adapter.kind and card["labels"] == label_names
    assert card["base_model_sha256"] == classifier.base_fingerprint
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))


def test_adapter_parameters_change_in_training(tiny_bert, corpus, label_names):
    texts, labels = corpus
    adapter = AdapterConfig(kind="bottleneck")
    result = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=adapter,
        config=FAST,
    )
    ups = [p for n, p in result.classifier.adapted.adapter_params.items() if ".up." in n]
    assert ups and any(p.abs().sum() > 0 for p in ups), (
        "zero-initialised up-projections stayed zero"
    )


def test_peft_loads_lora_artifact_unaided(tiny_bert, corpus, label_names, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, labels = corpus
    result = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(kind="lora"),
        config=FAST,
    )
    out = write_artifact(result.classifier, tmp_path / "versions" / "3")
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3)
    model = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    encoded = tokenizer(texts[:5], padding=True, return_tensors="pt")
    with torch.inference_mode():
        peft_probs = torch.softmax(model(**encoded).logits, dim=-1).numpy()
    ours = result.classifier.predict_proba(texts[:5])
    np.testing.assert_allclose(peft_probs, ours, atol=1e-5)
    assert not list((tmp_path / "versions").glob(".*tmp*"))
    archive = zip_artifact(out)
    import zipfile

    names = zipfile.ZipFile(archive).namelist()
    assert "3/adapter/adapter_model.safetensors" in names and "3/README.md" in names


def test_write_artifact_refuses_to_overwrite(tiny_bert, corpus, label_names, tmp_path):
    texts, labels = corpus
    result = train_classifier(
        texts[:12],
        labels[:12],
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(kind="lora"),
        config=TrainConfig(epochs=1, batch_size=4),
    )
    target = write_artifact(result.classifier, tmp_path / "v1")
    with pytest.raises(FileExistsError):
        write_artifact(result.classifier, target)


def test_warm_start_continues_from_saved_state(tiny_bert, corpus, label_names, tmp_path):
    texts, labels = corpus
    first = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(kind="lora"),
        config=FAST,
    )
    out = save_artifact(first.classifier, tmp_path / "round1")
    zero_lr = TrainConfig(epochs=1, batch_size=8, lr_adapter=1e-12, lr_head=1e-12, seed=9)
    warm = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(kind="lora"),
        config=zero_lr,
        init_from=out,
    )
    assert warm.history[0]["event"] == "warm_start" and warm.history[0]["head_reused"]
    np.testing.assert_allclose(
        warm.classifier.predict_proba(texts[:8]),
        first.classifier.predict_proba(texts[:8]),
        atol=1e-5,
    )
    fresh = train_classifier(
        texts,
        labels,
        label_names=label_names,
        base_model=str(tiny_bert),
        adapter=AdapterConfig(kind="lora"),
        config=TrainConfig(**{**zero_lr.to_dict(), "warm_start": False}),
        init_from=out,
    )
    assert not np.allclose(
        fresh.classifier.predict_proba(texts[:8]),
        first.classifier.predict_proba(texts[:8]),
        atol=1e-4,
    )
