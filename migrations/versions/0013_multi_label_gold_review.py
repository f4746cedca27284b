"""Multi-label gold answers and review decisions: label sets for ``gold_items`` and
``review_decisions``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

A multi-label project's gold answer is a set of labels (``gold_item_labels``, no row for "none of
these") and no ``label_id``, which becomes nullable. A reviewer's accept or change on such a
project holds its set in ``review_decision_labels`` (``review_decisions.label_id`` is already
nullable). Single-label projects and their rows are unchanged.

Downgrading drops the sets: multi-label gold items (``label_id`` NULL) are removed, and a
multi-label decision keeps its row without its set.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gold_items", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=True)
    op.create_table(
        "gold_item_labels",
        sa.Column("gold_item_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["gold_item_id"], ["gold_items.id"],
                                name=op.f("fk_gold_item_labels_gold_item_id_gold_items"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"],
                                name=op.f("fk_gold_item_labels_label_id_labels"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("gold_item_id", "label_id", name=op.f("pk_gold_item_labels")),
    )
    op.create_index("ix_gold_item_labels_label_id", "gold_item_labels", ["label_id"],
                    unique=False)
    op.create_table(
        "review_decision_labels",
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["review_decisions.id"],
                                name=op.f("fk_review_decision_labels_decision_id_review_decisions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"],
                                name=op.f("fk_review_decision_labels_label_id_labels"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("decision_id", "label_id",
                                name=op.f("pk_review_decision_labels")),
    )
    op.create_index("ix_review_decision_labels_label_id", "review_decision_labels",
                    ["label_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_decision_labels_label_id", table_name="review_decision_labels")
    op.drop_table("review_decision_labels")
    op.drop_index("ix_gold_item_labels_label_id", table_name="gold_item_labels")
    op.drop_table("gold_item_labels")
    op.execute("DELETE FROM gold_items WHERE label_id IS NULL")
    with op.batch_alter_table("gold_items", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=False)
