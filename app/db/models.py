"""The data model. The database is the source of truth for every piece of state in Tapestry.

Relationships are ``lazy="raise"`` so every load is explicit. Enumerations are stored as short
strings (checked in the domain layer) so migrations stay identical on SQLite and Postgres.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import fulltext
from app.db.base import Base, CreatedMixin, IdMixin
from contract.strategies import DEFAULT_STRATEGY

# Roles. Global user role; project memberships carry a project role (lead, reviewer or
# annotator). A reviewer annotates and adjudicates (the review queue); leads are reviewers too.
ROLE_ADMIN = "admin"
ROLE_LEAD = "lead"
ROLE_REVIEWER = "reviewer"
ROLE_ANNOTATOR = "annotator"
ROLES = (ROLE_ADMIN, ROLE_LEAD, ROLE_ANNOTATOR)
PROJECT_ROLES = (ROLE_LEAD, ROLE_REVIEWER, ROLE_ANNOTATOR)

SCOPE_READ = "read"
SCOPE_ANNOTATE = "annotate"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_READ, SCOPE_ANNOTATE, SCOPE_ADMIN)

TASK_SINGLE_LABEL = "single_label"
TASK_MULTI_LABEL = "multi_label"
TASK_TYPES = (TASK_SINGLE_LABEL, TASK_MULTI_LABEL)
"""A project's task: one label per item, or a set of labels per item (possibly empty)."""

SPLIT_POOL = "pool"
SPLIT_DEV = "dev"
SPLIT_TEST = "test"
SPLITS = (SPLIT_POOL, SPLIT_DEV, SPLIT_TEST)

RUN_TAPT = "tapt"
RUN_RETRAIN = "retrain"
RUN_QUEUE = "recompute_queue"
RUN_SCORE = "score_pool"
"""Background: the promoted adapter scores the pool items its queue rebuild left out."""
RUN_KINDS = (RUN_TAPT, RUN_RETRAIN, RUN_QUEUE, RUN_SCORE)
RUN_LAUNCHABLE = (RUN_TAPT, RUN_RETRAIN, RUN_QUEUE)
"""The kinds a lead may launch by hand (pool scoring follows a promotion on its own)."""

RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"
RUN_STATUSES = (RUN_QUEUED, RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED)
RUN_ACTIVE = (RUN_QUEUED, RUN_RUNNING)

VERSION_READY = "ready"
VERSION_PROMOTED = "promoted"
VERSION_RETIRED = "retired"
VERSION_STATUSES = (VERSION_READY, VERSION_PROMOTED, VERSION_RETIRED)


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=ROLE_ANNOTATOR)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Signing out increments it; a session cookie of an older generation no longer works."""


class Project(IdMixin, CreatedMixin, Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    guidelines: Mapped[str] = mapped_column(Text, default="")
    task_type: Mapped[str] = mapped_column(
        String(20), default=TASK_SINGLE_LABEL, server_default=TASK_SINGLE_LABEL
    )
    """:data:`TASK_SINGLE_LABEL` or :data:`TASK_MULTI_LABEL`; fixed once the project has labels."""
    base_model: Mapped[str] = mapped_column(String(500), default="minilm")
    adapter_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    train_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    strategy: Mapped[str] = mapped_column(String(50), default=DEFAULT_STRATEGY)
    label_budget: Mapped[int] = mapped_column(Integer, default=1000)
    batch_size: Mapped[int] = mapped_column(Integer, default=100)
    reserve_fraction: Mapped[float] = mapped_column(Float, default=0.15)
    stop_threshold: Mapped[float] = mapped_column(Float, default=0.2)
    auto_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    annotations_per_item: Mapped[int] = mapped_column(Integer, default=1)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.05, server_default="0.05")
    """Share of hand-outs that are gold items (issue 16; see :mod:`app.domain.gold`)."""
    gold_min_accuracy: Mapped[float] = mapped_column(Float, default=0.8, server_default="0.8")
    gold_min_count: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    guidelines_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """The current version of ``guidelines`` (every edit adds a :class:`GuidelineVersion`)."""
    overlap_rate: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    """Share of labelled items routed to ``overlap_k`` annotators (:mod:`app.domain.agreement`)."""
    overlap_k: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    agreement_min_kappa: Mapped[float] = mapped_column(Float, default=0.6, server_default="0.6")
    agreement_min_items: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    data_version: Mapped[int] = mapped_column(Integer, default=0)
    queue_version: Mapped[int] = mapped_column(Integer, default=0)
    tapt_model_path: Mapped[str | None] = mapped_column(String(1000), default=None)
    current_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, ondelete="SET NULL"), default=None
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    labels: Mapped[list[Label]] = relationship(
        lazy="raise", order_by="Label.position", cascade="all, delete-orphan"
    )


class Label(IdMixin, Base):
    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        UniqueConstraint("project_id", "position"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    color: Mapped[str] = mapped_column(String(20), default="#4f46e5")
    shortcut: Mapped[str] = mapped_column(String(5), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(300), default="", server_default=text("''"))
    """One line a lead writes to say what the label means; the zero-shot cold start embeds it."""


class Membership(IdMixin, CreatedMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default=ROLE_ANNOTATOR)


class ApiToken(IdMixin, CreatedMixin, Base):
    __tablename__ = "api_tokens"

    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None, index=True
    )
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class Item(IdMixin, CreatedMixin, Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        Index("ix_items_project_split_id", "project_id", "split", "id"),
        Index("ix_items_project_external_id", "project_id", "external_id"),
        Index("ix_items_project_id", "project_id", "id"),  # the data manager's keyset order
        Index("ix_items_project_excluded_id", "project_id", "excluded", "id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(10), default=SPLIT_POOL)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set by a lead in the data manager: the item stays, but the worker's labelled set skips it.
    excluded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


fulltext.install(Item.__table__)  # type: ignore[arg-type]


class Annotation(IdMixin, CreatedMixin, Base):
    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_project_item", "project_id", "item_id"),
        # The data manager's filters read only these (covering) indexes: live annotations by
        # item (labelled, disagreement), by label and by annotator.
        Index("ix_annotations_project_live_item", "project_id", "deleted", "superseded_by_id",
              "item_id", "label_id"),
        Index("ix_annotations_project_label_live_item", "project_id", "label_id", "deleted",
              "superseded_by_id", "item_id"),
        Index("ix_annotations_project_annotator_live_item", "project_id", "annotator_id",
              "deleted", "superseded_by_id", "item_id"),
        Index("ix_annotations_project_batch", "project_id", "batch_id"),  # imports, submissions
        Index(
            "ix_annotations_project_annotator_created", "project_id", "annotator_id", "created_at"
        ),
        # A key is one client's: scoped by user and token, so two callers never share one.
        UniqueConstraint("project_id", "idempotency_scope", "idempotency_key"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), default=None
    )
    """The label of a single-label project; ``None`` in a multi-label project, whose annotation
    holds a set of labels in :class:`AnnotationLabel` (no row: "none of these")."""
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    source: Mapped[str] = mapped_column(String(20), default="ui")
    superseded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotations.id", ondelete="SET NULL"), default=None
    )
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, ondelete="SET NULL"), default=None
    )
    queue_version: Mapped[int | None] = mapped_column(Integer, default=None)
    batch_id: Mapped[str | None] = mapped_column(String(64), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    guideline_version: Mapped[int | None] = mapped_column(Integer, default=None)
    """The project's guidelines version when the label was given (None: before versions)."""
    idempotency_scope: Mapped[str | None] = mapped_column(String(40), default=None)
    """Whose key it is: ``u<user id>`` for a browser session, ``u<user id>.t<token id>`` for a
    token (see :func:`app.domain.annotation.labels.idempotency_scope`)."""


class AnnotationLabel(Base):
    """One label of a multi-label annotation's set (the set is all rows of one annotation)."""

    __tablename__ = "annotation_labels"
    __table_args__ = (Index("ix_annotation_labels_label_id", "label_id"),)

    annotation_id: Mapped[int] = mapped_column(
        ForeignKey("annotations.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[int] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )


class GoldItem(IdMixin, CreatedMixin, Base):
    """An item whose answer a lead fixed: handed to every annotator now and then to measure them.

    Its annotations never count against the budget nor train the model (see :mod:`app.domain.gold`).
    """

    __tablename__ = "gold_items"
    __table_args__ = (Index("ix_gold_items_project_id", "project_id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), unique=True
    )
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), default=None
    )
    """The answer of a single-label project; ``None`` in a multi-label project, whose answer is
    a set of labels in :class:`GoldItemLabel` (no row: "none of these")."""
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class GoldItemLabel(Base):
    """One label of a multi-label gold item's answer (the set is all rows of one gold item)."""

    __tablename__ = "gold_item_labels"
    __table_args__ = (Index("ix_gold_item_labels_label_id", "label_id"),)

    gold_item_id: Mapped[int] = mapped_column(
        ForeignKey("gold_items.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[int] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )


class OverlapItem(IdMixin, CreatedMixin, Base):
    """An item routed to ``Project.overlap_k`` annotators so their agreement can be measured.

    Marked when it is first handed out (see :mod:`app.domain.annotation.overlap`); done once that
    many annotators labelled it.
    """

    __tablename__ = "overlap_items"
    __table_args__ = (Index("ix_overlap_items_project_id", "project_id", "id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), unique=True
    )


class LabelIssue(IdMixin, CreatedMixin, Base):
    """A labelled item the model, trained without it, confidently puts in another class (issue 16:
    likely label errors, written by ``worker.tasks.label_errors``; one row per labelled item)."""

    __tablename__ = "label_issues"
    __table_args__ = (
        UniqueConstraint("project_id", "item_id"),
        Index("ix_label_issues_project_score", "project_id", "score"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    given_label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    suggested_label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    """``p(suggested) - p(given)`` out of fold; higher is more likely an error."""
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    data_version: Mapped[int] = mapped_column(Integer, default=0)
    feature_source: Mapped[str] = mapped_column(String(20), default="tfidf")


class Lease(IdMixin, CreatedMixin, Base):
    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id"),
        Index("ix_leases_project_annotator_expires", "project_id", "annotator_id", "expires_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column()


class TrainingRun(IdMixin, CreatedMixin, Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        Index("ix_training_runs_project_kind_status", "project_id", "kind", "status"),
        Index("ix_training_runs_status_heartbeat", "status", "heartbeat_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default=RUN_QUEUED)
    data_version: Mapped[int] = mapped_column(Integer, default=0)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, ondelete="SET NULL"), default=None
    )
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(50), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class ModelVersion(IdMixin, CreatedMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        Index("ix_model_versions_project_created", "project_id", "created_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL"), default=None
    )
    data_version: Mapped[int] = mapped_column(Integer, default=0)
    artifact_path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), default="")
    adapter_kind: Mapped[str] = mapped_column(String(30), default="")
    labels_used: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=VERSION_READY)
    promoted_at: Mapped[datetime | None] = mapped_column(default=None)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    """Kept by the retention sweep whatever its age (set by a lead)."""
    artifact_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    """Its artifact directory was removed by retention; the row stays as history (download: 410)."""


class QueueEntry(IdMixin, Base):
    __tablename__ = "queue_entries"
    __table_args__ = (
        Index("ix_queue_entries_project_version_rank", "project_id", "queue_version", "rank"),
        UniqueConstraint("project_id", "queue_version", "item_id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    queue_version: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    strategy: Mapped[str] = mapped_column(String(50), default="")
    reason: Mapped[str] = mapped_column(String(300), default="")
    predicted: Mapped[list[Any]] = mapped_column(default=list)
    neighbours: Mapped[list[Any]] = mapped_column(default=list)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), default=None
    )


class RoundMetric(IdMixin, CreatedMixin, Base):
    __tablename__ = "round_metrics"
    __table_args__ = (Index("ix_round_metrics_project_created", "project_id", "created_at"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), default=None
    )
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL"), default=None
    )
    labels_used: Mapped[int] = mapped_column(Integer, default=0)
    dev_accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    macro_f1: Mapped[float | None] = mapped_column(Float, default=None)
    per_class_f1: Mapped[dict[str, Any]] = mapped_column(default=dict)
    confusion: Mapped[list[Any]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stop_recommendations: Mapped[list[Any]] = mapped_column(default=list)


SERVED_LIVE_HEAD = "live_head"
SERVED_ADAPTER = "adapter"
SERVED_AVERAGE = "average"
SERVED_ZERO_SHOT = "zero_shot"
SERVED_KINDS = (SERVED_LIVE_HEAD, SERVED_ADAPTER, SERVED_AVERAGE, SERVED_ZERO_SHOT)


class LiveHeadState(IdMixin, Base):
    """The fast path of a project: the live head refit after labels, and which model is served.

    ``refit_pending`` coalesces refits: a label submission sends a refit job only when it flips
    the flag from false to true, and the worker clears it before it reads the labels, so at most
    one refit is waiting per project and a refit reads every label present when it starts.
    """

    __tablename__ = "live_head_states"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), unique=True
    )
    refit_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_at: Mapped[datetime | None] = mapped_column(default=None)
    fitted_at: Mapped[datetime | None] = mapped_column(default=None)
    refits: Mapped[int] = mapped_column(Integer, default=0)
    labels_used: Mapped[int] = mapped_column(Integer, default=0)
    encoder_key: Mapped[str] = mapped_column(String(200), default="")
    artifact_path: Mapped[str | None] = mapped_column(String(1000), default=None)
    served: Mapped[str] = mapped_column(String(20), default=SERVED_ZERO_SHOT)
    served_reason: Mapped[str] = mapped_column(Text, default="")
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """While a refit reads (embeds) texts no refit has read yet: ``done``, ``total``,
    ``started_at`` and ``updated_at``; ``{}`` otherwise (:func:`app.domain.live_head.reading`)."""


class ItemEvent(IdMixin, CreatedMixin, Base):
    """One line of an item's history written by the data manager (split moves, exclusions,
    relabels, deletions): who did what, when, and from which value to which."""

    __tablename__ = "item_events"
    __table_args__ = (Index("ix_item_events_project_item_created", "project_id", "item_id",
                            "created_at"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # No foreign key: the history of a deleted item is kept.
    item_id: Mapped[int] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    action: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


REVIEW_ACCEPT = "accept"
REVIEW_CHANGE = "change"
REVIEW_SEND_BACK = "send_back"
REVIEW_ACTIONS = (REVIEW_ACCEPT, REVIEW_CHANGE, REVIEW_SEND_BACK)


class ReviewDecision(IdMixin, CreatedMixin, Base):
    """A reviewer's decision on an item (issue 16): accept or change its label, or send it back.

    The item's latest ``active`` accept/change decision is its adjudicated label: it overrides the
    individual annotations in the worker's labelled set (they are all kept). A send-back takes
    the item's live annotations out of play (marked ``deleted``, kept) and hands it out again
    with ``note`` shown to annotators.
    """

    __tablename__ = "review_decisions"
    __table_args__ = (
        Index("ix_review_decisions_project_item_active", "project_id", "item_id", "active"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    action: Mapped[str] = mapped_column(String(20))
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), default=None
    )
    note: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(String(20), default="")
    """Why the item was in the review queue: disagreement, gold_miss or likely_error."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ReviewDecisionLabel(Base):
    """One label of a multi-label accept/change decision's set (the set is all rows of one
    decision; no row: "none of these"). Such a decision's own ``label_id`` is ``None``."""

    __tablename__ = "review_decision_labels"
    __table_args__ = (Index("ix_review_decision_labels_label_id", "label_id"),)

    decision_id: Mapped[int] = mapped_column(
        ForeignKey("review_decisions.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[int] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )


class AuditEvent(IdMixin, CreatedMixin, Base):
    """Who changed what in a project: adjudications, relabels, gold and role changes, guidelines."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_project_id", "project_id", "id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    action: Mapped[str] = mapped_column(String(40))
    item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    """The item concerned, if any (no foreign key: the record outlives the item)."""
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class GuidelineVersion(IdMixin, CreatedMixin, Base):
    """One version of a project's guidelines; every edit adds one, none is ever changed."""

    __tablename__ = "guideline_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
