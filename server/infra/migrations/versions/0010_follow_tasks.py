"""follow-up (回访) and review tasks

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('follow_tasks',
    sa.Column('id', BigId, nullable=False),
    sa.Column('case_id', BigId, nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('rule', sa.String(length=30), nullable=False),
    sa.Column('rating_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('due_on', sa.String(length=10), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('done_by', sa.Integer(), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['done_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('follow_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follow_tasks_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_follow_tasks_status_kind', ['status', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('follow_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_follow_tasks_status_kind')
        batch_op.drop_index(batch_op.f('ix_follow_tasks_case_id'))
    op.drop_table('follow_tasks')
