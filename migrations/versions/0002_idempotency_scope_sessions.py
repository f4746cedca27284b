"""Idempotency keys scoped by caller; a session generation per user (sign-out ends sessions).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

* ``annotations.idempotency_scope`` (``u<user>`` or ``u<user>.t<token>``) joins the unique key,
  which was ``(project_id, idempotency_key)``: two users sending the same key each get their own
  label. Existing keyed rows get the scope of their annotator (as a browser session), so a retry
  through a session still replays.
* ``users.session_generation``: incremented on sign-out; cookies of older generations are refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_scope', sa.String(length=40), nullable=True))
    op.execute(
        "UPDATE annotations SET idempotency_scope = 'u' || CAST(annotator_id AS VARCHAR(20)) "
        "WHERE idempotency_key IS NOT NULL AND annotator_id IS NOT NULL"
    )
    op.execute(
        "UPDATE annotations SET idempotency_scope = 'u' "
        "WHERE idempotency_key IS NOT NULL AND annotator_id IS NULL"
    )
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_constraint('uq_annotations_project_id_idempotency_key', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_annotations_project_id_idempotency_scope_idempotency_key'),
            ['project_id', 'idempotency_scope', 'idempotency_key'],
        )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_generation', sa.Integer(),
                                      server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_generation')
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_constraint(
            'uq_annotations_project_id_idempotency_scope_idempotency_key', type_='unique'
        )
    # Keys that now repeat across users cannot share one project-wide unique key: keep the
    # first annotation's key, forget the others' (their labels stay).
    op.execute(
        "UPDATE annotations SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND id > "
        "(SELECT MIN(a.id) FROM annotations a WHERE a.project_id = annotations.project_id "
        "AND a.idempotency_key = annotations.idempotency_key)"
    )
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f('uq_annotations_project_id_idempotency_key'),
            ['project_id', 'idempotency_key'],
        )
        batch_op.drop_column('idempotency_scope')
