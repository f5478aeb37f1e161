"""archive search and analytics indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 18:30:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_cases_created_id', 'cases', ['created_at', 'id'])
    op.create_index('ix_cases_inst_created', 'cases', ['institution_id', 'created_at'])
    op.create_index('ix_audit_action_case', 'audit_log', ['action', 'case_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_audit_action_case', table_name='audit_log')
    op.drop_index('ix_cases_inst_created', table_name='cases')
    op.drop_index('ix_cases_created_id', table_name='cases')
