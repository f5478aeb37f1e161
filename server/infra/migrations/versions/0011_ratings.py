"""satisfaction ratings (好差评), one per party and case

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('ratings',
    sa.Column('id', BigId, nullable=False),
    sa.Column('case_id', BigId, nullable=False),
    sa.Column('party_id', BigId, nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('institution_id', sa.Integer(), nullable=False),
    sa.Column('mediator_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=12), nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], ),
    sa.ForeignKeyConstraint(['mediator_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'party_id', name='uq_rating_case_party')
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_case_id'))
    op.drop_table('ratings')
