"""court reviews (司法确认在线审查) and judges among the observers

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('judge', sa.Boolean(), server_default='0', nullable=False))
    op.create_table('court_reviews',
    sa.Column('id', BigId, nullable=False),
    sa.Column('case_id', BigId, nullable=False),
    sa.Column('submission_id', BigId, nullable=False),
    sa.Column('session_id', BigId, nullable=False),
    sa.Column('judge_invite_id', BigId, nullable=True),
    sa.Column('court_id', sa.String(length=40), nullable=False),
    sa.Column('court_name', sa.String(length=200), nullable=False),
    sa.Column('judge', sa.String(length=100), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=12), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['court_submissions.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ),
    sa.ForeignKeyConstraint(['judge_invite_id'], ['invites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id')
    )
    with op.batch_alter_table('court_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_court_reviews_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_court_reviews_submission_id'), ['submission_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('court_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_court_reviews_submission_id'))
        batch_op.drop_index(batch_op.f('ix_court_reviews_case_id'))
    op.drop_table('court_reviews')
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.drop_column('judge')
