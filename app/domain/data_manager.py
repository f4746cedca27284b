"""The data manager: browse a project's items with filters, open one, act on many at once.

**Filters** are a small registry (:data:`FILTERS`): each has a name (the query-string key), a
parser that turns the raw string into a value (or raises :class:`InvalidInput`), and a condition
on ``items``. Every condition is indexed: the item's own columns (``ix_items_project_split_id``,
``ix_items_project_id``), annotations by label or annotator (``ix_annotations_project_label_item``,
``ix_annotations_project_annotator_item``), the current queue (``ix_queue_entries_project_version
_rank``), and full-text search (:mod:`app.db.fulltext`). A later feature (gold items,
likely-error scores) adds its filter with :func:`register_filter`; the pages and the API pick it up.

**Labels.** An item's *label* is the one the worker trains on: a reviewer's adjudication if
there is one, else the majority of its live annotations, ties to the most recent
(``worker/tasks/project_data.py``); in a multi-label project the majority set (the labels in
more than half of the live sets, :func:`~app.domain.annotation.label_sets.majority_set`). The
``label`` filter matches items with a live annotation of that label, which is the same thing
unless annotators disagree (then the ``disagreement`` filter finds them: different labels, or
different label sets).

**Predictions** exist only for items in the project's current queue (``QueueEntry.predicted``,
written by the queue builder): the ``predicted`` and confidence filters match those items only,
and an item out of the queue shows no prediction.

**Paging** is keyset on the item id (``id > after``), never OFFSET: a page costs the same at the
end of 100,000 items as at the start, and rows inserted meanwhile cannot shift later pages.

**Bulk actions** take a :class:`Target` (a selection of ids, or everything matching the filters),
resolve it once into ids, and work through them in chunks. Each writes one :class:`ItemEvent` per
item (the history) and bumps the project's data version when training data changes. Relabelling
adds a lead annotation and marks the item's other live annotations superseded by it: every
individual annotation stays in the database.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from app.db import fulltext
from app.db.models import (
    SPLITS,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    GoldItem,
    Item,
    ItemEvent,
    Label,
    LabelIssue,
    Lease,
    Membership,
    ModelVersion,
    Project,
    QueueEntry,
    User,
)
from app.domain import audit
from app.domain.annotation.common import take_write_lock
from app.domain.annotation.label_sets import (
    NONE_OF_THESE,
    differing_set_items,
    label_sets,
    labels_named,
    majority_set,
    project_label_set,
    set_text,
)
from app.domain.policy import live
from app.domain.review import adjudicated_names, clear_adjudications
from app.errors import Conflict, InvalidInput, NotFound

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_SELECTION = 10_000
CHUNK = 1_000
LEAD_SOURCE = "lead"
SNIPPET_CHARS = 300
COUNT_CAP = 10_000
SEARCH_WINDOW = 1_000
MAX_SEARCH_WINDOW = 64_000
AUDIT_LISTED_IDS = 1_000
"""A relabel's audit row lists this many of its item ids (and counts them all)."""


class ConfirmationRequired(Conflict):
    """A destructive action that would lose annotations, asked for without ``confirm``."""

    code = "confirmation_required"


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class FilterContext:
    project: Project
    dialect: str


@dataclass(frozen=True)
class FilterSpec:
    name: str
    title: str
    parse: Callable[[str], Any]
    condition: Callable[[FilterContext, Any], ColumnElement[bool]]


FILTERS: dict[str, FilterSpec] = {}


def register_filter(spec: FilterSpec) -> FilterSpec:
    """Add a filter to the browser, the API and the exports (name = query-string key)."""
    if spec.name in FILTERS:
        raise ValueError(f"filter {spec.name!r} is already registered")
    FILTERS[spec.name] = spec
    return spec


Filters = Mapping[str, Any]


def parse_filters(raw: Mapping[str, str], *, strict: bool = False,
                  ignore: Iterable[str] = ()) -> dict[str, Any]:
    """Parsed values of the registered filters in ``raw`` (blank values mean "no filter").

    ``strict`` refuses names that are not filters (the API: a misspelt filter must not silently
    widen a bulk action); names in ``ignore`` are the caller's own parameters (cursor, limit).
    """
    skip = set(ignore)
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        if name in skip:
            continue
        spec = FILTERS.get(name)
        if spec is None:
            if strict:
                raise InvalidInput(
                    f"Unknown filter {name!r}; use one of {', '.join(sorted(FILTERS))}.",
                    details={"field": name},
                )
            continue
        if value is None or str(value).strip() == "":
            continue
        parsed[name] = spec.parse(str(value).strip())
    return parsed


def _conditions(db: Session, project: Project, filters: Filters) -> list[ColumnElement[bool]]:
    context = FilterContext(project=project, dialect=db.get_bind().dialect.name)
    in_project: ColumnElement[bool] = Item.project_id == project.id
    if context.dialect == "sqlite" and "q" in filters:
        # Drive the query from the search's id list (rowid lookups, already in id order), not
        # from walking the project's items and probing the list: 100,000 probes for a rare word.
        in_project = (Item.project_id + 0) == project.id
    conditions: list[ColumnElement[bool]] = [in_project]
    for name, value in filters.items():
        conditions.append(FILTERS[name].condition(context, value))
    return conditions


def _yes_no(name: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in ("yes", "true", "1"):
            return True
        if lowered in ("no", "false", "0"):
            return False
        raise InvalidInput(f"{name} must be yes or no.", details={"field": name})

    return parse


def _text(name: str, max_chars: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) > max_chars:
            raise InvalidInput(f"{name} is limited to {max_chars} characters.",
                               details={"field": name})
        return raw

    return parse


def _whole(name: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a whole number.", details={"field": name}) from None
        if not 1 <= value <= 2_147_483_647:
            raise InvalidInput(f"{name} is out of range.", details={"field": name})
        return value

    return parse


def _probability(name: str) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a number between 0 and 1.",
                               details={"field": name}) from None
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{name} must be between 0 and 1.", details={"field": name})
        return value

    return parse


def _split(raw: str) -> str:
    if raw not in SPLITS:
        raise InvalidInput(f"split must be one of {', '.join(SPLITS)}.", details={"field": "split"})
    return raw


def _live_annotations_of(project_id: int) -> Select[Any]:
    return select(Annotation.item_id).where(Annotation.project_id == project_id, live())


def _search(ctx: FilterContext, query: str) -> ColumnElement[bool]:
    return fulltext.matching_ids(ctx.dialect, query, Item.id)


def _has_label(ctx: FilterContext, name: str) -> ColumnElement[bool]:
    """Items with a live annotation giving this label (alone, or in a multi-label set)."""
    label_ids = select(Label.id).where(Label.project_id == ctx.project.id, Label.name == name)
    in_a_set = select(AnnotationLabel.annotation_id).where(
        AnnotationLabel.label_id.in_(label_ids.scalar_subquery()))
    return Item.id.in_(_live_annotations_of(ctx.project.id).where(
        Annotation.label_id.in_(label_ids.scalar_subquery()) | Annotation.id.in_(in_a_set)
    ))


def _by_annotator(ctx: FilterContext, user_id: int) -> ColumnElement[bool]:
    return Item.id.in_(
        _live_annotations_of(ctx.project.id).where(Annotation.annotator_id == user_id)
    )


def _in_split(_ctx: FilterContext, split: str) -> ColumnElement[bool]:
    return Item.split == split


def _labelled(ctx: FilterContext, wanted: bool) -> ColumnElement[bool]:
    any_live = exists().where(
        Annotation.project_id == ctx.project.id, Annotation.item_id == Item.id, live()
    )
    return any_live if wanted else ~any_live


def _disagreement(ctx: FilterContext, wanted: bool) -> ColumnElement[bool]:
    """Items whose live annotations give different labels; in a multi-label project, different
    label sets (:func:`differing_set_items`), as the rows' disagreement pill reads them."""
    disagreeing: Select[Any]
    if ctx.project.task_type == TASK_MULTI_LABEL:
        disagreeing = differing_set_items(ctx.project.id)
    else:
        disagreeing = (
            _live_annotations_of(ctx.project.id)
            .group_by(Annotation.item_id)
            .having(func.count(func.distinct(Annotation.label_id)) > 1)
        )
    return Item.id.in_(disagreeing) if wanted else Item.id.not_in(disagreeing)


def _excluded(_ctx: FilterContext, wanted: bool) -> ColumnElement[bool]:
    return Item.excluded.is_(wanted)


def _gold(ctx: FilterContext, wanted: bool) -> ColumnElement[bool]:
    is_gold = exists().where(GoldItem.project_id == ctx.project.id, GoldItem.item_id == Item.id)
    return is_gold if wanted else ~is_gold


def _min_error_score(ctx: FilterContext, value: float) -> ColumnElement[bool]:
    """Labelled items the likely-label-errors job scored at least ``value``
    (:mod:`worker.tasks.label_errors`; ``p(suggested) - p(given)`` out of fold)."""
    return Item.id.in_(
        select(LabelIssue.item_id).where(
            LabelIssue.project_id == ctx.project.id, LabelIssue.score >= value
        )
    )


def _top_label() -> ColumnElement[str]:
    return QueueEntry.predicted[(0, "label")].as_string()


def _top_prob() -> ColumnElement[float]:
    return QueueEntry.predicted[(0, "prob")].as_float()


def _current_queue(ctx: FilterContext) -> Select[Any]:
    return select(QueueEntry.item_id).where(
        QueueEntry.project_id == ctx.project.id,
        QueueEntry.queue_version == ctx.project.queue_version,
    )


def _predicted(ctx: FilterContext, name: str) -> ColumnElement[bool]:
    return Item.id.in_(_current_queue(ctx).where(_top_label() == name))


def _min_confidence(ctx: FilterContext, value: float) -> ColumnElement[bool]:
    return Item.id.in_(_current_queue(ctx).where(_top_prob() >= value))


def _max_confidence(ctx: FilterContext, value: float) -> ColumnElement[bool]:
    return Item.id.in_(_current_queue(ctx).where(_top_prob() <= value))


for _spec in (
    FilterSpec("q", "Search", _text("Search", 200), _search),
    FilterSpec("label", "Label", _text("label", 200), _has_label),
    FilterSpec("annotator", "Annotator", _whole("annotator"), _by_annotator),
    FilterSpec("split", "Split", _split, _in_split),
    FilterSpec("labelled", "Labelled", _yes_no("labelled"), _labelled),
    FilterSpec("disagreement", "Disagreement", _yes_no("disagreement"), _disagreement),
    FilterSpec("excluded", "Excluded from training", _yes_no("excluded"), _excluded),
    FilterSpec("gold", "Gold item", _yes_no("gold"), _gold),
    FilterSpec("min_error_score", "Likely-error score at least", _probability("min_error_score"),
               _min_error_score),
    FilterSpec("predicted", "Model prediction", _text("predicted", 200), _predicted),
    FilterSpec("min_confidence", "Confidence at least", _probability("min_confidence"),
               _min_confidence),
    FilterSpec("max_confidence", "Confidence at most", _probability("max_confidence"),
               _max_confidence),
):
    register_filter(_spec)


# --------------------------------------------------------------------------- browsing


@dataclass(frozen=True)
class Vote:
    annotation_id: int
    label: str
    annotator_id: int | None
    annotator: str | None
    source: str
    created_at: datetime


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float


@dataclass(frozen=True)
class Row:
    id: int
    external_id: str | None
    text: str
    split: str
    excluded: bool
    votes: tuple[Vote, ...] = ()
    prediction: Prediction | None = None
    adjudicated: str | None = None
    """A reviewer's accepted or changed label (:mod:`app.domain.review`): it wins."""
    resolved_set: str | None = None
    """Multi-label: the majority set of the live sets (:func:`majority_set`, what the worker
    trains on) as one text; ``None`` in a single-label project or without a set."""

    @property
    def label(self) -> str | None:
        return (self.adjudicated or self.resolved_set
                or resolved_label([vote.label for vote in self.votes]))

    @property
    def disagreement(self) -> bool:
        return len({vote.label for vote in self.votes}) > 1


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_after: int | None


def resolved_label(labels: Sequence[str]) -> str | None:
    """The worker's rule (``project_data.majority``): most votes, ties to the latest vote."""
    if not labels:
        return None
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in reversed(labels) if counts[label] == best)


def browse(
    db: Session,
    project: Project,
    filters: Filters,
    *,
    after_id: int = 0,
    limit: int = PAGE_SIZE,
    snippet_chars: int | None = SNIPPET_CHARS,
) -> Page:
    """One page of matching items in id order, after ``after_id``."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    text_column: ColumnElement[str] = (
        func.substr(Item.text, 1, snippet_chars) if snippet_chars else Item.text  # type: ignore[assignment]
    )
    columns = (Item.id, Item.external_id, text_column, Item.split, Item.excluded)
    found: list[Any] = []
    for window in _id_windows(db, project, filters, after_id):
        query = (
            select(*columns)
            .where(*window, Item.id > after_id)
            .order_by(Item.id)
            .limit(limit + 1 - len(found))
        )
        with fulltext.search_plans(db, "q" in filters):
            found.extend(db.execute(query).all())
        if len(found) > limit:
            break
    more = len(found) > limit
    found = found[:limit]
    ids = [row[0] for row in found]
    votes = live_votes(db, project.id, ids)
    predictions = current_predictions(db, project, ids)
    decided = adjudicated_names(db, project.id, ids)
    resolved = resolved_sets(
        db, project, {i: [vote.annotation_id for vote in item] for i, item in votes.items()}
    ) if project.task_type == TASK_MULTI_LABEL else {}
    rows = [
        Row(id=i, external_id=ext, text=text, split=split, excluded=excluded,
            votes=tuple(votes.get(i, ())), prediction=predictions.get(i),
            adjudicated=decided.get(i), resolved_set=resolved.get(i))
        for i, ext, text, split, excluded in found
    ]
    return Page(rows=rows, next_after=ids[-1] if more and ids else None)


def resolved_sets(db: Session, project: Project, live_ids: Mapping[int, Sequence[int]]
                  ) -> dict[int, str]:
    """Multi-label: each item's majority set (:func:`majority_set`, the worker's rule) as one
    text in label order, from {item: its live annotation ids, oldest first}; with several
    annotators per item it can differ from every single set."""
    sets = label_sets(db, [a for ids in live_ids.values() for a in ids])
    names = db.execute(select(Label.id, Label.name).where(Label.project_id == project.id)
                       .order_by(Label.position)).tuples().all()
    return {
        item_id: set_text(name for label_id, name in names
                          if label_id in majority_set([sets[a] for a in ids]))
        for item_id, ids in live_ids.items() if ids
    }


@dataclass(frozen=True)
class MatchCount:
    """How many items match; ``capped``: counting stopped at ``value``, more match."""

    value: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def count_matching(
    db: Session, project: Project, filters: Filters, *, cap: int | None = COUNT_CAP
) -> MatchCount:
    """Matching items, counted up to ``cap`` (``None``: exactly).

    A count walks every match, so an exact count of a filter matching most of 100,000 items
    costs hundreds of milliseconds; the browser shows "10,000+" instead, as mail clients do.
    Bulk actions and exports always work on every match.
    """
    counted = 0
    for window in _id_windows(db, project, filters, 0, counting=True):
        matching = select(Item.id).where(*window)
        if cap is not None:
            matching = matching.limit(cap + 1 - counted)
        with fulltext.search_plans(db, "q" in filters):
            counted += int(db.scalar(select(func.count()).select_from(matching.subquery())) or 0)
        if cap is not None and counted > cap:
            return MatchCount(cap, capped=True)
    return MatchCount(counted)


def _id_windows(
    db: Session, project: Project, filters: Filters, after_id: int, *, counting: bool = False
) -> Iterator[list[ColumnElement[bool]]]:
    """The filters' conditions, as one window over all ids or, for a search, as successive
    windows in id order, so a page of a common word is found without reading all its matches.

    * SQLite: windows of the search's own matches. FTS5 hands out matches in rowid order and
      seeks to a rowid range cheaply, but an ``IN`` over the whole match list first builds all
      of it (85,000 ids for a word in most texts). Windows of growing size (1,000 matches, then
      2,000, ...) fill a page from the first window for a common word and cost no more than one
      pass for a rare one.
    * Postgres: windows of item ids (4,096 ids, then 4x larger each time), between the
      project's first and last id. The GIN index finds a common word's 85,000 matches in
      milliseconds, but fetching and sorting all of them to keep the first 50 took 250 ms; in
      a narrow id range the planner reads only that range. A count (``counting``) needs no
      order, so it runs in one pass: the index's bitmap, stopped at the cap.
    """
    conditions = _conditions(db, project, filters)
    if "q" not in filters:
        yield conditions
        return
    if db.get_bind().dialect.name == "postgresql":
        if counting:
            yield conditions
        else:
            yield from _pg_id_windows(db, project, conditions, after_id)
        return
    if db.get_bind().dialect.name != "sqlite":
        yield conditions
        return
    rest = [c for name, c in zip(filters, conditions[1:], strict=True) if name != "q"]
    expression = fulltext.sqlite_match(filters["q"])
    if expression is None:  # no words: the condition already matches nothing
        yield conditions
        return
    low, size = after_id, SEARCH_WINDOW
    while True:
        high = fulltext.sqlite_window_end(db, expression, after=low, size=size)
        if high is None:
            return
        window = fulltext.sqlite_window(expression, Item.id, after=low, through=high)
        yield [conditions[0], window, *rest]
        low, size = high, min(size * 2, MAX_SEARCH_WINDOW)


PG_SEARCH_WINDOW = 4_096
_PROJECT_ID_RANGE = select(func.min(Item.id), func.max(Item.id)).where(
    Item.project_id == bindparam("a_project")
)


def _pg_id_windows(
    db: Session, project: Project, conditions: list[ColumnElement[bool]], after_id: int
) -> Iterator[list[ColumnElement[bool]]]:
    first, last = db.execute(_PROJECT_ID_RANGE, {"a_project": project.id}).one()
    if first is None:
        return
    low, size = max(after_id, first - 1), PG_SEARCH_WINDOW
    while low < last:
        high = min(low + size, last)
        yield [*conditions, Item.id > low, Item.id <= high]
        low, size = high, size * 4


def live_votes(db: Session, project_id: int, item_ids: Sequence[int]) -> dict[int, list[Vote]]:
    """Live annotations of these items, oldest first (the order the label rule reads)."""
    if not item_ids:
        return {}
    rows = db.execute(
        select(Annotation.item_id, Annotation.id, Label.name, Annotation.annotator_id, User.email,
               Annotation.source, Annotation.created_at)
        .outerjoin(Label, Label.id == Annotation.label_id)
        .outerjoin(User, User.id == Annotation.annotator_id)
        .where(Annotation.project_id == project_id, Annotation.item_id.in_(item_ids), live())
        .order_by(Annotation.item_id, Annotation.id)
    ).all()
    sets = set_names(db, [row[1] for row in rows if row[2] is None])
    votes: dict[int, list[Vote]] = {}
    for item_id, annotation_id, name, annotator_id, email, source, created in rows:
        votes.setdefault(item_id, []).append(
            Vote(annotation_id, name or sets.get(annotation_id, NONE_OF_THESE), annotator_id,
                 email, source, created)
        )
    return votes


def set_names(db: Session, annotation_ids: Sequence[int]) -> dict[int, str]:
    """Multi-label annotations' sets as one label text ("billing, bug"; "none of these")."""
    if not annotation_ids:
        return {}
    names: dict[int, list[str]] = {a: [] for a in annotation_ids}
    for start in range(0, len(annotation_ids), 5_000):
        for annotation_id, name in db.execute(
            select(AnnotationLabel.annotation_id, Label.name)
            .join(Label, Label.id == AnnotationLabel.label_id)
            .where(AnnotationLabel.annotation_id.in_(annotation_ids[start:start + 5_000]))
            .order_by(AnnotationLabel.annotation_id, Label.position)
        ).tuples():
            names[annotation_id].append(name)
    return {a: set_text(n) for a, n in names.items()}


def current_predictions(
    db: Session, project: Project, item_ids: Sequence[int]
) -> dict[int, Prediction]:
    """The current queue's top prediction for these items (others have none)."""
    if not item_ids:
        return {}
    rows = db.execute(
        select(QueueEntry.item_id, QueueEntry.predicted).where(
            QueueEntry.project_id == project.id,
            QueueEntry.queue_version == project.queue_version,
            QueueEntry.item_id.in_(item_ids),
        )
    ).all()
    found: dict[int, Prediction] = {}
    for item_id, predicted in rows:
        top = predicted[0] if isinstance(predicted, list) and predicted else None
        if isinstance(top, dict) and "label" in top and "prob" in top:
            found[item_id] = Prediction(str(top["label"]), float(top["prob"]))
    return found


@dataclass(frozen=True)
class Annotator:
    id: int
    email: str


def annotators(db: Session, project: Project) -> list[Annotator]:
    """Members of the project and anyone with an annotation in it (seed imports, admins)."""
    annotated = select(Annotation.annotator_id).where(
        Annotation.project_id == project.id
    ).distinct()
    members = select(Membership.user_id).where(Membership.project_id == project.id)
    rows = db.execute(
        select(User.id, User.email)
        .where(User.id.in_(annotated) | User.id.in_(members))
        .order_by(User.email)
    ).all()
    return [Annotator(*row) for row in rows]


# --------------------------------------------------------------------------- one item


@dataclass(frozen=True)
class AnnotationHistory:
    id: int
    label: str
    annotator: str | None
    source: str
    created_at: datetime
    status: str
    """"live", "superseded" (by an edit, a relabel or an adjudication) or "undone"."""
    batch_id: str | None


@dataclass(frozen=True)
class PredictionHistory:
    queue_version: int
    model_version: int | None
    rank: int
    score: float
    strategy: str
    reason: str
    predicted: list[Any]
    current: bool


@dataclass(frozen=True)
class EventHistory:
    action: str
    actor: str | None
    detail: dict[str, Any]
    created_at: datetime


@dataclass
class ItemDetail:
    item: Item
    label: str | None
    annotations: list[AnnotationHistory] = field(default_factory=list)
    predictions: list[PredictionHistory] = field(default_factory=list)
    events: list[EventHistory] = field(default_factory=list)


def item_detail(db: Session, project: Project, item_id: int) -> ItemDetail:
    """Everything known about one item of this project (another project's item is not found)."""
    item = db.scalar(select(Item).where(Item.id == item_id, Item.project_id == project.id))
    if item is None:
        raise NotFound(f"Item {item_id} is not in this project.", details={"item_id": item_id})
    history = db.execute(
        select(Annotation.id, Label.name, User.email, Annotation.source,
               Annotation.created_at, Annotation.deleted, Annotation.superseded_by_id,
               Annotation.batch_id)
        .outerjoin(Label, Label.id == Annotation.label_id)
        .outerjoin(User, User.id == Annotation.annotator_id)
        .where(Annotation.project_id == project.id, Annotation.item_id == item.id)
        .order_by(Annotation.id)
    ).all()
    sets = set_names(db, [row[0] for row in history if row[1] is None])
    annotations = [
        AnnotationHistory(
            id=a_id, label=name or sets.get(a_id, NONE_OF_THESE), annotator=email,
            source=source, created_at=created,
            status="undone" if deleted else "superseded" if superseded else "live",
            batch_id=batch,
        )
        for a_id, name, email, source, created, deleted, superseded, batch in history
    ]
    predictions = [
        PredictionHistory(qv, version, rank, score, strategy, reason, list(predicted or []),
                          qv == project.queue_version)
        for qv, version, rank, score, strategy, reason, predicted in db.execute(
            select(QueueEntry.queue_version, ModelVersion.version, QueueEntry.rank,
                   QueueEntry.score, QueueEntry.strategy, QueueEntry.reason,
                   QueueEntry.predicted)
            .outerjoin(ModelVersion, ModelVersion.id == QueueEntry.model_version_id)
            .where(QueueEntry.project_id == project.id, QueueEntry.item_id == item.id)
            .order_by(QueueEntry.queue_version.desc())
        )
    ]
    events = [
        EventHistory(action, email, dict(detail or {}), created)
        for action, email, detail, created in db.execute(
            select(ItemEvent.action, User.email, ItemEvent.detail, ItemEvent.created_at)
            .outerjoin(User, User.id == ItemEvent.actor_id)
            .where(ItemEvent.project_id == project.id, ItemEvent.item_id == item.id)
            .order_by(ItemEvent.id)
        )
    ]
    current = [a for a in annotations if a.status == "live"]
    label = adjudicated_names(db, project.id, [item.id]).get(item.id) or (
        resolved_sets(db, project, {item.id: [a.id for a in current]}).get(item.id)
        if project.task_type == TASK_MULTI_LABEL else resolved_label([a.label for a in current])
    )
    return ItemDetail(item=item, label=label, annotations=annotations,
                      predictions=predictions, events=events)


# --------------------------------------------------------------------------- bulk actions


@dataclass(frozen=True)
class Target:
    """What a bulk action acts on: the selected ids, or (``item_ids`` None) every match."""

    filters: Filters = field(default_factory=dict)
    item_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BulkResult:
    action: str
    items: int
    annotations_added: int = 0
    annotations_superseded: int = 0
    annotations_deleted: int = 0
    changed: int = 0

    def summary(self) -> str:
        words = {
            "relabel": f"Relabelled {self.items} item(s) "
                       f"({self.annotations_superseded} earlier annotation(s) superseded, kept).",
            "move": f"Moved {self.changed} of {self.items} item(s).",
            "exclude": f"Excluded {self.changed} of {self.items} item(s) from training.",
            "include": f"Included {self.changed} of {self.items} item(s) in training again.",
            "delete": f"Deleted {self.items} item(s) and {self.annotations_deleted} "
                      "annotation(s).",
        }
        return words[self.action]


def target_ids(db: Session, project: Project, target: Target) -> list[int]:
    """The target's ids in this project; a selected id of another project is not found."""
    query = select(Item.id).where(*_conditions(db, project, target.filters)).order_by(Item.id)
    if target.item_ids is None:
        with fulltext.search_plans(db, "q" in target.filters):
            return list(db.scalars(query))
    wanted = sorted(set(target.item_ids))
    if not wanted:
        raise InvalidInput("Select at least one item, or act on every matching item.")
    if len(wanted) > MAX_SELECTION:
        raise InvalidInput(f"At most {MAX_SELECTION} selected items; act on the filter instead.")
    found: list[int] = []
    for chunk in _chunks(wanted):
        in_project = set(db.scalars(
            select(Item.id).where(Item.project_id == project.id, Item.id.in_(chunk))
        ))
        missing = [i for i in chunk if i not in in_project]
        if missing:
            raise NotFound(f"Item {missing[0]} is not in this project.",
                           details={"item_id": missing[0]})
        found.extend(chunk)
    return found


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _now() -> datetime:
    return datetime.now(UTC)


def _events(db: Session, project: Project, actor: User, ids: Sequence[int], action: str,
            detail: Mapping[str, Any]) -> None:
    if ids:
        now = _now()
        db.execute(insert(ItemEvent), [
            {"project_id": project.id, "item_id": i, "actor_id": actor.id, "action": action,
             "detail": dict(detail), "created_at": now}
            for i in ids
        ])


def _bump_data_version(db: Session, project: Project) -> None:
    db.execute(update(Project).where(Project.id == project.id)
               .values(data_version=Project.data_version + 1))
    db.expire(project, ["data_version"])


def relabel(db: Session, project: Project, actor: User, target: Target, label_name: str
            ) -> BulkResult:
    """Give every target item ``label_name`` as a lead annotation; the item's other live
    annotations are superseded by it (kept, no longer counted)."""
    if project.task_type == TASK_MULTI_LABEL:
        raise InvalidInput(
            "This project is multi-label: give the new label set (label_ids, or labels by "
            "name; an empty list means none of these).", details={"field": "label_ids"})
    label_id = db.scalar(
        select(Label.id).where(Label.project_id == project.id, Label.name == label_name)
    )
    if label_id is None:
        raise InvalidInput(f"{label_name!r} is not a label of this project.",
                           details={"field": "label"})
    return _relabel(db, project, actor, target, label_id, (), {"label": label_name})


def relabel_set(
    db: Session, project: Project, actor: User, target: Target, *,
    label_ids: Sequence[int] | None = None, label_names: Sequence[str] | None = None,
) -> BulkResult:
    """Multi-label: give every target item this label set (by ids or by names; ``[]``: none of
    these) as a lead annotation, which replaces the item's set: its other live annotations are
    superseded by it (kept, no longer counted), as in :func:`relabel`."""
    if project.task_type != TASK_MULTI_LABEL:
        raise InvalidInput("This project is single-label: give one label to relabel with.",
                           details={"field": "label"})
    if (label_ids is None) == (label_names is None):
        raise InvalidInput(
            "This project is multi-label: give the new label set as label_ids (or as labels, "
            "by name); an empty list means none of these.", details={"field": "label_ids"})
    names = dict(db.execute(select(Label.id, Label.name).where(Label.project_id == project.id)
                            .order_by(Label.position)).tuples().all())
    if label_names is not None:
        label_ids = [label.id for label in labels_named(db, project, label_names)]
    chosen = project_label_set(db, project, label_ids or ())
    return _relabel(db, project, actor, target, None, chosen,
                    {"labels": [names[label_id] for label_id in chosen]})


def _relabel(db: Session, project: Project, actor: User, target: Target, label_id: int | None,
             label_set: Sequence[int], detail: Mapping[str, Any]) -> BulkResult:
    """Add the lead annotations (``label_id``, or a set when it is ``None``) and supersede the
    target items' other live annotations; ``detail`` names the label(s) in history and audit."""
    take_write_lock(db, project.id)
    ids = target_ids(db, project, target)
    batch = f"relabel-{uuid.uuid4().hex}"
    superseded = 0
    now = _now()
    for chunk in _chunks(ids):
        db.execute(insert(Annotation), [
            {"project_id": project.id, "item_id": i, "annotator_id": actor.id,
             "label_id": label_id, "source": LEAD_SOURCE, "deleted": False, "batch_id": batch,
             "guideline_version": project.guidelines_version, "created_at": now}
            for i in chunk
        ])
        if label_id is None and label_set:
            created = db.scalars(select(Annotation.id).where(
                Annotation.project_id == project.id, Annotation.batch_id == batch,
                Annotation.item_id.in_(chunk)))
            db.execute(insert(AnnotationLabel), [
                {"annotation_id": annotation_id, "label_id": member}
                for annotation_id in created for member in label_set
            ])
        new = aliased(Annotation)
        lead_annotation = (
            select(new.id)
            .where(new.project_id == project.id, new.batch_id == batch,
                   new.item_id == Annotation.item_id)
            .scalar_subquery()
        )
        result = db.execute(
            update(Annotation)
            .where(Annotation.project_id == project.id, Annotation.item_id.in_(chunk), live(),
                   func.coalesce(Annotation.batch_id, "") != batch)
            .values(superseded_by_id=lead_annotation)
            .execution_options(synchronize_session=False)
        )
        superseded += int(result.rowcount or 0)  # type: ignore[attr-defined]
        _events(db, project, actor, chunk, "relabel", {**detail, "batch": batch})
        clear_adjudications(db, project.id, chunk)  # the lead's label is the item's label now
    if ids:
        audit.record(db, project.id, audit.RELABEL, actor=actor,
                     item_id=ids[0] if len(ids) == 1 else None,
                     detail={**detail, "items": len(ids), "batch": batch,
                             "item_ids": list(ids[:AUDIT_LISTED_IDS])})
        _bump_data_version(db, project)
    db.flush()
    return BulkResult("relabel", len(ids), annotations_added=len(ids),
                      annotations_superseded=superseded)


def move(db: Session, project: Project, actor: User, target: Target, split: str) -> BulkResult:
    """Move the target items to ``split`` (pool, dev or test)."""
    _split(split)
    take_write_lock(db, project.id)
    ids = target_ids(db, project, target)
    changed = 0
    for chunk in _chunks(ids):
        for source in SPLITS:
            if source == split:
                continue
            moving = list(db.scalars(
                select(Item.id).where(Item.id.in_(chunk), Item.split == source)
            ))
            if not moving:
                continue
            db.execute(update(Item).where(Item.id.in_(moving)).values(split=split)
                       .execution_options(synchronize_session=False))
            _events(db, project, actor, moving, "move", {"from": source, "to": split})
            changed += len(moving)
    if changed:
        _bump_data_version(db, project)
    db.flush()
    return BulkResult("move", len(ids), changed=changed)


def set_excluded(db: Session, project: Project, actor: User, target: Target, excluded: bool
                 ) -> BulkResult:
    """Exclude the target items from training (the worker's labelled set skips them), or not."""
    take_write_lock(db, project.id)
    ids = target_ids(db, project, target)
    changed = 0
    for chunk in _chunks(ids):
        flipping = list(db.scalars(
            select(Item.id).where(Item.id.in_(chunk), Item.excluded.is_(not excluded))
        ))
        if not flipping:
            continue
        db.execute(update(Item).where(Item.id.in_(flipping)).values(excluded=excluded)
                   .execution_options(synchronize_session=False))
        _events(db, project, actor, flipping, "exclude" if excluded else "include", {})
        changed += len(flipping)
    if changed:
        _bump_data_version(db, project)
    db.flush()
    return BulkResult("exclude" if excluded else "include", len(ids), changed=changed)


@dataclass(frozen=True)
class DeletionImpact:
    items: int
    labelled_items: int
    annotations: int

    def message(self) -> str:
        return (
            f"Deleting {self.items} item(s) also deletes {self.annotations} annotation(s) on "
            f"{self.labelled_items} labelled item(s), their queue entries and leases. "
            "Confirm to delete them."
        )


def deletion_impact(db: Session, project: Project, ids: Sequence[int]) -> DeletionImpact:
    annotations = 0
    labelled = 0
    for chunk in _chunks(ids):
        counted = db.execute(
            select(func.count(), func.count(func.distinct(Annotation.item_id)))
            .where(Annotation.project_id == project.id, Annotation.item_id.in_(chunk))
        ).one()
        annotations += int(counted[0])
        labelled += int(counted[1])
    return DeletionImpact(items=len(ids), labelled_items=labelled, annotations=annotations)


def delete_items(db: Session, project: Project, actor: User, target: Target, *,
                 confirm: bool = False) -> BulkResult:
    """Delete the target items; refused (nothing deleted) when annotations would be lost and
    ``confirm`` is not set. The history keeps one ``delete`` event per item."""
    take_write_lock(db, project.id)
    ids = target_ids(db, project, target)
    impact = deletion_impact(db, project, ids)
    if impact.annotations and not confirm:
        raise ConfirmationRequired(impact.message(), details={
            "items": impact.items, "labelled_items": impact.labelled_items,
            "annotations": impact.annotations,
        })
    for chunk in _chunks(ids):
        for item_id, split, external_id in db.execute(
            select(Item.id, Item.split, Item.external_id).where(Item.id.in_(chunk))
        ):
            _events(db, project, actor, [item_id], "delete",
                    {"split": split, "external_id": external_id})
        db.execute(update(Annotation).where(Annotation.item_id.in_(chunk))
                   .values(superseded_by_id=None).execution_options(synchronize_session=False))
        for model in (QueueEntry, Lease, Annotation):
            db.execute(delete(model).where(model.item_id.in_(chunk))
                       .execution_options(synchronize_session=False))
        db.execute(delete(Item).where(Item.id.in_(chunk), Item.project_id == project.id)
                   .execution_options(synchronize_session=False))
    if impact.annotations:
        _bump_data_version(db, project)
    db.flush()
    return BulkResult("delete", len(ids), annotations_deleted=impact.annotations)


ACTIONS = ("relabel", "move", "exclude", "include", "delete")


def run_bulk_action(
    db: Session, project: Project, actor: User, target: Target, action: str, *,
    label: str | None = None, split: str | None = None, confirm: bool = False,
    label_ids: Sequence[int] | None = None, labels: Sequence[str] | None = None,
) -> BulkResult:
    """One entry point for the page and the API; a multi-label project relabels with a set
    (``label_ids`` or ``labels``), a single-label one with ``label``."""
    if action == "relabel" and project.task_type == TASK_MULTI_LABEL:
        if label is not None:
            raise InvalidInput(
                "This project is multi-label: give the new label set as label_ids (or as "
                "labels, by name), not one label.", details={"field": "label"})
        return relabel_set(db, project, actor, target, label_ids=label_ids, label_names=labels)
    if action == "relabel" and (label_ids is not None or labels is not None):
        raise InvalidInput("This project is single-label: give one label to relabel with.",
                           details={"field": "label"})
    if action == "relabel":
        if not label:
            raise InvalidInput("Choose the label to give.", details={"field": "label"})
        return relabel(db, project, actor, target, label)
    if action == "move":
        if not split:
            raise InvalidInput("Choose the split to move to.", details={"field": "split"})
        return move(db, project, actor, target, split)
    if action in ("exclude", "include"):
        return set_excluded(db, project, actor, target, action == "exclude")
    if action == "delete":
        return delete_items(db, project, actor, target, confirm=confirm)
    raise InvalidInput(f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.",
                       details={"field": "action"})

