"""joining by telephone: a session's dial-in number, an invite's PIN digest and participant id

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dial_in', sa.String(length=12), nullable=True))
        batch_op.create_unique_constraint('uq_sessions_dial_in', ['dial_in'])
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pin_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('participant_id', sa.String(length=60), nullable=True))
        batch_op.create_index('ix_invites_pin_digest', ['pin_digest'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_index('ix_invites_pin_digest')
        batch_op.drop_column('participant_id')
        batch_op.drop_column('pin_digest')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sessions_dial_in', type_='unique')
        batch_op.drop_column('dial_in')
