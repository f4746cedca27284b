"""Overlap routing and agreement settings (issue 16, item 2).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

* ``overlap_items``: an item routed to several annotators so their agreement is measured.
* ``projects.overlap_rate`` / ``overlap_k``: the share of items routed to ``k`` annotators.
* ``projects.agreement_min_kappa`` / ``agreement_min_items``: when an annotator's agreement with
  the others flags them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("overlap_rate", sa.Float(), server_default="0.1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("overlap_k", sa.Integer(), server_default="2", nullable=False)
        )
        batch_op.add_column(
            sa.Column("agreement_min_kappa", sa.Float(), server_default="0.6", nullable=False)
        )
        batch_op.add_column(
            sa.Column("agreement_min_items", sa.Integer(), server_default="20", nullable=False)
        )
    op.create_table(
        "overlap_items",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_overlap_items_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_overlap_items_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overlap_items")),
        sa.UniqueConstraint("item_id", name=op.f("uq_overlap_items_item_id")),
    )
    op.create_index(
        "ix_overlap_items_project_id", "overlap_items", ["project_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_overlap_items_project_id", table_name="overlap_items")
    op.drop_table("overlap_items")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("agreement_min_items")
        batch_op.drop_column("agreement_min_kappa")
        batch_op.drop_column("overlap_k")
        batch_op.drop_column("overlap_rate")
