"""The review queue and adjudication (issue 16).

Reviewers (project role ``reviewer``; leads and admins too) see three lists:

* **disagreements** — items with two or more live annotations of different labels (in a
  multi-label project: of different label sets,
  :func:`~app.domain.annotation.label_sets.differing_set_items`; such an item is listed with
  each annotator's set and the majority set);
* **gold misses** — gold items where an annotator's current answer differs from the gold answer
  (multi-label: a set that is not exactly the gold set);
* **likely errors** — the worker's stored ``label_issues`` (``quality.label_issues``), flagged
  ones, highest score first.

An item leaves the lists once a decision is newer than what put it there (a newer annotation
or label-issue computation brings it back). For each item a reviewer can

* **accept** — keep its label (the majority of its live annotations; a gold item's answer);
* **change** — give it another label (on a gold item: change the gold answer, leads only);
* **send back** with a note — its live annotations are taken out of play (marked ``deleted``,
  kept), the item goes back to annotators first (:mod:`app.domain.annotation.leases`) and they
  see the note.

An accept or change is the item's *adjudicated label*: the worker's labelled set uses it instead
of the individual annotations (:func:`adjudicated_labels`, read by
``worker.tasks.project_data.labelled_set``); every annotation stays in the database. Each
decision writes an audit row (:mod:`app.domain.audit`).

**Multi-label projects** decide on label *sets*: accept keeps the item's majority set (the
labels in more than half of its live sets, what the worker trains on) or its gold set; change
takes ``label_ids``, the new set (``[]``: none of these); a send-back on a gold item returns the
sets that are not exactly the gold set. The decision's set is stored as
:class:`~app.db.models.ReviewDecisionLabel` rows (its ``label_id`` stays ``None``) and
overrides the annotations in ``worker.tasks.project_data.labelled_sets``
(:func:`adjudicated_sets`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    REVIEW_ACCEPT,
    REVIEW_ACTIONS,
    REVIEW_CHANGE,
    REVIEW_SEND_BACK,
    Annotation,
    GoldItem,
    Item,
    Label,
    LabelIssue,
    Lease,
    Project,
    ReviewDecision,
    ReviewDecisionLabel,
    User,
)
from app.domain import audit, gold
from app.domain.annotation.common import live, project_item, project_labels, take_write_lock
from app.domain.annotation.label_sets import (
    check_answer,
    differing_set_items,
    is_multi_label,
    label_sets,
    majority_set,
    project_label_set,
    set_text,
    sets_of,
)
from app.domain.live_head import request_live_refit
from app.errors import InvalidInput, PermissionDenied

REASON_DISAGREEMENT = "disagreement"
REASON_GOLD_MISS = "gold_miss"
REASON_LIKELY_ERROR = "likely_error"
REASONS = (REASON_DISAGREEMENT, REASON_GOLD_MISS, REASON_LIKELY_ERROR)
MAX_LIST = 200
MAX_NOTE_CHARS = 2000
TEXT_CHARS = 2000


@dataclass(frozen=True)
class Vote:
    """One annotator's current label on the item (shown to reviewers only); in a multi-label
    project their set as one text, and ``label_id`` None."""

    annotator: str
    label: str
    label_id: int | None


@dataclass(frozen=True)
class ReviewEntry:
    item_id: int
    text: str
    reason: str
    label: str | None
    """The label the item has now (majority, gold answer, or the given label of a likely error)."""
    label_id: int | None
    votes: tuple[Vote, ...] = ()
    suggested: str | None = None
    score: float | None = None
    label_ids: tuple[int, ...] | None = None
    """Multi-label: the set the item has now (majority or gold set), label ids in label order."""


@dataclass(frozen=True)
class ReviewQueue:
    disagreements: list[ReviewEntry] = field(default_factory=list)
    gold_misses: list[ReviewEntry] = field(default_factory=list)
    likely_errors: list[ReviewEntry] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.disagreements) + len(self.gold_misses) + len(self.likely_errors)

    def entries(self) -> list[ReviewEntry]:
        return [*self.disagreements, *self.gold_misses, *self.likely_errors]


# --------------------------------------------------------------------------- reading the queue


def _majority(label_ids: Sequence[int]) -> int:
    """Most frequent label; among ties the one given last (as the worker resolves labels)."""
    counts = Counter(label_ids)
    best = max(counts.values())
    return next(label for label in reversed(label_ids) if counts[label] == best)


def _latest_decisions(db: Session, project_id: int, item_ids: Sequence[int]) -> dict[int, datetime]:
    """When each item was last decided on (any action)."""
    if not item_ids:
        return {}
    rows = db.execute(
        select(ReviewDecision.item_id, func.max(ReviewDecision.created_at))
        .where(ReviewDecision.project_id == project_id, ReviewDecision.item_id.in_(item_ids))
        .group_by(ReviewDecision.item_id)
    ).tuples()
    return {item_id: when for item_id, when in rows}


def _live_votes(
    db: Session, project_id: int, item_ids: Sequence[int]
) -> dict[int, list[tuple[int, int, str, datetime]]]:
    """item -> [(annotation id, label id, annotator e-mail, created)] of live annotations."""
    if not item_ids:
        return {}
    rows = db.execute(
        select(
            Annotation.item_id,
            Annotation.id,
            Annotation.label_id,
            User.email,
            Annotation.created_at,
        )
        .outerjoin(User, User.id == Annotation.annotator_id)
        .where(Annotation.project_id == project_id, Annotation.item_id.in_(item_ids), live())
        .order_by(Annotation.id)
    ).tuples()
    votes: dict[int, list[tuple[int, int, str, datetime]]] = {}
    for item_id, annotation_id, label_id, email, created in rows:
        if label_id is None:  # a multi-label set: never reviewed here (decide() refuses)
            continue
        votes.setdefault(item_id, []).append((annotation_id, label_id, email or "?", created))
    return votes


def _texts(db: Session, item_ids: Sequence[int]) -> dict[int, str]:
    if not item_ids:
        return {}
    rows = db.execute(select(Item.id, Item.text).where(Item.id.in_(item_ids))).tuples()
    return {i: text[:TEXT_CHARS] for i, text in rows}


def _disagreement_ids(project_id: int, limit: int, *, sets: bool = False) -> Select[int]:
    query = (
        select(Annotation.item_id)
        .join(Item, Item.id == Annotation.item_id)
        .where(
            Annotation.project_id == project_id,
            live(),
            ~exists().where(GoldItem.item_id == Item.id),
        )
        .group_by(Annotation.item_id)
    )
    if sets:  # label sets: label_id is NULL on every one, the sets themselves differ
        query = query.where(Annotation.item_id.in_(differing_set_items(project_id)))
    else:
        query = query.having(func.count(func.distinct(Annotation.label_id)) > 1)
    return (
        query.having(_undecided(project_id, Annotation.item_id))
        .order_by(Annotation.item_id)
        .limit(limit)
    )


def _undecided(project_id: int, item_id: Any) -> ColumnElement[bool]:
    """HAVING condition (grouped by item, over live annotations): no decision on the item is as
    new as its newest annotation in the group. Decided items drop out in SQL, so a long list of
    decided items never hides undecided ones behind the page limit."""
    decided_at = (
        select(func.max(ReviewDecision.created_at))
        .where(ReviewDecision.project_id == project_id, ReviewDecision.item_id == item_id)
        .scalar_subquery()
    )
    return or_(decided_at.is_(None), decided_at < func.max(Annotation.created_at))


def _set_disagreements(
    db: Session, project: Project, names: dict[int, str], limit: int
) -> list[ReviewEntry]:
    """A multi-label project's items whose live sets differ: each vote is a set as one text, the
    entry's label the majority set (:func:`majority_set`, the set the worker trains on)."""
    ids = list(db.scalars(_disagreement_ids(project.id, limit, sets=True)))
    if not ids:
        return []
    rows = db.execute(
        select(Annotation.item_id, Annotation.id, User.email)
        .outerjoin(User, User.id == Annotation.annotator_id)
        .where(Annotation.project_id == project.id, Annotation.item_id.in_(ids), live())
        .order_by(Annotation.id)
    ).tuples().all()
    sets = label_sets(db, [annotation_id for _, annotation_id, _ in rows])
    by_item: dict[int, list[tuple[list[int], str]]] = {}
    for item_id, annotation_id, email in rows:
        by_item.setdefault(item_id, []).append((sets[annotation_id], email or "?"))
    order = list(names)  # the project's label order
    texts = _texts(db, ids)

    def text(labels: set[int] | list[int]) -> str:
        return set_text(names[label] for label in order if label in labels)

    entries = []
    for item_id in ids:
        if item_id not in by_item:
            continue
        current = majority_set([labels for labels, _ in by_item[item_id]])
        entries.append(ReviewEntry(
            item_id=item_id,
            text=texts.get(item_id, ""),
            reason=REASON_DISAGREEMENT,
            label=text(current),
            label_id=None,
            votes=tuple(Vote(email, text(labels), None) for labels, email in by_item[item_id]),
            label_ids=tuple(label for label in order if label in current),
        ))
    return entries


def _disagreements(
    db: Session, project: Project, names: dict[int, str], limit: int
) -> list[ReviewEntry]:
    if is_multi_label(project):
        return _set_disagreements(db, project, names, limit)
    ids = list(db.scalars(_disagreement_ids(project.id, limit)))
    votes = _live_votes(db, project.id, ids)
    decided = _latest_decisions(db, project.id, ids)
    texts = _texts(db, ids)
    out = []
    for item_id in ids:
        item_votes = votes.get(item_id, [])
        if not item_votes:
            continue
        newest = max(created for *_, created in item_votes)
        if item_id in decided and decided[item_id] >= newest:
            continue
        current = _majority([label_id for _, label_id, _, _ in item_votes])
        out.append(
            ReviewEntry(
                item_id=item_id,
                text=texts.get(item_id, ""),
                reason=REASON_DISAGREEMENT,
                label=names.get(current),
                label_id=current,
                votes=tuple(
                    Vote(email, names.get(lab, "?"), lab) for _, lab, email, _ in item_votes
                ),
            )
        )
        if len(out) >= limit:
            break
    return out


def _gold_misses(
    db: Session, project: Project, names: dict[int, str], limit: int
) -> list[ReviewEntry]:
    if is_multi_label(project):
        return _set_gold_misses(db, project, names, limit)
    rows = (
        db.execute(
            select(GoldItem.item_id, GoldItem.label_id)
            .join(Annotation, Annotation.item_id == GoldItem.item_id)
            .where(
                GoldItem.project_id == project.id,
                Annotation.project_id == project.id,
                live(),
                Annotation.label_id != GoldItem.label_id,
            )
            .group_by(GoldItem.item_id, GoldItem.label_id)
            .having(_undecided(project.id, GoldItem.item_id))
            .order_by(GoldItem.item_id)
            .limit(limit)
        )
        .tuples()
        .all()
    )
    ids = [item_id for item_id, _ in rows]
    votes = _live_votes(db, project.id, ids)
    decided = _latest_decisions(db, project.id, ids)
    texts = _texts(db, ids)
    out = []
    for item_id, answer in rows:
        if answer is None:
            continue
        misses = [v for v in votes.get(item_id, []) if v[1] != answer]
        if not misses:
            continue
        if item_id in decided and decided[item_id] >= max(v[3] for v in misses):
            continue
        out.append(
            ReviewEntry(
                item_id=item_id,
                text=texts.get(item_id, ""),
                reason=REASON_GOLD_MISS,
                label=names.get(answer),
                label_id=answer,
                votes=tuple(
                    Vote(email, names.get(lab, "?"), lab)
                    for _, lab, email, _ in votes.get(item_id, [])
                ),
            )
        )
        if len(out) >= limit:
            break
    return out


GOLD_MISS_CHUNK = 200


def _set_gold_misses(
    db: Session, project: Project, names: dict[int, str], limit: int
) -> list[ReviewEntry]:
    """A multi-label project's gold misses: gold items with a live set that is not exactly the
    gold set, newer than the item's latest decision. Candidates (gold items with an undecided
    live answer) come from SQL; the sets are compared here, a chunk at a time."""
    candidates = db.execute(
        select(GoldItem.item_id, GoldItem.id)
        .join(Annotation, Annotation.item_id == GoldItem.item_id)
        .where(GoldItem.project_id == project.id, Annotation.project_id == project.id, live())
        .group_by(GoldItem.item_id, GoldItem.id)
        .having(_undecided(project.id, GoldItem.item_id))
        .order_by(GoldItem.item_id)
    ).tuples().all()
    order = list(names)
    out: list[ReviewEntry] = []
    for start in range(0, len(candidates), GOLD_MISS_CHUNK):
        chunk = dict(candidates[start:start + GOLD_MISS_CHUNK])
        golds = gold.gold_sets(db, chunk.values())
        rows = db.execute(
            select(Annotation.item_id, Annotation.id, User.email, Annotation.created_at)
            .outerjoin(User, User.id == Annotation.annotator_id)
            .where(Annotation.project_id == project.id, Annotation.item_id.in_(list(chunk)),
                   live())
            .order_by(Annotation.id)
        ).tuples().all()
        sets = label_sets(db, [annotation_id for _, annotation_id, _, _ in rows])
        by_item: dict[int, list[tuple[set[int], str | None, datetime]]] = {}
        for item_id, annotation_id, email, created in rows:
            by_item.setdefault(item_id, []).append((set(sets[annotation_id]), email, created))
        decided = _latest_decisions(db, project.id, list(chunk))
        texts = _texts(db, list(chunk))
        for item_id, gold_id in chunk.items():
            answer = set(golds[gold_id])
            votes = by_item.get(item_id, [])
            misses = [created for labels, _, created in votes if labels != answer]
            if not misses or (item_id in decided and decided[item_id] >= max(misses)):
                continue
            out.append(ReviewEntry(
                item_id=item_id,
                text=texts.get(item_id, ""),
                reason=REASON_GOLD_MISS,
                label=set_text(names[label] for label in order if label in answer),
                label_id=None,
                votes=tuple(
                    Vote(email or "?", set_text(names[label] for label in order
                                                if label in labels), None)
                    for labels, email, _ in votes
                ),
                label_ids=tuple(golds[gold_id]),
            ))
            if len(out) >= limit:
                return out
    return out


def _likely_errors(
    db: Session, project: Project, names: dict[int, str], limit: int
) -> list[ReviewEntry]:
    latest = (
        select(func.max(ReviewDecision.created_at))
        .where(
            ReviewDecision.project_id == project.id, ReviewDecision.item_id == LabelIssue.item_id
        )
        .scalar_subquery()
    )
    rows = (
        db.execute(
            select(
                LabelIssue.item_id,
                LabelIssue.given_label_id,
                LabelIssue.suggested_label_id,
                LabelIssue.score,
                Item.text,
            )
            .join(Item, Item.id == LabelIssue.item_id)
            .where(
                LabelIssue.project_id == project.id,
                LabelIssue.flagged.is_(True),
                (latest.is_(None)) | (latest < LabelIssue.created_at),
            )
            .order_by(LabelIssue.score.desc(), LabelIssue.item_id)
            .limit(limit)
        )
        .tuples()
        .all()
    )
    votes = _live_votes(db, project.id, [r[0] for r in rows])
    return [
        ReviewEntry(
            item_id=item_id,
            text=text[:TEXT_CHARS],
            reason=REASON_LIKELY_ERROR,
            label=names.get(given),
            label_id=given,
            suggested=names.get(suggested),
            score=float(score),
            votes=tuple(
                Vote(email, names.get(lab, "?"), lab) for _, lab, email, _ in votes.get(item_id, [])
            ),
        )
        for item_id, given, suggested, score, text in rows
    ]


def review_queue(db: Session, project: Project, *, limit: int = 50) -> ReviewQueue:
    """What is waiting for a reviewer, per list (at most ``limit`` each)."""
    limit = max(1, min(limit, MAX_LIST))
    names = {label.id: label.name for label in project_labels(db, project.id)}
    return ReviewQueue(
        disagreements=_disagreements(db, project, names, limit),
        gold_misses=_gold_misses(db, project, names, limit),
        likely_errors=_likely_errors(db, project, names, limit),
    )


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Decision:
    id: int
    item_id: int
    action: str
    label: str | None
    """The label decided on; multi-label: the set as one text ("billing, bug")."""
    note: str
    labels: tuple[str, ...] | None = None
    """Multi-label accept/change: the set's names in label order (``()``: none of these)."""


def _label(db: Session, project: Project, label_id: int | None) -> Label:
    for label in project_labels(db, project.id):
        if label.id == label_id:
            return label
    raise InvalidInput("Pick one of this project's labels.", details={"label_id": label_id})


def _deactivate(db: Session, project_id: int, item_ids: Sequence[int]) -> None:
    db.execute(
        update(ReviewDecision)
        .where(
            ReviewDecision.project_id == project_id,
            ReviewDecision.item_id.in_(item_ids),
            ReviewDecision.active.is_(True),
        )
        .values(active=False)
        .execution_options(synchronize_session=False)
    )


def clear_adjudications(db: Session, project_id: int, item_ids: Sequence[int]) -> None:
    """A lead relabelled these items directly (data manager): their adjudications step aside."""
    if item_ids:
        _deactivate(db, project_id, list(item_ids))


def _current_label(db: Session, project: Project, item: Item) -> int:
    answer: int | None = db.scalar(select(GoldItem.label_id).where(GoldItem.item_id == item.id))
    if answer is not None:
        return int(answer)
    labels = list(
        db.scalars(
            select(Annotation.label_id)
            .where(Annotation.project_id == project.id, Annotation.item_id == item.id, live())
            .order_by(Annotation.id)
        )
    )
    given = [label for label in labels if label is not None]
    if not given:
        raise InvalidInput(
            f"Item {item.id} has no label to accept; change it or send it back.",
            details={"item_id": item.id},
        )
    return _majority(given)


def _current_set(db: Session, project: Project, item: Item) -> list[int]:
    """Multi-label: the item's gold set, else the majority set of its live sets (label order)."""
    answer = gold.gold_set_of_item(db, project, item.id)
    if answer is not None:
        return answer
    annotation_ids = list(db.scalars(
        select(Annotation.id)
        .where(Annotation.project_id == project.id, Annotation.item_id == item.id, live())
        .order_by(Annotation.id)
    ))
    if not annotation_ids:
        raise InvalidInput(
            f"Item {item.id} has no label set to accept; change it or send it back.",
            details={"item_id": item.id},
        )
    sets = label_sets(db, annotation_ids)
    current = majority_set([sets[a] for a in annotation_ids])
    return [label.id for label in project_labels(db, project.id) if label.id in current]


def _wrong_set_answers(db: Session, project: Project, item: Item, answer: list[int]
                       ) -> list[int]:
    """Multi-label gold item: its live annotations whose set is not exactly ``answer``."""
    annotation_ids = list(db.scalars(
        select(Annotation.id)
        .where(Annotation.project_id == project.id, Annotation.item_id == item.id, live())
    ))
    sets = label_sets(db, annotation_ids)
    return [a for a in annotation_ids if set(sets[a]) != set(answer)]


def _send_back(db: Session, project: Project, item: Item) -> int:
    """Take the item's live annotations out of play (kept, marked deleted); on a gold item only
    the wrong answers. Clears its lease rows so every annotator can be handed it again."""
    conditions = [Annotation.project_id == project.id, Annotation.item_id == item.id, live()]
    gold_set = gold.gold_set_of_item(db, project, item.id) if is_multi_label(project) else None
    answer = db.scalar(select(GoldItem.label_id).where(GoldItem.item_id == item.id))
    if gold_set is not None:
        conditions.append(Annotation.id.in_(_wrong_set_answers(db, project, item, gold_set)))
    elif answer is not None:
        conditions.append(Annotation.label_id != answer)
    result = db.execute(
        update(Annotation)
        .where(*conditions)
        .values(deleted=True)
        .execution_options(synchronize_session=False)
    )
    db.execute(
        delete(Lease).where(Lease.item_id == item.id).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def decide(
    db: Session,
    project: Project,
    reviewer: User,
    *,
    item_id: int,
    action: str,
    label_id: int | None = None,
    note: str = "",
    reason: str = "",
    may_change_gold: bool = False,
    label_ids: Sequence[int] | None = None,
) -> Decision:
    """Record a reviewer's decision on an item (see the module docstring); all checks come
    before any write. A multi-label change takes ``label_ids`` (the new set), not ``label_id``."""
    multi_label = is_multi_label(project)
    take_write_lock(db, project.id)
    item = project_item(db, project, item_id)  # another project's item: 404 before anything
    if action not in REVIEW_ACTIONS:
        raise InvalidInput(
            f"Action must be one of {', '.join(REVIEW_ACTIONS)}.", details={"field": "action"}
        )
    if reason and reason not in REASONS:
        raise InvalidInput(
            f"Reason must be one of {', '.join(REASONS)}.", details={"field": "reason"}
        )
    note = (note or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(
            f"A note is at most {MAX_NOTE_CHARS} characters.", details={"field": "note"}
        )
    is_gold_item = db.scalar(select(GoldItem.id).where(GoldItem.item_id == item.id)) is not None
    chosen: Label | None = None
    chosen_set: list[int] | None = None
    detail: dict[str, object] = {"action": action, "reason": reason}
    if action == REVIEW_SEND_BACK:
        if not note:
            raise InvalidInput(
                "Say why the item goes back: annotators see the note.", details={"field": "note"}
            )
    elif action == REVIEW_CHANGE:
        if multi_label:
            check_answer(project, label_id, label_ids)
            chosen_set = project_label_set(db, project, label_ids or ())
        elif label_ids is not None:
            check_answer(project, label_id, label_ids)
        else:
            chosen = _label(db, project, label_id)
        if is_gold_item and not may_change_gold:
            raise PermissionDenied("Only a lead changes a gold item's answer.")
    elif multi_label:
        chosen_set = _current_set(db, project, item)
    else:
        chosen = _label(db, project, _current_label(db, project, item))
    names = {label.id: label.name for label in project_labels(db, project.id)}
    chosen_names = None if chosen_set is None else tuple(names[i] for i in chosen_set)
    before: object = _before_set(db, project, item, names) if multi_label else _before_label(
        db, project, item)
    _deactivate(db, project.id, [item.id])
    decision = ReviewDecision(
        project_id=project.id,
        item_id=item.id,
        reviewer_id=reviewer.id,
        action=action,
        label_id=chosen.id if chosen is not None else None,
        note=note,
        reason=reason,
        active=True,
    )
    db.add(decision)
    if chosen_set is not None:
        db.flush()
        if chosen_set:
            db.execute(insert(ReviewDecisionLabel), [
                {"decision_id": decision.id, "label_id": label} for label in chosen_set
            ])
    if action == REVIEW_SEND_BACK:
        detail["annotations_returned"] = _send_back(db, project, item)
        detail["note"] = note
    elif action == REVIEW_CHANGE and is_gold_item and chosen is not None:
        gold.mark_gold(db, project, item.id, chosen.id, by=reviewer)
    elif action == REVIEW_CHANGE and is_gold_item and chosen_set is not None:
        gold.mark_gold(db, project, item.id, chosen_set, by=reviewer)
    detail["from"] = before
    detail["to"] = (chosen.name if chosen is not None
                    else list(chosen_names) if chosen_names is not None else None)
    db.flush()
    audit.record(
        db,
        project.id,
        audit.SEND_BACK if action == REVIEW_SEND_BACK else audit.ADJUDICATE,
        actor=reviewer,
        item_id=item.id,
        detail={**detail, "decision_id": decision.id},
    )
    project.data_version = project.data_version + 1  # the training data changed
    db.flush()
    request_live_refit(db, project.id)
    if chosen_names is not None:
        return Decision(decision.id, item.id, action, set_text(chosen_names), note,
                        labels=chosen_names)
    return Decision(decision.id, item.id, action, chosen.name if chosen else None, note)


def _before_set(db: Session, project: Project, item: Item, names: dict[int, str]
                ) -> list[str] | None:
    """Multi-label: the item's set before the decision (names), ``None`` without one."""
    try:
        return [names[label_id] for label_id in _current_set(db, project, item)]
    except InvalidInput:
        return None


def _before_label(db: Session, project: Project, item: Item) -> str | None:
    try:
        label_id = _current_label(db, project, item)
    except InvalidInput:
        return None
    names = {label.id: label.name for label in project_labels(db, project.id)}
    return names.get(label_id)


# --------------------------------------------------------------------------- readers


_ADJUDICATED = (
    select(ReviewDecision.item_id, ReviewDecision.label_id)
    .where(
        ReviewDecision.project_id == bindparam("a_project"),
        ReviewDecision.active.is_(True),
        ReviewDecision.action.in_((REVIEW_ACCEPT, REVIEW_CHANGE)),
        ReviewDecision.label_id.is_not(None),
    )
    .order_by(ReviewDecision.id)
)


def adjudicated_labels(db: Session, project_id: int) -> dict[int, int]:
    """item id -> adjudicated label id (the latest active accept or change per item)."""
    out: dict[int, int] = {}
    for item_id, label_id in db.execute(_ADJUDICATED, {"a_project": project_id}).tuples():
        if label_id is not None:
            out[item_id] = label_id
    return out


def decision_sets(db: Session, decision_ids: Sequence[int]) -> dict[int, list[int]]:
    """Multi-label decision id -> its set's label ids in label order (``[]``: none of these)."""
    return sets_of(db, ReviewDecisionLabel.decision_id, ReviewDecisionLabel.label_id,
                   decision_ids)


def _latest_set_decisions(db: Session, project_id: int, item_ids: Sequence[int] | None = None
                          ) -> dict[int, int]:
    """Multi-label: item id -> its latest active accept or change (a decision whose
    ``label_id`` is ``None``), for ``item_ids`` or every item."""
    query = select(ReviewDecision.item_id, ReviewDecision.id).where(
        ReviewDecision.project_id == project_id,
        ReviewDecision.active.is_(True),
        ReviewDecision.action.in_((REVIEW_ACCEPT, REVIEW_CHANGE)),
        ReviewDecision.label_id.is_(None),
    )
    if item_ids is not None:
        query = query.where(ReviewDecision.item_id.in_(item_ids))
    latest: dict[int, int] = {}
    for item_id, decision_id in db.execute(query.order_by(ReviewDecision.id)).tuples():
        latest[item_id] = decision_id
    return latest


def adjudicated_sets(db: Session, project_id: int) -> dict[int, list[int]]:
    """Multi-label: item id -> adjudicated set (label ids; the latest active accept or change
    per item, whose ``label_id`` is ``None``)."""
    latest = _latest_set_decisions(db, project_id)
    sets = decision_sets(db, list(latest.values()))
    return {item_id: sets[decision_id] for item_id, decision_id in latest.items()}


def adjudicated_set_names(db: Session, project_id: int, item_ids: Sequence[int]
                          ) -> dict[int, tuple[str, ...]]:
    """Multi-label: item id -> adjudicated set's names in label order, for these items (the
    data manager's exports write the set training uses)."""
    if not item_ids:
        return {}
    latest = _latest_set_decisions(db, project_id, item_ids)
    if not latest:
        return {}
    sets = decision_sets(db, list(latest.values()))
    names = dict(db.execute(select(Label.id, Label.name)
                            .where(Label.project_id == project_id)).tuples().all())
    return {item_id: tuple(names[label_id] for label_id in sets[decision_id])
            for item_id, decision_id in latest.items()}


def adjudicated_names(db: Session, project_id: int, item_ids: Sequence[int]) -> dict[int, str]:
    """item id -> adjudicated label name, for these items (the data manager and its exports
    show the label training uses); a multi-label decision's set as one text."""
    if not item_ids:
        return {}
    rows = db.execute(
        select(ReviewDecision.item_id, ReviewDecision.id, Label.name)
        .outerjoin(Label, Label.id == ReviewDecision.label_id)
        .where(
            ReviewDecision.project_id == project_id,
            ReviewDecision.item_id.in_(item_ids),
            ReviewDecision.active.is_(True),
            ReviewDecision.action.in_((REVIEW_ACCEPT, REVIEW_CHANGE)),
        )
        .order_by(ReviewDecision.id)
    ).tuples().all()
    set_texts = _set_texts(db, project_id, [d for _, d, name in rows if name is None])
    return {item_id: name if name is not None else set_texts[decision_id]
            for item_id, decision_id, name in rows}


def _set_texts(db: Session, project_id: int, decision_ids: Sequence[int]) -> dict[int, str]:
    """Multi-label decision id -> its set as one text ("billing, bug")."""
    if not decision_ids:
        return {}
    sets = decision_sets(db, decision_ids)
    names = dict(db.execute(select(Label.id, Label.name)
                            .where(Label.project_id == project_id)).tuples().all())
    return {d: set_text(names[label_id] for label_id in labels) for d, labels in sets.items()}


_NOTE = (
    select(ReviewDecision.note)
    .where(
        ReviewDecision.project_id == bindparam("a_project"),
        ReviewDecision.item_id == bindparam("item"),
        ReviewDecision.active.is_(True),
        ReviewDecision.action == REVIEW_SEND_BACK,
    )
    .order_by(ReviewDecision.id.desc())
    .limit(1)
)


def review_note(db: Session, project_id: int, item_id: int) -> str | None:
    """The reviewer's note on an item sent back to annotators, if it is open."""
    note = db.scalar(_NOTE, {"a_project": project_id, "item": item_id})
    return note or None


@dataclass(frozen=True)
class DecisionRow:
    id: int
    item_id: int
    action: str
    label: str | None
    note: str
    reviewer: str
    created_at: datetime
    active: bool


def recent_decisions(db: Session, project: Project, *, limit: int = 20) -> list[DecisionRow]:
    labels = aliased(Label)
    rows = db.execute(
        select(ReviewDecision, labels.name, User.email)
        .outerjoin(labels, labels.id == ReviewDecision.label_id)
        .outerjoin(User, User.id == ReviewDecision.reviewer_id)
        .where(ReviewDecision.project_id == project.id)
        .order_by(ReviewDecision.id.desc())
        .limit(max(1, min(limit, MAX_LIST)))
    ).all()
    sets = _set_texts(db, project.id, [
        d.id for d, name, _ in rows
        if name is None and d.action in (REVIEW_ACCEPT, REVIEW_CHANGE)
    ]) if is_multi_label(project) else {}
    return [
        DecisionRow(d.id, d.item_id, d.action, name if name is not None else sets.get(d.id),
                    d.note, email or "", d.created_at, d.active)
        for d, name, email in rows
    ]
