"""Model-version retention: ``pinned`` and ``artifact_deleted`` flags.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* ``model_versions.pinned``: a lead keeps this version's artifact whatever the retention setting.
* ``model_versions.artifact_deleted``: the retention sweep removed the artifact directory; the row
  stays as history and its download answers 410 Gone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('pinned', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column('artifact_deleted', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.alter_column('pinned', server_default=None)
        batch_op.alter_column('artifact_deleted', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('artifact_deleted')
        batch_op.drop_column('pinned')
