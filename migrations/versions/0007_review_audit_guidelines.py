"""Review queue decisions, the audit log and versioned guidelines (issue 16).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

* ``review_decisions``: a reviewer's accept / change / send-back on an item; the latest active
  accept or change is the item's adjudicated label.
* ``audit_events``: who changed what in a project (adjudications, relabels, gold, roles).
* ``guideline_versions``: every version of a project's guidelines; ``projects.guidelines_version``
  is the current one and ``annotations.guideline_version`` the one a label was given under.
  Existing projects get their current text as version 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("guidelines_version", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guideline_version", sa.Integer(), nullable=True))
    op.create_table(
        "review_decisions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("review_decisions", "item_id", "items", "CASCADE"),
        _fk("review_decisions", "label_id", "labels", "CASCADE"),
        _fk("review_decisions", "project_id", "projects", "CASCADE"),
        _fk("review_decisions", "reviewer_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
    )
    op.create_index(
        "ix_review_decisions_project_item_active",
        "review_decisions",
        ["project_id", "item_id", "active"],
        unique=False,
    )
    op.create_table(
        "audit_events",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("audit_events", "actor_id", "users", "SET NULL"),
        _fk("audit_events", "project_id", "projects", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        "ix_audit_events_project_id", "audit_events", ["project_id", "id"], unique=False
    )
    op.create_table(
        "guideline_versions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("guideline_versions", "created_by_id", "users", "SET NULL"),
        _fk("guideline_versions", "project_id", "projects", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guideline_versions")),
        sa.UniqueConstraint(
            "project_id", "version", name=op.f("uq_guideline_versions_project_id_version")
        ),
    )
    op.execute(
        "INSERT INTO guideline_versions (project_id, version, text, created_by_id, created_at) "
        "SELECT id, 1, guidelines, created_by_id, created_at FROM projects"
    )


def downgrade() -> None:
    op.drop_table("guideline_versions")
    op.drop_index("ix_audit_events_project_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_review_decisions_project_item_active", table_name="review_decisions")
    op.drop_table("review_decisions")
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_column("guideline_version")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("guidelines_version")
