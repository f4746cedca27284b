"""What a project lead tunes after creating a project: budget and stop rule, model and strategy,
and how labels look and which key picks them.

Validated here so that the dashboard form, the API and the CLI agree. The adapter settings are
checked by the worker's own :class:`~contract.adapter_config.AdapterConfig` (pure Python, no
torch), so a setting the worker would refuse is refused when the lead saves it, not minutes into a
training run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import Label, Project
from app.domain.annotation import RESERVED_KEYS
from app.domain.base_models import check_base_model
from app.domain.policy import BudgetSettings
from app.domain.projects import get_labels
from app.errors import InvalidInput
from contract.adapter_config import KINDS as ADAPTER_KINDS
from contract.adapter_config import AdapterConfig
from contract.errors import MLError
from contract.strategies import (
    MULTI_LABEL_STRATEGIES,
    MULTI_LABEL_STRATEGY_CHOICES,
    PROJECT_STRATEGIES,
    PROJECT_STRATEGY_CHOICES,
)

STRATEGY_CHOICES = PROJECT_STRATEGY_CHOICES
MULTI_LABEL_CHOICES = MULTI_LABEL_STRATEGY_CHOICES
STRATEGIES = PROJECT_STRATEGIES
ADAPTER_SIZE_FIELD = {"lora": "r", "bottleneck": "bottleneck_size", "prompt": "num_virtual_tokens"}
"""Which AdapterConfig field the one "size" box sets, per adapter kind (IA3 and full have none)."""
ADAPTER_DESCRIPTIONS = {
    "lora": "LoRA on Q/K/V/O (size = rank; 8 is the playbook default)",
    "bottleneck": "Bottleneck adapters (size = hidden size; 16 is the default)",
    "ia3": "IA3: learned rescaling, no size",
    "prompt": "Prompt tuning (size = virtual tokens)",
    "full": "Full fine-tuning baseline (nothing frozen)",
}
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ModelSettings:
    """Base encoder, adapter and acquisition strategy for the next training rounds."""

    base_model: str
    adapter_kind: str
    adapter_size: int | None
    strategy: str
    model_root: Path | None = None
    """Local model folders must lie under it (``Settings.models``); None: no folders allowed."""
    multi_label: bool = False
    """The project is multi-label: its strategies are :data:`MULTI_LABEL_STRATEGIES`."""

    def __post_init__(self) -> None:
        base = self.base_model.strip()
        if not base or len(base) > 500:
            raise InvalidInput("Name a base model: 'minilm' (bundled), an installed model "
                               "package, a Hugging Face id or a folder under the model root.",
                               details={"field": "base_model"})
        object.__setattr__(self, "base_model", check_base_model(base, model_root=self.model_root))
        allowed = MULTI_LABEL_STRATEGIES if self.multi_label else STRATEGIES
        if self.strategy not in allowed:
            raise InvalidInput(f"Unknown strategy {self.strategy!r}"
                               f"{' for a multi-label project' if self.multi_label else ''}; "
                               f"choose one of {', '.join(allowed)}.",
                               details={"field": "strategy"})
        if self.adapter_kind not in ADAPTER_KINDS:
            raise InvalidInput(f"Unknown adapter type {self.adapter_kind!r}; choose one of "
                               f"{', '.join(ADAPTER_KINDS)}.", details={"field": "adapter_kind"})

    def adapter_config(self, current: dict[str, Any]) -> dict[str, Any]:
        """The project's adapter config with kind and size applied, validated by the worker."""
        values = {k: v for k, v in current.items() if k != "kind"}
        values["kind"] = self.adapter_kind
        size_field = ADAPTER_SIZE_FIELD.get(self.adapter_kind)
        if size_field is not None and self.adapter_size is not None:
            values[size_field] = self.adapter_size
        if self.adapter_kind in ("prompt", "full"):
            values.pop("layers", None)
        if self.adapter_kind == "full":
            values.pop("unfreeze_last_n", None)
        try:
            return AdapterConfig.from_dict(values).to_dict()
        except MLError as exc:
            raise InvalidInput(f"Adapter settings refused: {exc}",
                               details={"field": "adapter_size"}) from exc


@dataclass(frozen=True)
class LabelStyle:
    """One label's colour and keyboard shortcut, as the lead sets them."""

    label_id: int
    color: str
    shortcut: str

    def __post_init__(self) -> None:
        if not _HEX_COLOUR.match(self.color):
            raise InvalidInput(f"Colour {self.color!r} is not a #rrggbb colour.",
                               details={"field": f"color_{self.label_id}"})
        key = self.shortcut.strip().lower()
        if len(key) > 1:
            raise InvalidInput(f"Shortcut {self.shortcut!r} must be a single key.",
                               details={"field": f"shortcut_{self.label_id}"})
        if key in RESERVED_KEYS:
            raise InvalidInput(f"Key {key!r} is reserved by the annotator view (s skip, z undo, "
                               "g guidelines, ? help).",
                               details={"field": f"shortcut_{self.label_id}"})
        object.__setattr__(self, "shortcut", key)


def adapter_size(config: dict[str, Any]) -> int | None:
    """The one "size" number shown for the project's adapter kind."""
    field = ADAPTER_SIZE_FIELD.get(str(config.get("kind", "lora")))
    if field is None:
        return None
    value = config.get(field)
    defaults = {"r": 8, "bottleneck_size": 16, "num_virtual_tokens": 20}
    return int(value) if isinstance(value, int) else defaults[field]


def update_budget(db: Session, project: Project, settings: BudgetSettings) -> Project:
    settings.apply(project)
    db.flush()
    return project


def set_stopped(db: Session, project: Project, stopped: bool) -> Project:
    """Stop (or resume) labelling: annotators are told the lead stopped the project."""
    project.stopped = stopped
    db.flush()
    return project


def update_model(db: Session, project: Project, settings: ModelSettings) -> Project:
    project.adapter_config = settings.adapter_config(dict(project.adapter_config or {}))
    project.base_model = settings.base_model
    project.strategy = settings.strategy
    db.flush()
    return project


def update_label_styles(db: Session, project: Project, styles: list[LabelStyle]) -> list[Label]:
    """Apply colours and shortcuts to the project's labels; shortcuts must be distinct."""
    labels = {label.id: label for label in get_labels(db, project.id)}
    keys = [s.shortcut for s in styles if s.shortcut]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InvalidInput(f"Shortcut {repeated[0]!r} is used by more than one label.",
                           details={"field": "shortcut"})
    for style in styles:
        label = labels.get(style.label_id)
        if label is None:
            raise InvalidInput(f"Label {style.label_id} is not one of this project's labels.")
        label.color = style.color
        label.shortcut = style.shortcut
    db.flush()
    return list(labels.values())
