"""Live head: how far a refit has read the pool (``live_head_states.progress``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The first refit of a 100,000-item project embeds every text (half an hour on a 2-core CPU); the
refit writes its progress here so that the dashboard, the annotator's page and the API can show
it with an estimate of the time left. ``{}`` when nothing is being read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("live_head_states", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("progress", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("live_head_states", schema=None) as batch_op:
        batch_op.alter_column("progress", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("live_head_states", schema=None) as batch_op:
        batch_op.drop_column("progress")
