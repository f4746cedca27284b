"""Projects: creation, the label set, settings, membership, and what a user may list.

Access checks live in :mod:`app.deps`; these functions trust their caller to have done them, except
:func:`list_visible_projects`, which *is* the visibility rule for listings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.db.models import (
    PROJECT_ROLES,
    ROLE_ADMIN,
    ROLE_LEAD,
    SPLITS,
    TASK_MULTI_LABEL,
    TASK_SINGLE_LABEL,
    TASK_TYPES,
    Annotation,
    AnnotationLabel,
    GoldItem,
    GoldItemLabel,
    Item,
    Label,
    Membership,
    Project,
    ReviewDecision,
    ReviewDecisionLabel,
    User,
)
from app.domain import audit
from app.domain.annotation.common import project_labels
from app.domain.guidelines import set_guidelines, start_versions
from app.domain.policy import BudgetSettings, live
from app.errors import Conflict, InvalidInput, NotFound
from contract.strategies import DEFAULT_MULTI_LABEL_STRATEGY, DEFAULT_STRATEGY

MIN_LABELS = 2
MAX_LABELS = 200
MAX_DESCRIPTION_CHARS = 20_000
MAX_GUIDELINES_CHARS = 100_000
"""Caps on a project's description and guidelines, checked by :class:`ProjectSettings` (so the
API, the settings page and the new-project form agree) and stated in the API's schemas."""
LABEL_COLORS = (
    "#4f46e5", "#0891b2", "#059669", "#ca8a04", "#dc2626", "#db2777",
    "#7c3aed", "#2563eb", "#16a34a", "#ea580c", "#0d9488", "#9333ea",
)
SHORTCUTS = "1234567890qwertyuiopasdfghjklzxcvbnm"
LEAD_CAPABLE_ROLES = (ROLE_LEAD, ROLE_ADMIN)
"""Global roles that can act as a project's lead. A project-lead membership of a global annotator
gives annotator powers only (:mod:`app.deps` caps project levels by the current global role)."""


class LastLead(Conflict):
    """The change would leave a project without anyone able to lead it."""

    code = "last_lead"


@dataclass(frozen=True)
class ProjectSettings:
    """What a lead edits on the settings page; validated here so every entry point agrees."""

    name: str
    labels: tuple[str, ...]
    description: str = ""
    guidelines: str = ""
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    """Budget and stop settings, validated by their own object (the same one everywhere)."""
    annotations_per_item: int = 1
    task_type: str = TASK_SINGLE_LABEL
    """One label per item or a set (:data:`app.db.models.TASK_TYPES`); fixed once labels exist."""

    def __post_init__(self) -> None:
        name = self.name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("A project needs a name of 1 to 200 characters.",
                               details={"field": "name"})
        object.__setattr__(self, "name", name)
        for field_name, what, cap in (("description", "The description", MAX_DESCRIPTION_CHARS),
                                      ("guidelines", "The guidelines", MAX_GUIDELINES_CHARS)):
            length = len(getattr(self, field_name))
            if length > cap:
                raise InvalidInput(f"{what} may be at most {cap:,} characters (got {length:,}).",
                                   details={"field": field_name})
        labels = tuple(label.strip() for label in self.labels if label.strip())
        if not MIN_LABELS <= len(labels) <= MAX_LABELS:
            raise InvalidInput(
                f"Define between {MIN_LABELS} and {MAX_LABELS} labels, one per line "
                f"(got {len(labels)}).",
                details={"field": "labels"},
            )
        seen: set[str] = set()
        for label in labels:
            if len(label) > 200:
                raise InvalidInput(f"Label {label[:40]!r}... is longer than 200 characters.",
                                   details={"field": "labels"})
            if label.casefold() in seen:
                raise InvalidInput(f"Label {label!r} appears twice.", details={"field": "labels"})
            seen.add(label.casefold())
        object.__setattr__(self, "labels", labels)
        if not 1 <= self.annotations_per_item <= 10:
            raise InvalidInput("Annotations per item must be between 1 and 10.",
                               details={"field": "annotations_per_item"})
        if self.task_type not in TASK_TYPES:
            raise InvalidInput(f"The task type must be one of {', '.join(TASK_TYPES)}.",
                               details={"field": "task_type"})


@dataclass(frozen=True)
class ProjectCounts:
    items: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    labelled_items: int = 0
    annotations: int = 0
    per_label: dict[str, int] = field(default_factory=dict)


def create_project(db: Session, *, creator: User, settings: ProjectSettings) -> Project:
    """Create a project with its labels; the creator becomes its lead."""
    project = Project(
        name=settings.name,
        description=settings.description,
        guidelines=settings.guidelines,
        annotations_per_item=settings.annotations_per_item,
        task_type=settings.task_type,
        created_by_id=creator.id,
    )
    settings.budget.apply(project)
    if settings.task_type == TASK_MULTI_LABEL:
        project.strategy = DEFAULT_MULTI_LABEL_STRATEGY
    db.add(project)
    db.flush()
    for position, name in enumerate(settings.labels):
        db.add(_new_label(project.id, name, position))
    db.add(Membership(project_id=project.id, user_id=creator.id, role=ROLE_LEAD))
    start_versions(db, project, by=creator)
    db.flush()
    return project


def update_project(db: Session, project: Project, settings: ProjectSettings,
                   *, by: User | None = None) -> Project:
    """Apply settings; the label change goes first because it is the part that can be refused.

    Changed guidelines become a new version (:mod:`app.domain.guidelines`). The task type can
    change only while the project has no labels (annotations or gold answers) at all."""
    if settings.task_type != project.task_type:
        _check_task_type_change(db, project)
    set_labels(db, project.id, settings.labels)
    project.name = settings.name
    project.description = settings.description
    set_guidelines(db, project, settings.guidelines, by=by)
    settings.budget.apply(project)
    project.annotations_per_item = settings.annotations_per_item
    if settings.task_type != project.task_type:  # allowed only before any label
        project.task_type = settings.task_type
        multi = settings.task_type == TASK_MULTI_LABEL
        project.strategy = DEFAULT_MULTI_LABEL_STRATEGY if multi else DEFAULT_STRATEGY
    db.flush()
    return project


def _check_task_type_change(db: Session, project: Project) -> None:
    labelled = db.scalar(select(func.count()).select_from(Annotation)
                         .where(Annotation.project_id == project.id)) or 0
    gold = db.scalar(select(func.count()).select_from(GoldItem)
                     .where(GoldItem.project_id == project.id)) or 0
    if labelled or gold:
        raise Conflict(
            "The task type cannot change once the project has labels "
            f"({labelled} annotations, {gold} gold items, counting undone ones): single- and "
            "multi-label answers do not convert into each other. Create a new project instead.",
            details={"field": "task_type", "annotations": labelled, "gold": gold},
        )


def get_labels(db: Session, project_id: int) -> list[Label]:
    return project_labels(db, project_id)


def set_labels(db: Session, project_id: int, names: Sequence[str]) -> list[Label]:
    """Make the label set equal ``names`` (in that order); labels in use cannot be removed."""
    existing = {label.name: label for label in get_labels(db, project_id)}
    removed = [label for name, label in existing.items() if name not in names]
    for label in removed:
        used = (db.scalar(select(func.count()).select_from(Annotation)
                          .where(Annotation.label_id == label.id)) or 0) + (
            db.scalar(select(func.count()).select_from(AnnotationLabel)
                      .where(AnnotationLabel.label_id == label.id)) or 0)
        if used:
            raise Conflict(
                f"Label {label.name!r} has {used} annotations and cannot be removed.",
                details={"label": label.name, "annotations": used},
            )
        gold = (db.scalar(select(func.count()).select_from(GoldItem)
                          .where(GoldItem.label_id == label.id)) or 0) + (
            db.scalar(select(func.count()).select_from(GoldItemLabel)
                      .where(GoldItemLabel.label_id == label.id)) or 0)
        if gold:  # the foreign keys would delete those gold answers (or shrink their sets)
            raise Conflict(
                f"Label {label.name!r} is the answer of {gold} gold items and cannot be removed; "
                "change or unmark those gold items first.",
                details={"label": label.name, "gold_items": gold},
            )
        decided = (db.scalar(select(func.count()).select_from(ReviewDecision)
                             .where(ReviewDecision.label_id == label.id,
                                    ReviewDecision.active.is_(True))) or 0) + (
            db.scalar(select(func.count()).select_from(ReviewDecisionLabel)
                      .join(ReviewDecision, ReviewDecision.id == ReviewDecisionLabel.decision_id)
                      .where(ReviewDecisionLabel.label_id == label.id,
                             ReviewDecision.active.is_(True))) or 0)
        if decided:  # the foreign keys would delete those reviewers' decisions
            raise Conflict(
                f"Label {label.name!r} is what a reviewer decided for {decided} items and "
                "cannot be removed; change those decisions first.",
                details={"label": label.name, "review_decisions": decided},
            )
    for label in removed:
        db.delete(label)
    # Two steps keep the (project, position) unique constraint satisfied while reordering.
    for offset, label in enumerate(existing.values()):
        label.position = -1 - offset
    db.flush()
    result = []
    for position, name in enumerate(names):
        label = existing.get(name) or _new_label(project_id, name, position)
        label.position = position
        db.add(label)
        result.append(label)
    db.flush()
    return result


def _new_label(project_id: int, name: str, position: int) -> Label:
    return Label(
        project_id=project_id,
        name=name,
        position=position,
        color=LABEL_COLORS[position % len(LABEL_COLORS)],
        shortcut=SHORTCUTS[position] if position < len(SHORTCUTS) else "",
    )


def list_visible_projects(db: Session, user: User, *, only_project_id: int | None = None,
                          ) -> list[Project]:
    """Projects the user may see: all for admins, else those they are a member of."""
    query = select(Project).order_by(Project.created_at.desc(), Project.id.desc())
    if user.role != ROLE_ADMIN:
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == user.id
        )
    if only_project_id is not None:
        query = query.where(Project.id == only_project_id)
    return list(db.scalars(query))


def project_counts(db: Session, project_id: int) -> ProjectCounts:
    by_split = {split: 0 for split in SPLITS}
    for split, count in db.execute(
        select(Item.split, func.count()).where(Item.project_id == project_id).group_by(Item.split)
    ):
        by_split[split] = count
    of_project = and_(Annotation.project_id == project_id, live())
    labelled = (
        db.scalar(select(func.count(func.distinct(Annotation.item_id))).where(of_project)) or 0
    )
    annotations = db.scalar(select(func.count()).select_from(Annotation).where(of_project)) or 0
    per_label = {name: 0 for name in (label.name for label in get_labels(db, project_id))}
    for name, count in db.execute(
        select(Label.name, func.count()).join(Annotation, Annotation.label_id == Label.id)
        .where(of_project).group_by(Label.name)
    ):
        per_label[name] = count
    for name, count in db.execute(  # multi-label: every label of every live set
        select(Label.name, func.count()).join(AnnotationLabel, AnnotationLabel.label_id == Label.id)
        .join(Annotation, Annotation.id == AnnotationLabel.annotation_id)
        .where(of_project).group_by(Label.name)
    ):
        per_label[name] += count
    return ProjectCounts(
        items=sum(by_split.values()),
        by_split=by_split,
        labelled_items=labelled,
        annotations=annotations,
        per_label=per_label,
    )


@dataclass(frozen=True)
class MemberRow:
    user_id: int
    email: str
    name: str
    role: str


def list_members(db: Session, project_id: int) -> list[MemberRow]:
    rows = db.execute(
        select(User.id, User.email, User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project_id)
        .order_by(User.email)
    )
    return [MemberRow(user_id=r[0], email=r[1], name=r[2], role=r[3]) for r in rows]


def acting_lead_ids(db: Session, project_id: int) -> set[int]:
    """Members who can lead the project now: a lead membership, an active account, and a global
    role that allows it (a demoted lead keeps the membership row but not the power)."""
    return set(db.scalars(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id, Membership.role == ROLE_LEAD,
               User.is_active.is_(True), User.role.in_(LEAD_CAPABLE_ROLES))
    ))


def ensure_lead_remains(db: Session, project_id: int, losing_user_id: int) -> None:
    """Refuse (409 ``last_lead``) a change that takes the last acting lead away from a project:
    a demotion (in the project or globally) or a removal, the lead's own included."""
    leads = acting_lead_ids(db, project_id)
    if losing_user_id in leads and len(leads) == 1:
        name = db.scalar(select(Project.name).where(Project.id == project_id))
        raise LastLead(
            f"This is the last lead of project {name!r}; make another member lead first.",
            details={"project_id": project_id, "user_id": losing_user_id},
        )


def check_can_lead(user: User) -> None:
    """Only global leads and admins can be made project leads (the role would give no power)."""
    if user.role not in LEAD_CAPABLE_ROLES:
        raise InvalidInput(
            f"{user.email} has the global {user.role} role; only leads and admins can lead a "
            "project. An admin changes global roles.",
            details={"field": "role"},
        )


def add_member(db: Session, project_id: int, *, email: str, role: str,
               by: User | None = None) -> Membership:
    """Add a user (by e-mail) to a project, or change their project role (``by``: who, for the
    audit log)."""
    if role not in PROJECT_ROLES:
        raise InvalidInput(f"Project role must be one of {', '.join(PROJECT_ROLES)}.",
                           details={"field": "role"})
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No user with e-mail {email.strip()!r}; an admin creates accounts first.")
    return set_member_role(db, project_id, user, role, by=by)


def set_member_role(db: Session, project_id: int, user: User, role: str,
                    *, by: User | None = None) -> Membership:
    """Make ``user`` a member with ``role``; a lead stays a lead while they are the last one.

    Reviewers (``reviewer``) annotate and adjudicate; any active account can be one."""
    if role not in PROJECT_ROLES:
        raise InvalidInput(f"Project role must be one of {', '.join(PROJECT_ROLES)}.",
                           details={"field": "role"})
    if role == ROLE_LEAD:
        check_can_lead(user)
    membership = db.scalar(select(Membership).where(
        Membership.project_id == project_id, Membership.user_id == user.id))
    before = membership.role if membership is not None else None
    if membership is None:
        membership = Membership(project_id=project_id, user_id=user.id, role=role)
        db.add(membership)
    else:
        if membership.role == ROLE_LEAD and role != ROLE_LEAD:
            ensure_lead_remains(db, project_id, user.id)
        membership.role = role
    if before != role:
        audit.record(db, project_id, audit.ROLE_SET, actor=by,
                     detail={"user_id": user.id, "email": user.email, "from": before, "to": role})
    db.flush()
    return membership


def remove_member(db: Session, project_id: int, user_id: int, *, by: User | None = None) -> None:
    membership = db.scalar(select(Membership).where(
        Membership.project_id == project_id, Membership.user_id == user_id))
    if membership is None:
        raise NotFound("That user is not a member of this project.")
    if membership.role == ROLE_LEAD:
        ensure_lead_remains(db, project_id, user_id)
    audit.record(db, project_id, audit.MEMBER_REMOVE, actor=by,
                 detail={"user_id": user_id, "from": membership.role})
    db.delete(membership)
    db.flush()


def projects_led_only_by(db: Session, user_id: int) -> list[Project]:
    """Projects where ``user_id`` is the one acting lead (a global demotion would orphan them)."""
    led = db.scalars(select(Membership.project_id).where(
        Membership.user_id == user_id, Membership.role == ROLE_LEAD)).all()
    orphaned = [pid for pid in led if acting_lead_ids(db, pid) == {user_id}]
    if not orphaned:
        return []
    return list(db.scalars(select(Project).where(Project.id.in_(orphaned)).order_by(Project.id)))
