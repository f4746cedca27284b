"""Gold items and per-project gold settings (issue 16).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* ``gold_items``: an item whose answer a lead fixed (one row per item).
* ``label_issues``: likely label errors (confident learning), one row per labelled item.
* ``projects.gold_rate`` / ``gold_min_accuracy`` / ``gold_min_count``: how often gold is handed
  out, and when an annotator's gold accuracy flags them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('gold_rate', sa.Float(), server_default='0.05', nullable=False)
        )
        batch_op.add_column(
            sa.Column('gold_min_accuracy', sa.Float(), server_default='0.8', nullable=False)
        )
        batch_op.add_column(
            sa.Column('gold_min_count', sa.Integer(), server_default='10', nullable=False)
        )
    op.create_table(
        'gold_items',
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('label_id', sa.Integer(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'],
                                name=op.f('fk_gold_items_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'],
                                name=op.f('fk_gold_items_item_id_items'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['label_id'], ['labels.id'],
                                name=op.f('fk_gold_items_label_id_labels'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_gold_items_project_id_projects'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gold_items')),
        sa.UniqueConstraint('item_id', name=op.f('uq_gold_items_item_id')),
    )
    op.create_index('ix_gold_items_project_id', 'gold_items', ['project_id'], unique=False)
    op.create_table(
        'label_issues',
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('given_label_id', sa.Integer(), nullable=False),
        sa.Column('suggested_label_id', sa.Integer(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('flagged', sa.Boolean(), nullable=False),
        sa.Column('data_version', sa.Integer(), nullable=False),
        sa.Column('feature_source', sa.String(length=20), nullable=False),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['given_label_id'], ['labels.id'],
                                name=op.f('fk_label_issues_given_label_id_labels'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['item_id'], ['items.id'],
                                name=op.f('fk_label_issues_item_id_items'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_label_issues_project_id_projects'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['suggested_label_id'], ['labels.id'],
                                name=op.f('fk_label_issues_suggested_label_id_labels'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_label_issues')),
        sa.UniqueConstraint('project_id', 'item_id',
                            name=op.f('uq_label_issues_project_id_item_id')),
    )
    op.create_index('ix_label_issues_project_score', 'label_issues', ['project_id', 'score'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_label_issues_project_score', table_name='label_issues')
    op.drop_table('label_issues')
    op.drop_index('ix_gold_items_project_id', table_name='gold_items')
    op.drop_table('gold_items')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('gold_min_count')
        batch_op.drop_column('gold_min_accuracy')
        batch_op.drop_column('gold_rate')
