"""What the annotator view shows and what labelling returns: plain, immutable values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from app.db.models import (
    Annotation,
    Label,
    TrainingRun,
)

if TYPE_CHECKING:
    from app.domain.live_head import Reading

UI_SOURCE = "ui"


RESERVED_KEYS = frozenset({"s", "z", "?", "g"})
"""Keys the annotator view keeps for itself: skip, undo, help, guidelines."""


MAX_DURATION_MS = 60 * 60 * 1000
"""Longer than an hour on one item is a coffee break, not labelling time."""


SNIPPET_CHARS = 240


NONE_OF_THESE_KEYS = ("0", "n", "-", ".")
"""Candidates, in order, for the multi-label "None of these" key: the first no label uses."""


@dataclass(frozen=True)
class Prediction:
    label: str
    prob: float
    threshold: float | None = None
    """Multi-label: the probability at which this label is proposed (the worker's per-label
    threshold); single-label predictions have none."""
    proposed: bool | None = None
    """Multi-label: whether the model proposes this label (``prob`` reaches ``threshold``)."""


@dataclass(frozen=True)
class Neighbour:
    item_id: int
    label: str
    similarity: float
    snippet: str
    labels: tuple[str, ...] | None = None
    """Multi-label: the neighbour's label set (empty: none of these); ``label`` is its text."""


@dataclass(frozen=True)
class WhyThisItem:
    """What the annotator is told about why this item is in front of them."""

    source: Literal["queue", "random", "resumed"]
    strategy: str = ""
    score: float | None = None
    reason: str = ""
    rank: int | None = None
    queue_version: int = 0
    predicted: tuple[Prediction, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()

    @property
    def proposed_labels(self) -> tuple[str, ...]:
        """Multi-label: the names of the labels the model proposes, the set Enter accepts."""
        return tuple(p.label for p in self.predicted if p.proposed)

    @property
    def prediction_of(self) -> dict[str, Prediction]:
        """Label name -> the model's prediction for it (what each label toggle shows)."""
        return {p.label: p for p in self.predicted}

    @property
    def has_thresholds(self) -> bool:
        """The predictions are a multi-label model's (each label judged on its own threshold)."""
        return any(p.threshold is not None for p in self.predicted)


@dataclass(frozen=True)
class ItemView:
    """An item leased to the annotator, with everything the item card shows."""

    item_id: int
    text: str
    external_id: str | None
    lease_expires_at: datetime
    why: WhyThisItem
    previous_label_id: int | None = None
    """After an undo: the label the annotator had chosen, shown as a hint."""
    previous_label_ids: tuple[int, ...] | None = None
    """After an undo in a multi-label project: the set the annotator had chosen (empty: none of
    these), shown selected again so that Enter puts it back."""
    review_note: str | None = None
    """A reviewer sent the item back with this note (issue 16); shown above the labels."""


@dataclass(frozen=True)
class NoItem:
    """Why there is nothing to label right now; ``code`` is stable, ``message`` is for people."""

    code: Literal["budget_spent", "stopped", "exhausted"]
    message: str


@dataclass(frozen=True)
class BatchProgress:
    batch_id: str
    done: int
    size: int
    mine: int
    labels_used: int
    label_budget: int
    queue_version: int
    retraining: bool

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.size) if self.size else 1.0


@dataclass(frozen=True)
class LabelResult:
    annotation: Annotation
    replayed: bool
    """The idempotency key was seen before: nothing new was written."""
    submitted_run: TrainingRun | None = None
    """The retrain requested because this label closed the batch."""


@dataclass(frozen=True)
class RecentLabel:
    annotation_id: int
    item_id: int
    label_id: int | None
    snippet: str
    created_at: datetime
    label_ids: list[int] | None = None
    """A multi-label annotation's set (``label_id`` is then ``None``)."""


@dataclass(frozen=True)
class QueueStatus:
    queue_version: int
    retrain_status: str | None
    """``queued`` or ``running`` while a retrain or queue rebuild is on its way, else None."""
    retrain_fraction: float | None
    retrain_phase: str = ""
    reading: Reading | None = None
    """The live head's refit reading texts no refit has read (a large import), else None."""


def clamp_duration(duration_ms: int | None) -> int | None:
    if duration_ms is None or duration_ms < 0:
        return None
    return min(int(duration_ms), MAX_DURATION_MS)


def label_keys(labels: Sequence[Label]) -> dict[str, int]:
    """Keyboard shortcut -> label id; reserved, empty or repeated shortcuts are not bound."""
    keys: dict[str, int] = {}
    for label in labels:
        key = (label.shortcut or "").strip().lower()
        if len(key) == 1 and key not in RESERVED_KEYS and key not in keys:
            keys[key] = label.id
    return keys


def none_of_these_key(keys: dict[str, int]) -> str | None:
    """The key for "None of these" in a multi-label project: one no label is bound to."""
    return next((key for key in NONE_OF_THESE_KEYS if key not in keys), None)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
