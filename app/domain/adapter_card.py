"""A model version's adapter card (README.md in its artifact directory) for people to read.

The card is YAML front matter plus a prose body written by the worker. The dashboard shows the
front matter as a table and the body as escaped text: the card is data, so it is never turned
into HTML (no markdown renderer, no injection). ``yaml.safe_load`` only builds plain values.
The REST API's reading of the card (front matter as JSON) and the zip download live in
:mod:`app.domain.adapters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from app.config import Settings
from app.db.models import ModelVersion
from app.domain.model_versions import resolve_artifact

CARD_FILE = "README.md"
MAX_CARD_BYTES = 512 * 1024
MAX_TABLE_ROWS = 200


KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "lora": ("r", "alpha", "dropout", "targets", "layers", "unfreeze_last_n"),
    "bottleneck": ("bottleneck_size", "placement", "positions", "activation", "dropout", "layers",
                   "unfreeze_last_n"),
    "ia3": ("targets", "layers", "unfreeze_last_n"),
    "prompt": ("num_virtual_tokens",),
    "full": (),
}
"""The ``AdapterConfig`` fields that mean something for each adapter kind (the card records all
of them; the others are defaults of kinds that were not trained)."""
TARGET_MODULES = {"attention": "query, key, value, attention output",
                  "attention+mlp": "query, key, value, attention output, MLP"}


@dataclass(frozen=True)
class AdapterCardView:
    rows: tuple[tuple[str, str], ...]
    """Flattened front matter: ("adapter_config.r", "8"), ... (only the adapter kind's fields)."""
    body: str
    problem: str | None = None
    summary: tuple[tuple[str, str], ...] = ()
    """What a person wants first: kind, size, target modules, base, labels, metrics."""
    hidden_fields: int = 0
    """adapter_config fields of other adapter kinds left out of ``rows``."""


def read_card(version: ModelVersion, settings: Settings) -> AdapterCardView:
    path = resolve_artifact(version.artifact_path, settings) / CARD_FILE
    if not path.is_file() or path.is_symlink():
        return AdapterCardView((), "", "This version has no adapter card (README.md).")
    if path.stat().st_size > MAX_CARD_BYTES:
        return AdapterCardView((), "", "The adapter card is too large to show.")
    return parse_card_text(path.read_text(encoding="utf-8", errors="replace"))


def parse_card_text(text: str) -> AdapterCardView:
    """Split a card into (front matter rows, body); broken front matter is reported, not raised."""
    if not text.startswith("---\n"):
        return AdapterCardView((), text, "The card has no front matter.")
    end = text.find("\n---", 4)
    if end < 0:
        return AdapterCardView((), text, "The card's front matter is not closed by '---'.")
    body = text[end + 4 :].lstrip("\n")
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        return AdapterCardView((), body, f"The card's front matter is not valid YAML ({exc}).")
    if not isinstance(data, dict):
        return AdapterCardView((), body, "The card's front matter is not a mapping.")
    kind = str(data.get("adapter_type") or (data.get("adapter_config") or {}).get("kind") or "")
    config = data.get("adapter_config")
    hidden = 0
    if isinstance(config, dict) and kind in KIND_FIELDS:
        kept = {k: v for k, v in config.items() if k == "kind" or k in KIND_FIELDS[kind]}
        hidden = len(config) - len(kept)
        data = {**data, "adapter_config": kept}
    rows = tuple(flatten(data))[:MAX_TABLE_ROWS]
    return AdapterCardView(rows, body, summary=card_summary(data), hidden_fields=hidden)


def card_summary(data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The card's front matter as a few readable lines (missing facts are left out)."""
    raw_config = data.get("adapter_config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    kind = str(data.get("adapter_type") or config.get("kind") or "")
    out: list[tuple[str, str]] = []
    if kind:
        out.append(("Adapter", _kind_line(kind, config)))
    if kind in ("lora", "ia3") and config.get("targets") in TARGET_MODULES:
        out.append(("Target modules", TARGET_MODULES[str(config["targets"])]))
    elif kind == "bottleneck" and config.get("positions"):
        out.append(("Inserted after", ", ".join(str(p) for p in config["positions"])))
    if config.get("layers"):
        out.append(("Layers", ", ".join(str(x) for x in config["layers"])))
    base = str(data.get("base_model") or "")
    if base:
        sha = str(data.get("base_model_sha256") or "")
        out.append(("Base model", base.rstrip("/").rsplit("/", 1)[-1]
                    + (f" (sha256 {sha[:12]}…)" if sha else "")))
    tapt = data.get("tapt")
    if isinstance(tapt, dict) and tapt.get("steps"):
        before, after = _scalar(tapt.get("ppl_before")), _scalar(tapt.get("ppl_after"))
        out.append(("TAPT", f"{tapt.get('steps')} steps, perplexity {before} → {after}"))
    if data.get("training_examples") is not None:
        out.append(("Trained on", f"{_int(data['training_examples'])} labels"))
    trainable, total = data.get("trainable_params"), data.get("total_params")
    if isinstance(trainable, int):
        share = ""
        if isinstance(total, int) and total:
            share = f" of {_int(total)} ({trainable / total:.2%})"
        out.append(("Trainable parameters", f"{_int(trainable)}{share}"))
    metrics = data.get("dev_metrics")
    if isinstance(metrics, dict) and metrics:
        names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "ece": "ECE",
                 "micro_f1": "micro-F1", "subset_accuracy": "subset accuracy",
                 "hamming_loss": "Hamming loss"}
        shown = [f"{names[k]} {v:.3f}" for k, v in metrics.items()
                 if k in names and isinstance(v, int | float)]
        if isinstance(metrics.get("n"), int):
            shown.append(f"on {_int(metrics['n'])} dev items")
        if shown:
            out.append(("Dev metrics", ", ".join(shown)))
    thresholds = data.get("thresholds")
    if isinstance(thresholds, dict) and thresholds:  # a multi-label adapter's
        out.append(("Thresholds", ", ".join(f"{name} {_scalar(value)}"
                                            for name, value in thresholds.items())))
    labels = data.get("labels")
    if isinstance(labels, list) and labels:
        out.append(("Labels", f"{len(labels)}: " + ", ".join(str(x) for x in labels)))
    if data.get("created_at"):
        out.append(("Created", str(data["created_at"])))
    return tuple(out)


def _kind_line(kind: str, config: dict[str, Any]) -> str:
    if kind == "lora":
        return f"LoRA, rank {config.get('r', '?')}, alpha {_scalar(config.get('alpha'))}"
    if kind == "bottleneck":
        return (f"Bottleneck, hidden size {config.get('bottleneck_size', '?')}, "
                f"{config.get('placement', 'serial')}")
    if kind == "prompt":
        return f"Prompt tuning, {config.get('num_virtual_tokens', '?')} virtual tokens"
    if kind == "ia3":
        return "IA3 (learned rescaling)"
    if kind == "full":
        return "Full fine-tuning (no adapter)"
    return kind


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else _scalar(value)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings become dotted keys; lists of scalars are joined with commas."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, "—")]
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value) or "—")]
        rows = []
        for i, item in enumerate(value):
            rows.extend(flatten(item, f"{prefix}[{i}]"))
        return rows
    return [(prefix, _scalar(value))]


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
