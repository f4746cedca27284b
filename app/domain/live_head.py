"""Asking for live-head refits, coalesced: at most one pending refit per project.

A label submission calls :func:`request_live_refit` in its transaction. The refit job is sent
(after the commit) only when this call flips ``refit_pending`` from false to true; the worker
clears the flag before it reads the labels, so every label is seen by a refit that starts after
it was committed, and a burst of labels during one refit causes exactly one more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.base import utcnow
from app.db.models import Label, LiveHeadState
from app.errors import InvalidInput
from app.jobs import Job, enqueue_after_commit
from contract.tasks import TASK_LIVE_REFIT


def request_live_refit(db: Session, project_id: int) -> bool:
    """Record that labels changed; returns whether a refit job was enqueued."""
    if not get_settings().live_head:
        return False
    now = utcnow()
    result = db.execute(
        update(LiveHeadState)
        .where(LiveHeadState.project_id == project_id, LiveHeadState.refit_pending.is_(False))
        .values(refit_pending=True, requested_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        exists = db.scalar(
            select(LiveHeadState.id).where(LiveHeadState.project_id == project_id)
        )
        if exists is not None:
            return False  # a refit is already pending; it will read this label
        try:
            with db.begin_nested():
                db.add(LiveHeadState(project_id=project_id, refit_pending=True,
                                     requested_at=now))
        except IntegrityError:  # a concurrent label created the row first and sent the refit
            return False
    enqueue_after_commit(db, Job(TASK_LIVE_REFIT, (project_id,)))
    return True


def live_head_state(db: Session, project_id: int) -> LiveHeadState | None:
    return db.scalars(
        select(LiveHeadState).where(LiveHeadState.project_id == project_id)
    ).first()


READING_STALE_SECONDS = 300.0
"""A refit that has not reported for this long is no longer reading (its worker stopped); the
refit writes at least once per chunk of texts, seconds apart."""


@dataclass(frozen=True)
class Reading:
    """How far the live head's refit has read (embedded) the texts no refit had read before."""

    done: int
    total: int
    seconds_left: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0

    @property
    def text(self) -> str:
        """e.g. "Reading 12,345 of 100,000 texts for the live head (12 %), about 25 min left"."""
        from app.domain.tapt import format_duration

        if self.done >= self.total:
            return f"Read all {self.total:,} new texts; fitting the live head"
        left = (
            f", about {format_duration(self.seconds_left)} left"
            if self.seconds_left is not None else ""
        )
        return (
            f"Reading {self.done:,} of {self.total:,} texts for the live head "
            f"({self.fraction * 100:.0f} %){left}"
        )

    def as_dict(self) -> dict[str, object]:
        return {"done": self.done, "total": self.total, "fraction": round(self.fraction, 4),
                "seconds_left": self.seconds_left, "text": self.text}


def reading(db: Session, project_id: int, now: datetime | None = None) -> Reading | None:
    """The live refit's reading progress, or None when no refit is reading texts."""
    state = live_head_state(db, project_id)
    progress = dict(state.progress or {}) if state is not None else {}
    try:
        done, total = int(progress["done"]), int(progress["total"])
        started = datetime.fromisoformat(str(progress["started_at"]))
        updated = datetime.fromisoformat(str(progress["updated_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    if ((now or utcnow()) - updated).total_seconds() > READING_STALE_SECONDS:
        return None
    elapsed = (updated - started).total_seconds()
    left = round(elapsed / done * (total - done), 1) if done > 0 and elapsed > 0 else None
    return Reading(done=done, total=total, seconds_left=left)


MAX_DESCRIPTION_CHARS = 300


def parse_label_descriptions(text: str) -> dict[str, str]:
    """``label: one-line description`` per line (blank lines ignored) -> {label: description}."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, colon, description = line.partition(":")
        if not colon or not name.strip():
            raise InvalidInput(
                f"Line {number} of the label descriptions needs the form 'label: description'.",
                details={"field": "label_descriptions", "line": number},
            )
        out[name.strip()] = description.strip()
    return out


def set_label_descriptions(
    db: Session, project_id: int, descriptions: Mapping[str, str]
) -> None:
    """Replace the one-line descriptions of the named labels; others keep theirs.

    The zero-shot cold start embeds ``"label: description"``, so a refit is requested.
    """
    labels = {label.name: label for label in db.scalars(
        select(Label).where(Label.project_id == project_id)
    )}
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise InvalidInput(
            f"No such label(s): {', '.join(unknown)[:200]}.",
            details={"field": "label_descriptions", "unknown": unknown},
        )
    for name, description in descriptions.items():
        text = " ".join(description.split())
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(
                f"The description of {name!r} is longer than {MAX_DESCRIPTION_CHARS} characters.",
                details={"field": "label_descriptions", "label": name},
            )
        labels[name].description = text
    db.flush()
    request_live_refit(db, project_id)


def label_descriptions_text(db: Session, project_id: int) -> str:
    rows = db.execute(
        select(Label.name, Label.description)
        .where(Label.project_id == project_id)
        .order_by(Label.position, Label.id)
    ).all()
    return "\n".join(f"{name}: {description}" for name, description in rows)


def served_live_head(db: Session, project_id: int) -> tuple[str, str] | None:
    """``(served, head directory)`` when the evidence says the live head (or its average with the
    adapter) is the served model and a fitted head exists; ``None`` when the adapter is served."""
    from app.db.models import SERVED_AVERAGE, SERVED_LIVE_HEAD

    state = live_head_state(db, project_id)
    if state is None or not state.artifact_path:
        return None
    if state.served not in (SERVED_LIVE_HEAD, SERVED_AVERAGE):
        return None
    return state.served, state.artifact_path


@dataclass(frozen=True)
class ServedSummary:
    """What the dashboard says about the served model."""

    served: str
    reason: str
    scores: dict[str, float]
    labels_used: int
    curve: list[tuple[int, float]]
    live_evidence: str = "dev set"
    """What the live head's curve is measured on: "dev set" or "cross-validation"."""


MAX_CURVE_POINTS = 120


def served_summary(db: Session, project_id: int) -> ServedSummary | None:
    state = live_head_state(db, project_id)
    if state is None or state.fitted_at is None:
        return None
    by_labels: dict[int, float] = {}
    for point in state.history or []:
        if isinstance(point, dict) and "live_head" in point:
            by_labels[int(point.get("labels", 0))] = float(point["live_head"])
    curve = sorted(by_labels.items())
    step = max(1, len(curve) // MAX_CURVE_POINTS)
    curve = curve[::step] + ([curve[-1]] if curve and (len(curve) - 1) % step else [])
    return ServedSummary(
        served=state.served, reason=state.served_reason,
        scores={k: float(v) for k, v in (state.scores or {}).items()},
        labels_used=state.labels_used, curve=curve,
        live_evidence=(
            "cross-validation" if state.served_reason.startswith("no dev set") else "dev set"
        ),
    )
