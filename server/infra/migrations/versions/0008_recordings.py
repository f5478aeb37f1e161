"""recordings: runs (signed manifests) and files

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recording_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_key', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=200), nullable=False),
    sa.Column('public_key', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_key')
    )
    with op.batch_alter_table('recording_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_runs_session_id'), ['session_id'], unique=False)
    op.create_table('recording_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('participant_id', sa.String(length=60), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=12), nullable=False),
    sa.Column('segment', sa.Integer(), nullable=False),
    sa.Column('container', sa.String(length=12), nullable=False),
    sa.Column('codecs', sa.String(length=60), nullable=False),
    sa.Column('kinds', sa.String(length=20), nullable=False),
    sa.Column('offset', sa.Float(), nullable=False),
    sa.Column('duration', sa.Float(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('playable', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['recording_runs.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recording_files_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recording_files_session_id'), ['session_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_files_session_id'))
        batch_op.drop_index(batch_op.f('ix_recording_files_run_id'))
    op.drop_table('recording_files')
    with op.batch_alter_table('recording_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recording_runs_session_id'))
    op.drop_table('recording_runs')
