"""obligations of agreements in effect and the parties' performance reports

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('obligations',
    sa.Column('id', BigId, nullable=False),
    sa.Column('case_id', BigId, nullable=False),
    sa.Column('agreement_id', BigId, nullable=False),
    sa.Column('term', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('obligor_party_id', BigId, nullable=False),
    sa.Column('due_on', sa.String(length=10), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reminders', sa.JSON(), nullable=False),
    sa.Column('report_asked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], ),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['obligor_party_id'], ['parties.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agreement_id', 'term', name='uq_obligation_term')
    )
    with op.batch_alter_table('obligations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_obligations_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_obligations_status_due', ['status', 'due_at'], unique=False)
    op.create_table('obligation_reports',
    sa.Column('id', BigId, nullable=False),
    sa.Column('obligation_id', BigId, nullable=False),
    sa.Column('case_id', BigId, nullable=False),
    sa.Column('party_id', BigId, nullable=False),
    sa.Column('performed', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['obligation_id'], ['obligations.id'], ),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('obligation_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_obligation_reports_obligation_id'), ['obligation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('obligation_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_obligation_reports_obligation_id'))
    op.drop_table('obligation_reports')
    with op.batch_alter_table('obligations', schema=None) as batch_op:
        batch_op.drop_index('ix_obligations_status_due')
        batch_op.drop_index(batch_op.f('ix_obligations_case_id'))
    op.drop_table('obligations')
