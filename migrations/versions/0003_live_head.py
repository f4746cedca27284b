"""Live head (two-speed learner): label descriptions and the per-project live-head state.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.add_column(
            sa.Column(
                "description", sa.String(length=300), nullable=False,
                server_default=sa.text("''"),
            )
        )
    op.create_table(
        "live_head_states",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("refit_pending", sa.Boolean(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refits", sa.Integer(), nullable=False),
        sa.Column("labels_used", sa.Integer(), nullable=False),
        sa.Column("encoder_key", sa.String(length=200), nullable=False),
        sa.Column("artifact_path", sa.String(length=1000), nullable=True),
        sa.Column("served", sa.String(length=20), nullable=False),
        sa.Column("served_reason", sa.Text(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_live_head_states_project_id_projects"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_head_states")),
        sa.UniqueConstraint("project_id", name=op.f("uq_live_head_states_project_id")),
    )


def downgrade() -> None:
    op.drop_table("live_head_states")
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("description")
