"""Data manager: items.excluded, item_events, the filters' indexes and full-text search.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Full-text search is not an ORM table (see app/db/fulltext.py): on SQLite an FTS5 table over
``items`` with triggers, filled from the existing rows here; on Postgres a stored generated
``search_vector`` column with a GIN index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import fulltext

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('excluded', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.create_index('ix_items_project_id', ['project_id', 'id'], unique=False)
        batch_op.create_index('ix_items_project_excluded_id', ['project_id', 'excluded', 'id'],
                              unique=False)
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.create_index('ix_annotations_project_live_item',
                              ['project_id', 'deleted', 'superseded_by_id', 'item_id',
                               'label_id'], unique=False)
        batch_op.create_index('ix_annotations_project_label_live_item',
                              ['project_id', 'label_id', 'deleted', 'superseded_by_id',
                               'item_id'], unique=False)
        batch_op.create_index('ix_annotations_project_annotator_live_item',
                              ['project_id', 'annotator_id', 'deleted', 'superseded_by_id',
                               'item_id'], unique=False)
    op.create_table('item_events',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'],
                            name=op.f('fk_item_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                            name=op.f('fk_item_events_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item_events'))
    )
    with op.batch_alter_table('item_events', schema=None) as batch_op:
        batch_op.create_index('ix_item_events_project_item_created',
                              ['project_id', 'item_id', 'created_at'], unique=False)
    if _is_sqlite():
        fulltext.create_sqlite_search(op.get_bind(), rebuild=True)
    else:
        for statement in fulltext.PG_CREATE:
            op.execute(statement)


def downgrade() -> None:
    if _is_sqlite():
        for statement in fulltext.SQLITE_DROP:
            op.execute(statement)
    else:
        for statement in fulltext.PG_DROP:
            op.execute(statement)
    with op.batch_alter_table('item_events', schema=None) as batch_op:
        batch_op.drop_index('ix_item_events_project_item_created')
    op.drop_table('item_events')
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_index('ix_annotations_project_annotator_live_item')
        batch_op.drop_index('ix_annotations_project_label_live_item')
        batch_op.drop_index('ix_annotations_project_live_item')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_project_excluded_id')
        batch_op.drop_index('ix_items_project_id')
        batch_op.drop_column('excluded')
