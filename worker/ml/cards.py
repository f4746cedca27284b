"""Adapter cards: a README.md with YAML front matter that makes a training run reproducible.

The front matter records the base model and its sha256, TAPT steps and perplexities, adapter type
and hyperparameters, seeds, labels, dev metrics and library versions; the body says the same in
prose for people browsing an artifact store.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contract.errors import MLError

LIBRARIES = ("torch", "transformers", "peft", "safetensors", "numpy", "tokenizers")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def tapt_summary(base_model_dir: str | Path) -> dict[str, Any] | None:
    """The TAPT record of a base produced by :func:`worker.ml.tapt.run_tapt`, if it is one."""
    record = Path(base_model_dir) / "tapt.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text(encoding="utf-8"))
    keys = ("steps", "ppl_before", "ppl_after", "best_step", "base_model", "seconds")
    return {key: data.get(key) for key in keys}


@dataclass
class AdapterCard:
    """Everything needed to reproduce (and judge) one trained adapter."""

    base_model: str
    base_model_sha256: str
    adapter_type: str
    adapter_config: dict[str, Any]
    labels: list[str]
    train_config: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    dev_metrics: dict[str, Any] | None = None
    tapt: dict[str, Any] | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    training_examples: int | None = None
    task_type: str = "single_label"
    thresholds: dict[str, float] | None = None
    """Multi-label only: each label's decision threshold (on when its sigmoid reaches it)."""
    library_versions: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def front_matter(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def render(self) -> str:
        front = yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True)
        lines = [
            "---",
            front.rstrip(),
            "---",
            "",
            f"# {self.adapter_type} adapter on `{Path(self.base_model).name}`",
            "",
            f"Labels ({len(self.labels)}): {', '.join(self.labels)}.",
            "",
        ]
        if self.tapt:
            lines += [
                f"Base continued with TAPT for {self.tapt.get('steps')} steps: held-out "
                f"perplexity {self.tapt.get('ppl_before')} -> {self.tapt.get('ppl_after')}.",
                "",
            ]
        if self.thresholds is not None:
            lines += [
                "Multi-label: each label's probability is the sigmoid of its logit, and the label",
                "is on when it reaches its threshold (`thresholds`, tuned on the dev set): "
                + ", ".join(f"{name} {value:.2f}" for name, value in self.thresholds.items())
                + ".",
                "",
            ]
        if self.dev_metrics and self.task_type == "multi_label":
            lines += [
                f"Dev set: micro-F1 {self.dev_metrics.get('micro_f1', 0.0):.4f}, macro-F1 "
                f"{self.dev_metrics.get('macro_f1', 0.0):.4f}, subset accuracy "
                f"{self.dev_metrics.get('subset_accuracy', 0.0):.4f}.",
                "",
            ]
        elif self.dev_metrics:
            lines += [
                f"Dev set: accuracy {self.dev_metrics.get('accuracy'):.4f}, macro-F1 "
                f"{self.dev_metrics.get('macro_f1'):.4f}, ECE {self.dev_metrics.get('ece'):.4f}.",
                "",
            ]
        if self.trainable_params is not None:
            lines += [f"Trainable parameters: {self.trainable_params:,}.", ""]
        lines += [
            "Load: transformers + peft on the base at `base_model` -- or on `base/` of the",
            "downloaded zip, where a base that went through TAPT ships. Check the base first:",
            "the sha256 over its `*.safetensors` files in name order (each file's name, then its",
            "bytes) must equal `base_model_sha256`; another base loads without error but gives",
            "other probabilities. The lines are in Tapestry's docs/api.md.",
            "",
            "Reproduce: train with the adapter and train configs and seeds recorded here",
            "(Tapestry `worker.ml`) on that base.",
            "",
        ]
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterCard:
        return cls(**data)


def _plain(value: Any) -> Any:
    """Convert NumPy scalars and tuples so that ``yaml.safe_dump`` accepts the structure."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def parse_card(text: str) -> dict[str, Any]:
    """The YAML front matter of a card as a dict."""
    if not text.startswith("---\n"):
        raise MLError("adapter card has no YAML front matter (expected a leading '---' line)")
    end = text.find("\n---", 4)
    if end < 0:
        raise MLError("adapter card front matter is not closed by a '---' line")
    data = yaml.safe_load(text[4:end])
    if not isinstance(data, dict):
        raise MLError("adapter card front matter is not a mapping")
    return data
