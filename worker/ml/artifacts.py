"""Adapter artifacts: a versioned directory of safetensors + JSON (+ README card), and back.

Layout::

    tapestry.json            format version, adapter kind/config, labels, base model + sha256
    labels.json              label names and ids
    README.md                adapter card (YAML front matter)
    tokenizer/               the tokenizer files, copied so the artifact is self-describing
    adapter/                 lora/ia3/prompt: peft's own save_pretrained output (head included
                             via modules_to_save) -> PeftModel.from_pretrained loads it
    adapter/bottleneck.safetensors + head.safetensors   bottleneck adapters and the head
    base_delta.safetensors   hybrid mode only: the unfrozen encoder blocks
    model/                   full fine-tuning only: the whole model (save_pretrained)

A multi-label classifier's ``tapestry.json`` and ``labels.json`` add ``task_type: "multi_label"``
and ``thresholds`` (one per label, in label order); its card lists them by label name.

Loading never unpickles: only safetensors and JSON are read (``torch.load`` is never used here).
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from contract.adapter_config import AdapterConfig
from contract.errors import MLError
from worker.ml.adapters.build import PEFT_KINDS, AdaptedModel, build_adapted_model
from worker.ml.cards import AdapterCard, parse_card, tapt_summary
from worker.ml.classifier import TextClassifier
from worker.ml.models import load_sequence_classifier, load_tokenizer, model_fingerprint

FORMAT_VERSION = 1
META_FILE = "tapestry.json"
CARD_FILE = "README.md"


def build_card(
    classifier: TextClassifier,
    *,
    dev_metrics: dict[str, Any] | None = None,
    training_examples: int | None = None,
    **extra: Any,
) -> AdapterCard:
    """An adapter card filled from the classifier (TAPT record read from the base dir if any)."""
    adapted = classifier.adapted
    train_config = dict(classifier.metadata.get("train_config", {}))
    return AdapterCard(
        base_model=classifier.base_model,
        base_model_sha256=classifier.base_fingerprint,
        adapter_type=adapted.config.kind,
        adapter_config=adapted.config.to_dict(),
        labels=list(classifier.label_names),
        train_config=train_config,
        seeds={"train": int(train_config.get("seed", 0))},
        dev_metrics=dev_metrics,
        tapt=tapt_summary(classifier.base_model) if Path(classifier.base_model).is_dir() else None,
        trainable_params=adapted.trainable_count(),
        total_params=adapted.total_count(),
        training_examples=training_examples,
        task_type="multi_label" if classifier.multi_label else "single_label",
        thresholds=named_thresholds(classifier),
        extra=extra,
    )


def named_thresholds(classifier: TextClassifier) -> dict[str, float] | None:
    """A multi-label classifier's thresholds by label name (4 decimals); None: single-label."""
    if not classifier.multi_label or classifier.thresholds is None:
        return None
    return {name: round(float(value), 4)
            for name, value in zip(classifier.label_names, classifier.thresholds, strict=True)}


def _task_fields(classifier: TextClassifier) -> dict[str, Any]:
    if not classifier.multi_label:
        return {}
    assert classifier.thresholds is not None
    return {"task_type": "multi_label",
            "thresholds": [round(float(t), 4) for t in classifier.thresholds]}


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def save_artifact(
    classifier: TextClassifier, out_dir: Path, *, card: AdapterCard | dict[str, Any] | None = None
) -> Path:
    """Write the artifact into ``out_dir`` (created; must not exist or be empty)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"artifact directory {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    adapted = classifier.adapted
    kind = adapted.config.kind
    meta = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "adapter_config": adapted.config.to_dict(),
        "label_names": classifier.label_names,
        "base_model": classifier.base_model,
        "base_model_sha256": classifier.base_fingerprint,
        "max_length": classifier.max_length,
        "train_config": classifier.metadata.get("train_config", {}),
        **_task_fields(classifier),
    }
    _write_json(out_dir / META_FILE, meta)
    labels = {
        "labels": classifier.label_names,
        "label2id": {n: i for i, n in enumerate(classifier.label_names)},
        **_task_fields(classifier),
    }
    _write_json(out_dir / "labels.json", labels)
    classifier.tokenizer.save_pretrained(str(out_dir / "tokenizer"))
    if kind == "full":
        adapted.hf_model.save_pretrained(str(out_dir / "model"), safe_serialization=True)
    elif kind in PEFT_KINDS:
        peft_config = adapted.model.peft_config["default"]  # type: ignore[union-attr, index]
        peft_config.base_model_name_or_path = classifier.base_model  # type: ignore[union-attr]
        adapted.model.save_pretrained(str(out_dir / "adapter"))  # type: ignore[operator]
    else:
        assert adapted.bottleneck is not None
        (out_dir / "adapter").mkdir()
        save_file(
            _cpu(adapted.bottleneck.state_dict()), str(out_dir / "adapter/bottleneck.safetensors")
        )
        save_file(_cpu(dict(adapted.head_params)), str(out_dir / "adapter/head.safetensors"))
    if adapted.base_params and kind != "full":
        save_file(_cpu(dict(adapted.base_params)), str(out_dir / "base_delta.safetensors"))
    if card is None:
        card = build_card(classifier)
    elif isinstance(card, dict):
        card = _merge_card(build_card(classifier), card)
    (out_dir / CARD_FILE).write_text(card.render(), encoding="utf-8")
    return out_dir


def _merge_card(card: AdapterCard, overrides: dict[str, Any]) -> AdapterCard:
    data = card.front_matter()
    known = set(data)
    for key, value in overrides.items():
        if key in known:
            data[key] = value
        else:
            data["extra"][key] = value
    return AdapterCard.from_dict(data)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise MLError(f"{path} is not a Tapestry artifact (no {META_FILE})")
    meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise MLError(f"artifact format {meta.get('format')!r} is not {FORMAT_VERSION}")
    return meta


def read_card(path: Path) -> dict[str, Any]:
    """The adapter card's front matter."""
    return parse_card((Path(path) / CARD_FILE).read_text(encoding="utf-8"))


def is_multi_label(meta: dict[str, Any]) -> bool:
    """Whether an artifact's ``tapestry.json`` describes a multi-label classifier."""
    task_type = meta.get("task_type", "single_label")
    if task_type not in ("single_label", "multi_label"):
        raise MLError(f"artifact task_type {task_type!r} is unknown")
    if task_type == "multi_label" and len(meta.get("thresholds") or []) != len(
            meta["label_names"]):
        raise MLError("a multi-label artifact needs one threshold per label")
    return bool(task_type == "multi_label")


def load_artifact(
    path: Path, *, device: str = "auto", base_model: str | None = None, verify_base: bool = True
) -> TextClassifier:
    """Rebuild the classifier from an artifact directory (safetensors + JSON only).

    ``base_model`` overrides the recorded base path (e.g. the artifact store moved); with
    ``verify_base`` its weights must hash to the recorded sha256.
    """
    path = Path(path)
    meta = read_meta(path)
    config = AdapterConfig.from_dict(meta["adapter_config"])
    labels = list(meta["label_names"])
    multi_label = is_multi_label(meta)
    base = base_model or meta["base_model"]
    tokenizer = load_tokenizer(path / "tokenizer")
    if config.kind == "full":
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path / "model"), dtype=torch.float32
        )
        adapted = build_adapted_model(model, config)
    else:
        if verify_base and model_fingerprint(base) != meta["base_model_sha256"]:
            raise MLError(
                f"base model {base} does not match the artifact's sha256 "
                f"{meta['base_model_sha256'][:12]}…; pass the right base_model"
            )
        model = load_sequence_classifier(base, labels, multi_label=multi_label)
        adapted = build_adapted_model(model, config)
        _load_weights(adapted, path)
    classifier = TextClassifier(
        adapted,
        tokenizer,
        labels,
        base_model=base,
        base_fingerprint=meta["base_model_sha256"],
        max_length=int(meta["max_length"]),
        device=device,
        multi_label=multi_label,
        thresholds=meta["thresholds"] if multi_label else None,
    )
    classifier.metadata["train_config"] = dict(meta.get("train_config", {}))
    classifier.metadata["adapter_config"] = config.to_dict()
    return classifier


def _copy_into(params: dict[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise MLError(f"artifact lacks tensors {missing[:5]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])


def _load_weights(adapted: AdaptedModel, path: Path) -> None:
    delta = path / "base_delta.safetensors"
    if adapted.base_params:
        _copy_into(adapted.base_params, load_file(str(delta)))
    if adapted.config.kind in PEFT_KINDS:
        from peft import set_peft_model_state_dict

        weights = path / "adapter" / "adapter_model.safetensors"
        if not weights.is_file():
            raise MLError(f"{weights} is missing (only safetensors artifacts are loaded)")
        result = set_peft_model_state_dict(adapted.model, load_file(str(weights)))
        # prompt tuning: peft loads "prompt_embeddings" itself yet still lists it as unexpected
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if k != "prompt_embeddings"]
        if unexpected:
            raise MLError(f"adapter weights do not fit the model: {unexpected[:5]}")
        return
    assert adapted.bottleneck is not None
    adapted.bottleneck.load_state_dict(load_file(str(path / "adapter/bottleneck.safetensors")))
    _copy_into(adapted.head_params, load_file(str(path / "adapter/head.safetensors")))


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifact(
    classifier: TextClassifier, target: Path, *, card: AdapterCard | dict[str, Any] | None = None
) -> Path:
    """Write atomically: save into a temp dir next to ``target``, fsync, rename into place.

    A crash at any point leaves either no ``target`` or a complete one (plus a stray temp dir
    whose name starts with a dot, safe to delete).
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; artifact versions are written once")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    save_artifact(classifier, temp, card=card)
    _fsync_tree(temp)
    os.rename(temp, target)
    _fsync_dir(target.parent)
    return target


def zip_artifact(path: Path, destination: Path | None = None) -> Path:
    """Zip the artifact directory (for REST download); return the zip's path."""
    path = Path(path)
    read_meta(path)
    destination = destination or path.parent / f"{path.name}.zip"
    temp = destination.with_name(destination.name + ".part")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            archive.write(file, arcname=f"{path.name}/{file.relative_to(path).as_posix()}")
    os.replace(temp, destination)
    return destination
