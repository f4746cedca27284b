"""Multi-label projects: ``projects.task_type`` and the label sets of annotations.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

A multi-label project's annotation carries a set of labels (``annotation_labels``, no row for
"none of these") and no ``label_id``, which becomes nullable. Single-label projects and their
rows are unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_type", sa.String(length=20),
                                      server_default="single_label", nullable=False))
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=True)
    op.create_table(
        "annotation_labels",
        sa.Column("annotation_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["annotation_id"], ["annotations.id"],
                                name=op.f("fk_annotation_labels_annotation_id_annotations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"],
                                name=op.f("fk_annotation_labels_label_id_labels"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("annotation_id", "label_id", name=op.f("pk_annotation_labels")),
    )
    op.create_index("ix_annotation_labels_label_id", "annotation_labels", ["label_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_annotation_labels_label_id", table_name="annotation_labels")
    op.drop_table("annotation_labels")
    op.execute("DELETE FROM annotations WHERE label_id IS NULL")
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("task_type")
