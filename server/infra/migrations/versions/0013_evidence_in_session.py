"""evidence added in a live session: its session, who submitted it, the mediator's review

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('submitted_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('submitted_name', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('review', sa.String(length=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_column('review')
        batch_op.drop_column('submitted_name')
        batch_op.drop_column('submitted_by')
        batch_op.drop_column('session_id')
