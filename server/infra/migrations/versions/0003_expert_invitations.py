"""expert invitations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 17:54:03.026328
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('specialty', sa.String(length=40), server_default='', nullable=False))
        batch_op.add_column(sa.Column('organisation', sa.String(length=200), server_default='', nullable=False))
        batch_op.add_column(sa.Column('direct', sa.Boolean(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_column('direct')
        batch_op.drop_column('organisation')
        batch_op.drop_column('specialty')

