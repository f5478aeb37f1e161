"""enforcement: one application per applying party (both sides of an agreement may be owed something)

Revision ID: 0015
Revises: 0014
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('court_submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applicant_party_id', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_constraint('uq_submission_case_kind', type_='unique')
        batch_op.create_unique_constraint('uq_submission_case_kind', ['case_id', 'kind', 'applicant_party_id'])
    # An application made before this revision names its applicant in its confirmations (the only key).
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, confirmations FROM court_submissions WHERE kind = 'enforcement'")).all()
    for sid, confirmations in rows:
        if isinstance(confirmations, str):
            confirmations = json.loads(confirmations)
        party = next(iter(confirmations or {}), "0")
        bind.execute(sa.text("UPDATE court_submissions SET applicant_party_id = :p WHERE id = :i"),
                     {"p": int(party), "i": sid})


def downgrade() -> None:
    with op.batch_alter_table('court_submissions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_submission_case_kind', type_='unique')
        batch_op.create_unique_constraint('uq_submission_case_kind', ['case_id', 'kind'])
        batch_op.drop_column('applicant_party_id')
